"""The tables of README.md and docs/*.md that hold measured figures, made from docs/results/.

    python tools/dev/docs_tables.py [--check]

A table sits between ``<!-- table: NAME [ARG ...] -->`` and ``<!-- end table -->``: NAME is one of
TABLES, whose function makes the lines in between from the results files it names in a
"Figures:" line under the table. The tool rewrites them; --check compares and exits 1 on a
difference, so no figure in a table can drift from its file (tests/test_docs.py runs the same
comparison). A table whose results file does not exist yet is left as it is and named; the tool
then exits 1.

Where a ``gpu_check_*.json`` of ``make gpu-check`` run on a GPU lies in docs/results/, the memory
and GPU-hours tables show its measured figures beside the estimates, one column set per card.
"""
import argparse
import collections
import glob
import importlib.util
import json
import os.path as osp
import re
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RESULTS = 'docs/results'
# where the tables read their files: docs/results/, or a copy of it that a test points this at
results_dir = osp.join(ROOT, RESULTS)
MARKER = re.compile(r'<!-- table: (\S+)((?: [^ >]+)*) -->\n(.*?)<!-- end table -->\n', re.S)
GIB = 2 ** 30
# The recipes: the top-level configs of the published protocols (the 1x configs and the windowed
# one are not recipes), found in configs/ by these names, one per protocol in the tables' order,
# each protocol's sizes in order
PROTOCOLS = {'maskrcnn_3x': 'maskrcnn_coatnet[0-9]_ms-3x_coco.py',
             'cascade_3x': 'cascade-maskrcnn_coatnet[0-9]_ms-3x_coco.py',
             'upernet_160k': 'upernet_coatnet[0-9]_ade20k.py',
             'dino_12e': 'dino-4scale_coatnet[0-9]_12e_coco.py',
             'mask2former_ade20k': 'mask2former_coatnet[0-9]_ade20k.py',
             'mask2former_coco': 'mask2former_coatnet[0-9]_lsj-50e_coco.py'}
# each protocol's head, as the notes under the memory tables name it
PROTOCOL_HEADS = {'maskrcnn_3x': 'Mask R-CNN', 'cascade_3x': 'Cascade', 'upernet_160k': 'UperNet',
                  'dino_12e': 'DINO', 'mask2former_ade20k': 'Mask2Former ADE20K',
                  'mask2former_coco': 'Mask2Former COCO'}
# the size class of each CoAtNet, by its parameters beside Swin's and ConvNeXt's (docs/recipes.md)
SIZE_CLASS = {0: 'T', 1: 'S', 2: 'B'}
# the library configs that flops.json counts beside the recipes: what they are, and the published
# result (published_results.json) of the same model. mmdet's Swin-T Mask R-CNN 1x config is the
# model of the 3x results: the schedule changes no FLOP
LIBRARY_MODELS = {
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py':
        ('Swin-T Mask R-CNN', 'maskrcnn_3x', 'Swin-T'),
    'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py':
        ('ConvNeXt-T Cascade Mask R-CNN', 'cascade_3x', 'ConvNeXt-T'),
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py':
        ('Swin-T UperNet', 'upernet_160k', 'Swin-T'),
    'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py':
        ('ConvNeXt-T UperNet', 'upernet_160k', 'ConvNeXt-T'),
}
# the library model counted beside each protocol's recipes in the GPU-hours table, for calibration
GPU_HOURS_CALIBRATION = [
    ('maskrcnn_3x', 'Swin-T Mask R-CNN 3x',
     'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'),
    ('cascade_3x', 'ConvNeXt-T Cascade Mask R-CNN 3x',
     'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'),
    ('upernet_160k', 'Swin-T UperNet 160k',
     'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'),
    ('dino_12e', 'R-50 DINO 4-scale 12e', 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'),
    ('mask2former_ade20k', 'Swin-T Mask2Former ADE20K 160k',
     'mmseg::mask2former/mask2former_swin-t_8xb2-160k_ade20k-512x512.py'),
    ('mask2former_coco', 'Swin-T Mask2Former COCO 50e',
     'mmdet::mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco.py')]


def protocol_recipes(protocol: str) -> list:
    """The recipes of one protocol, by name without '.py', smallest CoAtNet first."""
    return [osp.basename(path)[:-len('.py')]
            for path in sorted(glob.glob(osp.join(ROOT, 'configs', PROTOCOLS[protocol])))]


def recipe_list() -> list:
    return [recipe for protocol in PROTOCOLS for recipe in protocol_recipes(protocol)]


def simulated_inputs() -> str:
    """The batch and input each protocol's recipes are simulated at, as their float32 simulation
    files record them: '2 per GPU at 800x1333 (Mask R-CNN, Cascade, DINO), ...'."""
    heads_by_input = {}
    for protocol in PROTOCOLS:
        for recipe in protocol_recipes(protocol):
            r = simulated(recipe, 'fp32')
            heads = heads_by_input.setdefault((r['batch'], tuple(r['shape'])), [])
            if PROTOCOL_HEADS[protocol] not in heads:
                heads.append(PROTOCOL_HEADS[protocol])
    batches = {batch for batch, _ in heads_by_input}
    inputs = ', '.join(f"{'' if len(batches) == 1 else f'{batch} x '}{h}x{w} ({', '.join(heads)})"
                       for (batch, (h, w)), heads in heads_by_input.items())
    return (f'{batches.pop()} per GPU at {inputs}' if len(batches) == 1 else
            f'per GPU: {inputs}')


def size_of(recipe: str) -> int:
    """n of a recipe's CoAtNet-n."""
    return int(re.search(r'coatnet(\d)', recipe).group(1))


def load(name: str):
    with open(osp.join(results_dir, name)) as f:
        return json.load(f)


def gpu_check_reader():
    """mmcoatnet/analysis/gpu_check.py, the one reader of gpu_check reports, loaded by its path:
    it is standard library only, so making the tables needs no torch."""
    spec = importlib.util.spec_from_file_location(
        'docs_tables_gpu_check', osp.join(ROOT, 'mmcoatnet', 'analysis', 'gpu_check.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


measured_recipe_figures = gpu_check_reader().measured_recipe_figures
# the figures of one card's gpu_check report: (recipe, precision) -> measured_recipe_figures' dict
CardRun = collections.namedtuple('CardRun', 'card file date torch figures')
MEASURED_RULE = 'One column set per card; of several reports of one card, the newest.'


def card_runs() -> list:
    """The GPU runs of ``make gpu-check`` in the results directory, one per card in the order of
    the cards' names: each gpu_check_*.json whose report trained recipes on a GPU; of several
    reports of one card, the newest (its date, then its file name)."""
    newest = {}
    for path in sorted(glob.glob(osp.join(results_dir, 'gpu_check_*.json'))):
        name = osp.basename(path)
        report = load(name)
        figures = measured_recipe_figures(report)
        if not figures:
            continue  # a CPU run, or a GPU run that trained no recipe
        run = CardRun(report['device_name'], name, report.get('date') or '', report.get('torch'),
                      figures)
        known = newest.get(run.card)
        if known is None or (run.date, run.file) >= (known.date, known.file):
            newest[run.card] = run
    return [newest[card] for card in sorted(newest)]


def measured_memory_cell(run: CardRun, recipe: str, precision: str, simulated_peak: int) -> str:
    """'allocated / reserved' in GiB and the allocated peak over ``simulated_peak`` (the estimate
    the table shows beside it); '-' where the card's run has no figure for this recipe and
    precision."""
    figures = run.figures.get((recipe, precision))
    if not figures or figures['peak_allocated_bytes'] is None:
        return '-'
    allocated = figures['peak_allocated_bytes']
    return (f"{gib(allocated)} / {gib(figures['peak_reserved_bytes'])}, "
            f'{allocated / simulated_peak:.2f}x')


def measured_note(runs: list, what: str) -> str:
    """The sentence that names each card, its report file and what its columns hold; '' without
    a GPU run."""
    if not runs:
        return ''
    cards = '; '.join(f'{run.card} ({run.file}, torch {run.torch}, {run.date})' for run in runs)
    return f'Measured by `make gpu-check` on {cards}: {what}. {MEASURED_RULE} '


MEMORY_MEASURED = ('peak memory allocated / reserved in GiB of the configured variant (not '
                   '`with_cp`) at the simulated batch and input, and the allocated peak over the '
                   'simulated peak beside it')


def estimated_by_simulation(runs: list) -> str:
    return 'Estimated by simulation' if runs else 'Estimated by simulation, no GPU run'


def figures_line(*names: str) -> str:
    links = ', '.join(f'[{name}]({{results}}/{name})' for name in names)
    return f'Figures: {links}.'


def figures_line_with_simulations(*names: str) -> str:
    """A figures line that names the recipes' simulation files by their pattern."""
    links = ''.join(f'[{name}]({{results}}/{name}), ' for name in names)
    return (f'Figures: {links}[the simulations]({{results}}/README.md) '
            '`train_memory_simulated_cuda_{fp32,amp}_<recipe>.json`.')


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


def runs_note(recipes):
    """When the float32 and AMP simulations of the recipes come from runs of different dates, a
    sentence that says so (the files' dates)."""
    dates = {precision: sorted({simulated(recipe, precision)['date'] for recipe in recipes})
             for precision in ('fp32', 'amp')}
    if dates['fp32'] == dates['amp']:
        return ''
    when = f"float32 simulated on {', '.join(dates['fp32'])}, AMP on {', '.join(dates['amp'])}"
    if max(dates['amp']) < min(dates['fp32']):
        return (f'The AMP figures come from an older run than the float32 ones ({when}), with the '
                'code of that day, and were not simulated again since. ')
    return f'The float32 and AMP figures come from different runs ({when}). '


def recipes():
    """Each recipe's size, FLOPs and estimated training memory per GPU, float32 and AMP."""
    entries = load('flops.json')
    runs = card_runs()
    rows = []
    for protocol in PROTOCOLS:
        for recipe in protocol_recipes(protocol):
            count = flops_entry(entries, f'configs/{recipe}.py', counted_shape(protocol))
            row = [f'`{recipe}`', f"{count['params_m']:.1f}M", f"{count['gmacs']:.0f}"]
            for precision in ('fp32', 'amp'):
                report = simulated(recipe, precision)
                peak = report['peak_bytes']['default']['total']
                row += [memory_cell(report, 'default'),
                        *(measured_memory_cell(run, recipe, precision, peak) for run in runs),
                        memory_cell(report, 'with_cp')]
            rows.append(row)
    header, align = ['recipe', 'params', 'GMACs'], ['---', '---:', '---:']
    for estimate, name, with_cp in (('float32 (GiB): peak / + margin, card', 'float32',
                                     'float32, `with_cp`'), ('AMP', 'AMP', 'AMP, `with_cp`')):
        header += [estimate, *(f'{name} measured on {run.card}: allocated / reserved, x '
                               'simulated' for run in runs), with_cp]
        align += ['---'] + ['---:'] * len(runs) + ['---']
    return table(header, rows, align) + [
        '', f'{estimated_by_simulation(runs)}: batch {simulated_inputs()}; GMACs at '
        '1280x800 (COCO) / 2048x512 (ADE20K), as the papers count. '
        + runs_note(recipe_list()) + measured_note(runs, MEMORY_MEASURED)
        + figures_line_with_simulations('flops.json', *(run.file for run in runs))]


# how each protocol's results are given: the table's metric header and a result's cell
RESULT_CELLS = {
    'maskrcnn_3x': ('box / mask AP', lambda r: f"{r['box_ap']} / {r['mask_ap']}"),
    'cascade_3x': ('box / mask AP', lambda r: f"{r['box_ap']} / {r['mask_ap']}"),
    'upernet_160k': ('mIoU single-scale / multi-scale + flip',
                     lambda r: f"{r['miou']} / {r['miou_ms']}"),
    'dino_12e': ('box AP', lambda r: f"{r['box_ap']}"),
    'mask2former_ade20k': ('mIoU single-scale', lambda r: f"{r['miou']}"),
    'mask2former_coco': ('box / mask AP', lambda r: f"{r['box_ap']} / {r['mask_ap']}"),
}
ADE20K_PROTOCOLS = ('upernet_160k', 'mask2former_ade20k')


def counted_shape(protocol: str) -> list:
    """The input a protocol's models are counted at, as the papers count: 2048x512 for ADE20K,
    1280x800 for COCO (flops.json's shapes are (h, w))."""
    return [512, 2048] if protocol in ADE20K_PROTOCOLS else [800, 1280]


def library_config_of(result: dict):
    """The library config a metafile's result was trained with ('mmdet::dino/<model>.py'), or
    None for the READMEs' results."""
    if not result['source'].startswith('metafile:'):
        return None
    _, library, metafile, model = result['source'].split(':')
    return f"{library}::{osp.dirname(metafile)[len('configs/'):]}/{model}.py"


def size_cells(result: dict, entries: list, shape: list) -> tuple:
    """A published result's params and GMACs: as published, else as get_flops.py counted its
    library config here (marked 'counted'), else '-'."""
    if result['params_m'] is not None:
        return f"{result['params_m']}M", result['gflops']
    config = library_config_of(result)
    count = next((e for e in entries if e['config'] == config and e['shape'] == shape
                  and not e.get('cfg_options')), None)
    if count is None:
        return '-', '-'
    return f"{count['params_m']:.0f}M (counted)", f"{count['gmacs']:.0f} (counted)"


def compared(protocol, *other_schedules):
    """The recipes of one protocol beside the published results of the same size class, then the
    classes no recipe has (the protocol's larger models), then the results of ``other_schedules``
    (protocols of the same model trained longer, which its ``differs`` says)."""
    results = load('published_results.json')['results']
    published = [r for r in results if r['protocol'] == protocol]
    entries = load('flops.json')
    shape = counted_shape(protocol)
    metric, cell = RESULT_CELLS[protocol]

    def published_row(r):
        differs = f", {r['differs']}" if r.get('differs') else ''
        return (r['class'], f"{r['backbone']} (published{differs})", cell(r),
                *size_cells(r, entries, shape))

    rows, classes = [], []
    for recipe in protocol_recipes(protocol):
        n = size_of(recipe)
        size_class = SIZE_CLASS[n]
        classes.append(size_class)
        count = flops_entry(entries, f'configs/{recipe}.py', shape)
        rows.append((size_class, f'CoAtNet-{n} (`{recipe}`)', 'not trained yet',
                     f"{count['params_m']:.0f}M", f"{count['gmacs']:.0f}"))
        rows += [published_row(r) for r in published if r['class'] == size_class]
    rows += [published_row(r) for r in published if r['class'] not in classes]
    for other in other_schedules:
        rows += [published_row(r) for r in results if r['protocol'] == other]
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
    """onnxruntime against PyTorch: the largest difference per size, the times and, where measured,
    each one's peak memory growth in one inference."""
    rows = []
    for name in names:
        for entry in load(name):
            config = entry['config'].split('/')[-1].replace('.py', '')
            exporter = 'dynamo' if 'dynamo=True' in entry['exporter'] else 'TorchScript'
            if entry.get('float16'):
                exporter += ', float16'
            for r in entry['results']:
                size = 'x'.join(map(str, r['shape'][2:]))
                times = (f"{r['torch_seconds']:.2f} / {r['onnxruntime_seconds']:.2f}"
                         if 'torch_seconds' in r else '-')
                memory = r.get('memory')
                peaks = (f"{gib(memory['torch']['peak_growth_bytes'])} / "
                         f"{gib(memory['onnxruntime']['peak_growth_bytes'])}" if memory else '-')
                rows.append((f"`{config}` ({entry['what']})", exporter, size, r['shape'][0],
                             f"{max(r['max_abs_diff']):.1e}", times, entry.get('repeat') or '-',
                             peaks))
    return table(['model (config)', 'exporter', 'size', 'batch', 'max abs difference',
                  'time (s): PyTorch / onnxruntime', 'best of', 'peak growth (GiB): PyTorch / '
                  'onnxruntime'], rows, ['---', '---', '---'] + ['---:'] * 5) + [
        '', figures_line(*names)]


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


def train_profile(name, top='10'):
    """The training step's operators by self CPU time, one column pair per entry (before, after)."""
    entries = load(name)
    rows = []
    for rank in range(int(top)):
        row = [rank + 1]
        for entry in entries:
            item = entry['top'][rank] if rank < len(entry['top']) else None
            row += ([f"`{item['name']}`", f"{item['self_seconds']:.2f} ({item['share']:.0%})"]
                    if item else ['-', '-'])
        rows.append(row)
    header = ['#']
    for entry in entries:
        header += [f"{entry['label']}: operator", 'self CPU s (share)']
    steps = '; '.join(f"{e['label']}: step {e['step_seconds']:.1f} s, profiled "
                      f"{e['profiled_self_seconds']:.1f} s" for e in entries)
    first = entries[0]
    return table(header, rows, ['---:'] + ['---', '---:'] * len(entries)) + [
        '', f"`{first['arch']}` at {first['shape'][0]}x{first['shape'][1]}, batch 1, "
        f"{first['threads']} threads. {steps}. " + figures_line(name)]


def flops_vs_published():
    """mmdet's and mmseg's own configs counted by get_flops.py, beside their published counts."""
    published = load('published_results.json')['results']
    rows = []
    for e in load('flops.json'):
        if e['config'] not in LIBRARY_MODELS or e.get('cfg_options'):
            continue
        model, protocol, backbone = LIBRARY_MODELS[e['config']]
        shape = [800, 1280] if protocol != 'upernet_160k' else [512, 2048]
        if e['shape'] != shape:
            continue  # published counts are at the papers' sizes only
        r = next(r for r in published if r['protocol'] == protocol and r['backbone'] == backbone)
        rows.append((f"{model} (`{e['config']}`)", f"{e['shape'][1]}x{e['shape'][0]}",
                     f"{e['gmacs']:.1f}G, {e['params_m']:.1f}M",
                     f"{r['gflops']}G, {r['params_m']}M",
                     f"{100 * (e['gmacs'] / r['gflops'] - 1):+.1f}%"))
    return table(['model (config)', 'input', 'counted here', 'published', 'difference'], rows,
                 ['---', '---', '---:', '---:', '---:']) + [
        '', "Published: the repositories' READMEs, as published_results.json records them. The "
        "Swin-T Mask R-CNN row counts mmdet's 1x config: 1x and 3x train the same model, so the "
        'published 267G, given with the 3x results, is its count too. '
        + figures_line('flops.json', 'published_results.json')]


def gpu_hours():
    """Each recipe's GPU-hours as get_flops.py estimates them (``gpu_hours_estimate`` of its count
    at the training input), beside a library model of its protocol for calibration."""
    estimated = [e for e in load('flops.json')
                 if e.get('gpu_hours_estimate') and not e.get('cfg_options')]
    runs = card_runs()
    rows, first = [], None
    for protocol, label, config in GPU_HOURS_CALIBRATION:
        names = [(f'{label} (`{config}`, for calibration)', config, None)] + [
            (f'`{recipe}`', f'configs/{recipe}.py', recipe)
            for recipe in protocol_recipes(protocol)]
        for name, path, recipe in names:
            entry = next(e for e in estimated if e['config'] == path)
            estimate = entry['gpu_hours_estimate']
            first = first or estimate
            measured = []
            for run in runs:
                measured += [measured_by_precision(run, recipe, 'step_seconds', '.3g'),
                             measured_by_precision(run, recipe, 'gpu_hours', '.0f')]
            rows.append((name, f"{entry['shape'][1]}x{entry['shape'][0]}", f"{entry['gmacs']:.1f}",
                         f"{estimate['training_images'] / 1e6:.2f}M",
                         f"{estimate['gpu_hours']:.0f}", *measured,
                         f"{estimate['hours_on_gpus']:.1f}"))
    gpus, tflops = first['gpus'], first['assumed_tflops']
    measured_headers = []
    for run in runs:
        measured_headers += [f'step on {run.card} (s): float32 / AMP',
                             f'GPU-hours on {run.card}: float32 / AMP']
    calibrated = ('not calibrated by this table: the columns measured on a card give that card '
                  'instead' if runs else 'not calibrated: no GPU run exists')
    measured = measured_note(runs, "the time of a training step at the recipe's simulated batch "
                             'and input (its largest), after a warm-up step, and from it the '
                             "schedule's GPU-hours: images / batch x step / 3600 s, data "
                             'parallelism taken as free')
    return table(['recipe', 'input counted', 'GMACs', 'training images',
                  f'GPU-hours at {tflops} TFLOP/s' if runs else 'GPU-hours', *measured_headers,
                  f'hours on {gpus} GPUs'], rows) + [
        '', f"GPU-hours = images x {first['training_flops_per_mac']} x GMACs x 1e9 / ({tflops} "
        f'TFLOP/s x 3600 s), as `get_flops.py` estimates them: an estimate at an assumed '
        f'throughput, not a measurement. The {tflops} TFLOP/s sustained per GPU is a rough guess, '
        f'{calibrated}. If your {GPU_HOURS_CALIBRATION[0][1]} takes H hours '
        f"on {gpus} GPUs, multiply every figure by H / {first['hours_on_gpus']:.1f}. "
        + measured + figures_line('flops.json', *(run.file for run in runs))]


def measured_by_precision(run: CardRun, recipe, key: str, spec: str) -> str:
    """One measured figure of a recipe on a card, 'float32 / AMP' ('-' for one not measured);
    '-' for a library model (``recipe`` None), which gpu_check does not train."""
    if recipe is None:
        return '-'
    values = [run.figures.get((recipe, precision), {}).get(key) for precision in ('fp32', 'amp')]
    if all(value is None for value in values):
        return '-'
    return ' / '.join('-' if value is None else format(value, spec) for value in values)


def cpu_memory():
    """Mask R-CNN CoAtNet-1's training memory on the CPU: measured, and simulated on fake
    tensors."""
    measured = {'default': load('train_memory_cpu_maskrcnn_coatnet1.json'),
                'with_cp': load('train_memory_cpu_maskrcnn_coatnet1_with_cp.json')}
    sim = load('train_memory_simulated_cpu_maskrcnn_coatnet1.json')
    rows = []
    for variant, label in (('default', 'default'), ('with_cp', '`with_cp=True`')):
        real, estimate = measured[variant]['peak_rss_bytes'], sim['peak_bytes'][variant]['total']
        rows.append((label, gib(real), f"{measured[variant]['seconds']:.0f}", gib(estimate),
                     f'{100 * (estimate / real - 1):+.1f}%'))
    m = measured['default']
    return table(['backbone', 'measured peak (GiB)', 'iteration (s)', 'simulated peak (GiB)',
                  'simulated against measured'], rows) + [
        '', f"`{m['config']}` at {m['shape'][0]}x{m['shape'][1]}, batch {m['batch']}, float32, "
        f"AdamW. Measured on the 2-core CPU ({m['threads']} threads, torch {m['torch']}): the peak "
        f"RSS above the RSS after imports, freed memory returned at once; simulated (`--simulate "
        f"cpu`, torch {sim['torch']}): the tensors alive at the peak. "
        + figures_line('train_memory_cpu_maskrcnn_coatnet1.json',
                       'train_memory_cpu_maskrcnn_coatnet1_with_cp.json',
                       'train_memory_simulated_cpu_maskrcnn_coatnet1.json')]


def train_memory(precision):
    """Every recipe's estimated training memory per GPU in one precision (fp32 or amp), with and
    without with_cp."""
    runs = card_runs()
    rows, files = [], []
    for recipe in recipe_list():
        r = simulated(recipe, precision)
        files.append(f'train_memory_simulated_cuda_{precision}_{recipe}.json')
        cells = []
        for variant in ('default', 'with_cp'):
            peak = r['peak_bytes'][variant]
            cells += [f"{gib(peak['total'])} ({gib(peak['activations'])})",
                      gib(r['needed_bytes'][variant]), card(r, variant)]
            if variant == 'default':  # gpu_check trains the configured variant only
                cells += [measured_memory_cell(run, recipe, precision, peak['total'])
                          for run in runs]
        rows.append((f'`configs/{recipe}.py`', f"{r['batch']} x {r['shape'][0]}x{r['shape'][1]}",
                     *cells, f"{sum(r['seconds'].values()):.0f}"))
    name = {'amp': 'AMP', 'fp32': 'float32'}[precision]
    measured = [f'{name} measured on {run.card}: allocated / reserved, x simulated'
                for run in runs]
    estimate = 'GiB, estimated by simulation' + ('' if runs else ', no GPU run')
    return table(['recipe', 'batch x input', f'{name} peak (activations)', '+ margin',
                  'smallest card', *measured, '`with_cp` peak', '+ margin', 'smallest card',
                  'simulation (s)'], rows,
                 ['---', '---', '---:', '---:', '---'] + ['---:'] * len(runs)
                 + ['---:', '---:', '---', '---:']) + [
        '', f'{estimate}. Margin: +20% and 1 GiB. Simulation: the '
        "tool's own run time for both variants together. " + measured_note(runs, MEMORY_MEASURED)
        + figures_line(*files, *(run.file for run in runs))]


def compile_runs(*names):
    """Eager against compiled step times of the toy models (compile_benchmark.py)."""
    rows, notes, backends = [], [], set()
    for name in names:
        r = load(name)
        run = name.replace('compile_cpu_', '').replace('.json', '')
        backends.add(f"`{r['backend']}`")
        for mode, m in r['modes'].items():
            first, second = m['first_pass'], m['second_pass']
            rows.append((f'`{run}`', mode, r['threads'], f"{m['eager_s']:.3f}",
                         f"{m['compiled_s']:.3f}", f"{m['compiled_over_eager']:.2f}x",
                         f"{m['compile_s']:.0f}",
                         f"{first['graphs']}, {first['recompiles']}, {first['graph_breaks']}",
                         'no recompile' if not second['recompiles'] else
                         f"{second['graphs']}, {second['recompiles']}, {second['graph_breaks']}"))
        extra = [f'{k}={v}' for k, v in r.get('env', {}).items()] + (
            [r['note']] if r.get('note') else [])
        if extra:
            notes.append(f"`{run}`: {'; '.join(extra)}.")
    return table(['run', 'mode', 'threads', 'eager (s/step)', 'compiled (s/step)',
                  'compiled / eager', 'compile time (s)',
                  'graphs, recompiles, breaks (first pass)', 'second pass'], rows,
                 ['---', '---'] + ['---:'] * 5 + ['---', '---']) + [
        '', f"Backend {', '.join(sorted(backends))}, batch {r['batch']}, on the 2-core CPU. "
        + ''.join(note + ' ' for note in notes) + figures_line(*names)]


def sixteen_gb():
    """Which recipe fits a 16 GB card as shipped (float32), and with --amp and with_cp."""
    runs = card_runs()
    rows = []
    for recipe in recipe_list():
        fp32, amp = simulated(recipe, 'fp32'), simulated(recipe, 'amp')

        def verdict(report, variant):
            fits = 16 in report['cards_gb'][variant]  # the cards train_memory.py found to hold it
            return f"{'fits' if fits else 'no'} ({gib(report['needed_bytes'][variant])})"

        def measured(report, precision):
            peak = report['peak_bytes']['default']['total']
            return [measured_memory_cell(run, recipe, precision, peak) for run in runs]

        rows.append((f'`{recipe}`', verdict(fp32, 'default'), *measured(fp32, 'fp32'),
                     verdict(amp, 'default'), *measured(amp, 'amp'),
                     verdict(fp32, 'with_cp'), verdict(amp, 'with_cp')))

    def measured_headers(name):
        return [f'{name} measured on {run.card}: allocated / reserved, x simulated'
                for run in runs]

    return table(['recipe', 'as shipped (float32)', *measured_headers('float32'), '`--amp`',
                  *measured_headers('`--amp`'), '`with_cp`', '`--amp` + `with_cp`'],
                 rows, ['---'] + ['---'] + ['---:'] * len(runs) + ['---'] + ['---:'] * len(runs)
                 + ['---'] * 2) + [
        '', 'A 16 GB card holds 16·10⁹ bytes (14.90 GiB); in brackets the estimated peak plus the '
        f'margin, in GiB, batch {simulated_inputs()}. ' + runs_note(recipe_list())
        + measured_note(runs, MEMORY_MEASURED)
        + figures_line_with_simulations(*(run.file for run in runs))]


TABLES = dict(sixteen_gb=sixteen_gb, benchmark=benchmark, recipes=recipes, compared=compared,
              flops=flops, onnx=onnx,
              transfer=transfer, demo=demo, test_durations=test_durations,
              flops_vs_published=flops_vs_published, gpu_hours=gpu_hours, cpu_memory=cpu_memory,
              train_memory=train_memory, compile=compile_runs,
              train_profile=train_profile)


# ---------------------------------------------------------------------------------- the pages

def pages():
    return [osp.join(ROOT, 'README.md')] + sorted(glob.glob(osp.join(ROOT, 'docs', '*.md')))


def rendered(text: str, page: str, missing=None) -> str:
    """The page with every table made anew. A results file that does not exist raises, unless
    ``missing`` is a list: then the table is left as it is and the file added to the list."""
    results = osp.relpath(osp.join(ROOT, RESULTS), osp.dirname(page))

    def make(match):
        name, args = match.group(1), match.group(2).split()
        if name not in TABLES:
            raise ValueError(f'{page}: unknown table {name!r}; known: {sorted(TABLES)}')
        try:
            lines = TABLES[name](*args)
        except FileNotFoundError as error:
            if missing is None:
                raise
            missing.append(f'{osp.relpath(page, ROOT)}: table {name}: no '
                           f'{osp.relpath(error.filename, ROOT)}')
            return match.group(0)
        lines = [line.replace('{results}', results) for line in lines]
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
    stale, missing = [], []
    for page in pages():
        with open(page, encoding='utf-8') as f:
            text = f.read()
        new = rendered(text, page, missing)
        if new != text:
            stale.append(osp.relpath(page, ROOT))
            if not args.check:
                with open(page, 'w', encoding='utf-8') as f:
                    f.write(new)
    if missing:
        print('tables left as they are, their results file does not exist yet:\n  '
              + '\n  '.join(missing), file=sys.stderr)
    if args.check and stale:
        print('tables that differ from their results files (python tools/dev/docs_tables.py '
              'rewrites them): ' + ', '.join(stale), file=sys.stderr)
        return 1
    print(('stale: ' if args.check else 'rewritten: ') + (', '.join(stale) or 'none'))
    return 1 if missing else 0


if __name__ == '__main__':
    sys.exit(main())
