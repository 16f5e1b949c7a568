"""The tables of README.md and docs/*.md that hold measured figures, made from docs/results/.

    python tools/dev/docs_tables.py [--check]       (make docs-tables; make test runs --check)

A table sits between ``<!-- table: NAME [ARG ...] -->`` and ``<!-- end table -->``: NAME is one of
TABLES, whose function makes the lines in between from the results files it names in a
"Figures:" line under the table. The tool rewrites them; --check compares and exits 1 on a
difference, so no figure in a table can drift from its file.
"""
import argparse
import glob
import json
import os.path as osp
import re
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RESULTS = 'docs/results'
MARKER = re.compile(r'<!-- table: (\S+)((?: [^ >]+)*) -->\n(.*?)<!-- end table -->\n', re.S)
GIB = 2 ** 30
RECIPES = ['maskrcnn_coatnet0_ms-3x_coco', 'maskrcnn_coatnet1_ms-3x_coco',
           'maskrcnn_coatnet2_ms-3x_coco', 'cascade-maskrcnn_coatnet0_ms-3x_coco',
           'cascade-maskrcnn_coatnet1_ms-3x_coco', 'cascade-maskrcnn_coatnet2_ms-3x_coco',
           'upernet_coatnet0_ade20k', 'upernet_coatnet1_ade20k', 'upernet_coatnet2_ade20k']
# the size class of each CoAtNet, by its parameters beside Swin's and ConvNeXt's (docs/recipes.md)
SIZE_CLASS = {0: 'T', 1: 'S', 2: 'B'}
PROTOCOLS = {'maskrcnn_3x': 'maskrcnn_coatnet{n}_ms-3x_coco',
             'cascade_3x': 'cascade-maskrcnn_coatnet{n}_ms-3x_coco',
             'upernet_160k': 'upernet_coatnet{n}_ade20k'}


def load(name: str):
    with open(osp.join(ROOT, RESULTS, name)) as f:
        return json.load(f)


def figures_line(*names: str) -> str:
    links = ', '.join(f'[{name}]({{results}}/{name})' for name in names)
    return f'Figures: {links}.'


def table(header, rows, align=None):
    align = align or ['---'] + ['---:'] * (len(header) - 1)
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(align) + '|']
    return lines + ['| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows]


def gib(num_bytes) -> str:
    return f'{num_bytes / GIB:.2f}'


# -------------------------------------------------------------------------------------- tables

def benchmark(name, size, *impls):
    """Speed and memory of the backbone at one size, beside timm's
    (tools/analysis_tools/benchmark.py)."""
    report = load(name)
    rows = []
    for row in report['results']:
        if 'x'.join(map(str, row['size'])) != size or (impls and row['impl'] not in impls):
            continue
        ratio = row.get('vs_timm', {})
        rows.append((row['mode'], f"`{row['impl']}`", f"{row['seconds']:.3g}",
                     gib(row['peak_memory_bytes']),
                     f"{100 * row['matmul_fraction']:.0f}%" if 'matmul_fraction' in row else '-',
                     f"{ratio['time']:.2f}x" if ratio else '-',
                     f"{ratio['memory']:.2f}x" if ratio else '-'))
    machine = report['machine']
    return table(['mode', 'implementation', 'time (s)', 'peak memory (GiB)', 'of matmul rate',
                  'time / timm', 'memory / timm'], rows, ['---', '---'] + ['---:'] * 5) + [
        '', f"`{report['arch']}` at {size}, batch {report['batch']}, float32, on "
        f"{machine['description']}; dense float32 matmul {machine['matmul_gflops']:.0f} GFLOP/s. "
        + figures_line(name)]


def flops_entry(entries, config, shape):
    return next(e for e in entries if e['config'] == config and e['shape'] == shape
                and not e.get('cfg_options'))


def simulated(recipe, precision):
    return load(f'train_memory_simulated_cuda_{precision}_{recipe}.json')


def card(report, variant):
    size = report['smallest_card_gb'][variant]
    return f'{size} GB' if size else 'over 80 GB'


def memory_cell(report, variant):
    """peak / with the margin, smallest card."""
    return (f"{gib(report['peak_bytes'][variant]['total'])} / "
            f"{gib(report['needed_bytes'][variant])}, {card(report, variant)}")


def recipes():
    """Each recipe's size, FLOPs and estimated training memory per GPU, float32 and AMP."""
    entries = load('flops.json')
    rows = []
    for recipe in RECIPES:
        shape = [512, 2048] if recipe.startswith('upernet') else [800, 1280]
        count = flops_entry(entries, f'configs/{recipe}.py', shape)
        fp32, amp = simulated(recipe, 'fp32'), simulated(recipe, 'amp')
        rows.append((f'`{recipe}`', f"{count['params_m']:.1f}M", f"{count['gmacs']:.0f}",
                     memory_cell(fp32, 'default'), memory_cell(fp32, 'with_cp'),
                     memory_cell(amp, 'default'), memory_cell(amp, 'with_cp')))
    files = ['flops.json'] + sorted(osp.basename(p) for p in glob.glob(
        osp.join(ROOT, RESULTS, 'train_memory_simulated_cuda_*_ms-3x_coco.json')) + glob.glob(
        osp.join(ROOT, RESULTS, 'train_memory_simulated_cuda_*_ade20k.json')))
    return table(['recipe', 'params', 'GMACs', 'float32 (GiB): peak / + margin, card',
                  'float32, `with_cp`', 'AMP', 'AMP, `with_cp`'], rows,
                 ['---', '---:', '---:', '---', '---', '---', '---']) + [
        '', 'Estimated by simulation, no GPU run: batch 2 per GPU at 800x1333 (COCO) or 512x512 '
        '(ADE20K); GMACs at 1280x800 / 2048x512, as the papers count. ' + figures_line(*files)]


def compared(protocol):
    """The recipes of one protocol beside the published results of the same size class."""
    published = [r for r in load('published_results.json')['results']
                 if r['protocol'] == protocol]
    entries = load('flops.json')
    seg = protocol.startswith('upernet')
    shape = [512, 2048] if seg else [800, 1280]
    rows = []
    for n, size_class in SIZE_CLASS.items():
        recipe = PROTOCOLS[protocol].format(n=n)
        count = flops_entry(entries, f'configs/{recipe}.py', shape)
        rows.append((size_class, f'CoAtNet-{n} (`{recipe}`)', 'not trained yet',
                     f"{count['params_m']:.0f}M", f"{count['gmacs']:.0f}"))
        for r in (r for r in published if r['class'] == size_class):
            result = (f"{r['miou']} / {r['miou_ms']}" if seg else
                      f"{r['box_ap']} / {r['mask_ap']}")
            rows.append((size_class, f"{r['backbone']} (published)", result, f"{r['params_m']}M",
                         r['gflops']))
    metric = ('mIoU single-scale / multi-scale + flip' if seg else 'box / mask AP')
    return table(['class', 'backbone', metric, 'params', 'GMACs'], rows,
                 ['---', '---', '---', '---:', '---:']) + [
        '', figures_line('published_results.json', 'flops.json')]


def flops():
    """Every count of tools/analysis_tools/get_flops.py."""
    rows = []
    for e in load('flops.json'):
        name = e['config'].split('/')[-1].replace('.py', '')
        option = ' (' + ', '.join(f'{k}={v}' for k, v in e['cfg_options'].items()) + ')' \
            if e.get('cfg_options') else ''
        backbone, attention = e['backbone'], e['attention']
        rows.append((f'`{name}`{option}', f"{e['shape'][1]}x{e['shape'][0]}",
                     f"{e['gmacs']:.1f}", f"{e['params_m']:.1f}M",
                     f"{backbone['gmacs']:.1f} ({100 * backbone['share']:.1f}%)",
                     f"{attention['gmacs']:.1f} ({100 * attention['share']:.1f}%)",
                     f"{attention['products_gmacs']:.1f} "
                     f"({100 * attention['products_share']:.1f}%)"))
    return table(['config', 'input', 'GMACs', 'params', 'backbone GMACs (share)',
                  'attention GMACs (share)', 'q·kᵀ, attn·v GMACs (share)'], rows,
                 ['---', '---'] + ['---:'] * 5) + ['', figures_line('flops.json')]


def onnx(*names):
    """onnxruntime against PyTorch: the largest difference per size, and the times."""
    rows = []
    for name in names:
        for entry in load(name):
            config = entry['config'].split('/')[-1].replace('.py', '')
            for r in entry['results']:
                size = 'x'.join(map(str, r['shape'][2:]))
                times = (f"{r['torch_seconds']:.2f} / {r['onnxruntime_seconds']:.2f}"
                         if 'torch_seconds' in r else '-')
                rows.append((f"`{config}` ({entry['what']})", size, r['shape'][0],
                             f"{max(r['max_abs_diff']):.1e}", times))
    return table(['model (config)', 'size', 'batch', 'max abs difference',
                  'time (s): PyTorch / onnxruntime'], rows,
                 ['---', '---', '---:', '---:', '---:']) + ['', figures_line(*names)]


def transfer():
    report = load('transfer_toy.json')
    rows = [(r['task'], f"`{r['metric']}`", f"{r['budget']} {r['unit']}s",
             f"{r['scratch_final']:.3g}", f"{r['pretrained_final']:.3g}",
             f"{r['unit']} {r['pretrained_reaches_scratch_final_at']} "
             f"({100 * r['fraction_of_budget']:.0f}% of the budget)"
             if r['pretrained_reaches_scratch_final_at'] else 'not reached')
            for r in report['rows']]
    return table(['task', 'metric', 'budget', 'from scratch', 'pre-trained',
                  "pre-trained reaches scratch's final value at"], rows,
                 ['---', '---', '---', '---:', '---:', '---']) + [
        '', f"Pre-training: {report['pretraining_top1']:.1f}% top-1 on the toy classes (chance "
        '33.3%). ' + figures_line('transfer_toy.json')]


def demo(*names):
    rows = []
    for name in names:
        r = load(name)
        metrics = ', '.join(f"`{k}` {v:.3g}" for k, v in r['metrics'].items())
        rows.append((f"`make {r['target']}`", f"`{r['config']}`", metrics,
                     f"{r['seconds'] // 60:.0f} min {r['seconds'] % 60:.0f} s"))
    return table(['demo', 'config', 'result on the toy validation split', 'time'], rows,
                 ['---', '---', '---', '---:']) + ['', figures_line(*names)]


def test_durations(name):
    r = load(name)
    rows = [(f"`{t['test']}`", f"{t['before_s']:.0f}" if t.get('before_s') is not None else '-',
             f"{t['after_s']:.0f}" if t.get('after_s') is not None else '-') for t in r['slowest']]
    return table(['test (the 15 slowest, before or after)', 'before (s)', 'after (s)'], rows) + [
        '', f"The whole suite: {r['before']['passed']} tests in {r['before']['seconds'] / 60:.1f} "
        f"min before (one process), {r['after']['passed']} in {r['after']['seconds'] / 60:.1f} min "
        f"after (`make test`: two xdist workers), on {r['machine']}. " + figures_line(name)]


TABLES = dict(benchmark=benchmark, recipes=recipes, compared=compared, flops=flops, onnx=onnx,
              transfer=transfer, demo=demo, test_durations=test_durations)


# ---------------------------------------------------------------------------------- the pages

def pages():
    return [osp.join(ROOT, 'README.md')] + sorted(glob.glob(osp.join(ROOT, 'docs', '*.md')))


def rendered(text: str, page: str) -> str:
    results = osp.relpath(osp.join(ROOT, RESULTS), osp.dirname(page))

    def make(match):
        name, args = match.group(1), match.group(2).split()
        if name not in TABLES:
            raise ValueError(f'{page}: unknown table {name!r}; known: {sorted(TABLES)}')
        lines = [line.replace('{results}', results) for line in TABLES[name](*args)]
        return f'<!-- table: {name}{match.group(2)} -->\n' + '\n'.join(lines) + \
            '\n<!-- end table -->\n'

    return MARKER.sub(make, text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='compare the tables with their results files; exit 1 if any differ')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    stale = []
    for page in pages():
        with open(page, encoding='utf-8') as f:
            text = f.read()
        new = rendered(text, page)
        if new != text:
            stale.append(osp.relpath(page, ROOT))
            if not args.check:
                with open(page, 'w', encoding='utf-8') as f:
                    f.write(new)
    if args.check and stale:
        print('tables that differ from their results files (make docs-tables rewrites them): '
              + ', '.join(stale), file=sys.stderr)
        return 1
    print(('stale: ' if args.check else 'rewritten: ') + (', '.join(stale) or 'none'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
