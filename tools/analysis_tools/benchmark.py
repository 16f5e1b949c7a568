"""Speed, memory and FLOPs of the CoAtNet backbone beside its alternatives, in one run on one
machine.

    python tools/analysis_tools/benchmark.py [--arch coatnet-0-rw] [--sizes 224 512 800x1344 1024]
        [--impls mmcoatnet mmcoatnet-windowed plain-reference swin-t timm] [--modes inference train]
        [--timm-python /path/to/timm-env/bin/python] [--global-blocks I ...]
        [--out-dir work_dirs/benchmark]

Implementations, all of the backbone alone (S1-S4 features), batch 1 by default, float32:
  mmcoatnet           this package, global attention (the paper's model)
  mmcoatnet-windowed  this package, S3 attention in windows of the pre-training size, the S3 blocks
                      in --global-blocks global (default: the model's, every third from the last)
  plain-reference     this package's layers with a straightforward attention in place of ours: an
                      (N x N) int64 index per block, the gathered bias, explicit softmax(q k^T + b)
                      v (mmcoatnet.models.reference.ReferenceRelativeAttention)
  swin-t              mmdet's SwinTransformer, Swin-T settings
  timm                timm's CoAtNet of the same architecture and weights, run by another Python
                      (``--timm-python`` or $TIMM_PYTHON) when timm is not installed here

Every (implementation, size, mode) case runs in a fresh process. Its first step, from a fresh
start, gives the peak memory of one step: peak RSS less the RSS after imports on CPU (weights,
activations, buffers), or ``torch.cuda.max_memory_allocated`` on a GPU. (Over repeated CPU steps
glibc keeps freed heap memory, which raises RSS for every implementation; that figure is in the
JSON as ``peak_memory_repeated_bytes``.) The first step is also the warm-up; time is the median
over the repeats after it; a training step is forward + backward of the features' mean. FLOPs
are mmengine's count of the inference forward (scaled_dot_product_attention by the formula that
get_flops uses, ``mmcoatnet.analysis.flops``), 2 per multiply-add, counted in the inference case
after its measurements; a training step is taken as 3x the forward. The machine's dense float32
matmul rate is measured in the same run. Results print as a table and are written to
``benchmark.json`` and ``benchmark.md`` in --out-dir.
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import time

import torch

IMPLS = ('mmcoatnet', 'mmcoatnet-windowed', 'plain-reference', 'swin-t', 'timm')
OWN_IMPLS = ('mmcoatnet', 'mmcoatnet-windowed', 'plain-reference')
RESULT_PREFIX = 'BENCHMARK-RESULT '
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_helpers(name: str):
    """mmcoatnet/analysis/<name>.py read as a file, not through the package: the timm cases may run
    under timm's own Python, which cannot import mmcoatnet (no mmcv there)."""
    spec = importlib.util.spec_from_file_location(
        f'mmcoatnet_{name}', osp.join(REPO, 'mmcoatnet', 'analysis', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


memory = load_helpers('memory')
current_rss_bytes, peak_rss_bytes, gib = memory.current_rss_bytes, memory.peak_rss_bytes, memory.gib
backbone_train_step = load_helpers('backbone_step').backbone_train_step


# ----------------------------------------------------------------------------- models (in a case)

def build_own(case: dict) -> torch.nn.Module:
    from mmcoatnet.models.backbone import CoAtNet
    windowed = case['impl'] == 'mmcoatnet-windowed'
    window_attention = dict(global_blocks=case.get('global_blocks')) if windowed else None
    model = CoAtNet(case['arch'], window_attention=window_attention)
    if case.get('weights'):
        from mmcoatnet.checkpoint import load_pretrained
        load_pretrained(model, case['weights'], logger=None)
    if case['impl'] == 'plain-reference':  # global blocks only: the reference model has no windows
        from mmcoatnet.models.blocks import TransformerBlock
        from mmcoatnet.models.reference import ReferenceRelativeAttention
        for block in model.modules():
            if isinstance(block, TransformerBlock):
                block.attn = ReferenceRelativeAttention(block.attn)
    return model


def build_swin(case: dict) -> torch.nn.Module:
    from mmdet.models.backbones import SwinTransformer
    return SwinTransformer(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                           window_size=7, out_indices=(0, 1, 2, 3))


def build_timm(case: dict) -> torch.nn.Module:
    import timm
    extra = {}
    if case.get('weights'):
        extra = dict(pretrained=True, pretrained_cfg_overlay=dict(file=case['weights']))
    # timm builds its bias tables and index buffers for one input size: the case's
    return timm.create_model(case['timm_name'], features_only=True, out_indices=(1, 2, 3, 4),
                             img_size=tuple(case['size']), **extra)


def build_model(case: dict) -> torch.nn.Module:
    if case['impl'] in OWN_IMPLS:
        return build_own(case)
    return {'swin-t': build_swin, 'timm': build_timm}[case['impl']](case)


# ------------------------------------------------------------------------------ one case, measured

def run_case(case: dict) -> dict:
    if case.get('threads'):
        torch.set_num_threads(case['threads'])
    device = torch.device(case['device'])
    cuda = device.type == 'cuda'
    rss_after_imports = current_rss_bytes()
    torch.manual_seed(0)
    model = build_model(case).to(device)
    training = case['mode'] == 'train'
    model.train(training)
    height, width = case['size']
    if case.get('input'):
        x = torch.load(case['input'], weights_only=True).to(device)
    else:
        x = torch.randn(case['batch'], 3, height, width, device=device)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    def step():
        if training:
            return backbone_train_step(model, x)
        with torch.no_grad():
            return model(x)

    outs = step()  # the first step from a fresh start: the step's memory, and the warm-up
    if cuda:
        torch.cuda.synchronize()
    one_step_peak = (torch.cuda.max_memory_allocated() if cuda
                     else peak_rss_bytes() - rss_after_imports)
    if case.get('save_outputs'):
        torch.save([o.detach().cpu() for o in outs], case['save_outputs'])
    del outs
    times = []
    while (len(times) < case['min_repeats']
           or (sum(times) < case['min_seconds'] and len(times) < case['max_repeats'])):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if cuda
            else peak_rss_bytes() - rss_after_imports)
    median = statistics.median(times)
    result = dict(case, seconds=median, times=times, images_per_second=case['batch'] / median,
                  peak_memory_bytes=one_step_peak, peak_memory_repeated_bytes=peak,
                  params=sum(p.numel() for p in model.parameters()), torch=torch.__version__)
    if case.get('count_flops'):  # after the measurements, which it would disturb
        result['flops'] = count_flops(case)['flops']
    return result


def count_flops(case: dict) -> dict:
    """mmengine's count of one inference forward, in FLOPs (FLOPS_PER_MAC per multiply-add)."""
    from mmengine.analysis import FlopAnalyzer
    from mmengine.analysis.jit_handles import get_shape
    from mmengine.logging import MMLogger

    from mmcoatnet.analysis.flops import FLOPS_PER_MAC, attention_products_macs

    def sdpa_macs(inputs, outputs):  # mmengine's handles count MACs
        return attention_products_macs(*(get_shape(value) for value in inputs[:3]))

    MMLogger.get_current_instance().setLevel('ERROR')
    model = build_model(case)
    model.eval()  # not chained: mmdet's Swin.train() returns None
    x = torch.randn(case['batch'], 3, *case['size'])
    analyzer = FlopAnalyzer(model, (x,))
    analyzer.set_op_handle(**{'aten::scaled_dot_product_attention': sdpa_macs})
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return dict(flops=FLOPS_PER_MAC * analyzer.total(),
                params=sum(p.numel() for p in model.parameters()))


def matmul_flops_per_second(device: str, threads: int = 0) -> float:
    """Best of several dense float32 n x n matmuls: 2 n^3 FLOPs each."""
    if threads:
        torch.set_num_threads(threads)
    n = 8192 if device.startswith('cuda') else 2048
    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    best = float('inf')
    for _ in range(6):
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


# ---------------------------------------------------------------------------- the run (the parent)

def run_child(python: str, payload: dict, what: str, timeout: float) -> dict:
    command = [python, osp.abspath(__file__), f'--{what}', json.dumps(payload)]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return dict(payload, error=f'timed out after {timeout:.0f} s')
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    reason = 'killed (out of memory?)' if proc.returncode in (-9, 137) else ' | '.join(tail)
    return dict(payload, error=f'exit {proc.returncode}: {reason}')


def find_timm_python(explicit):
    for candidate in (explicit, os.environ.get('TIMM_PYTHON'), sys.executable):
        if not candidate:
            continue
        probe = subprocess.run([candidate, '-c', 'import timm'], capture_output=True)
        if probe.returncode == 0:
            return candidate
    return None


def size_name(size) -> str:
    return f'{size[0]}x{size[1]}'


def markdown(report: dict) -> str:
    machine = report['machine']
    lines = [f"Measured on {machine['description']}; dense float32 matmul "
             f"{machine['matmul_gflops']:.0f} GFLOP/s. Backbone `{report['arch']}`, "
             f"batch {report['batch']}, float32, weights: {report['weights_from']}; windowed S3 "
             f"global blocks: {report.get('window_global_blocks', 'default')}.",
             agreement_line(report['agreement']), '',
             '| mode | size | implementation | img/s | time (s) | peak mem (GiB) | GFLOPs '
             '| achieved GFLOP/s | of matmul | time vs timm | mem vs timm |',
             '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for row in report['results']:
        if 'error' in row:
            lines.append(f"| {row['mode']} | {size_name(row['size'])} | {row['impl']} "
                         f"| failed: {row['error']} |||||||||")
            continue
        ratio = row.get('vs_timm', {})
        fmt = lambda key: f'{ratio[key]:.2f}x' if key in ratio else '-'  # noqa: E731
        lines.append(
            f"| {row['mode']} | {size_name(row['size'])} | {row['impl']} "
            f"| {row['images_per_second']:.3g} | {row['seconds']:.3g} "
            f"| {gib(row['peak_memory_bytes'])} | {row.get('gflops', float('nan')):.1f} "
            f"| {row.get('achieved_gflops', float('nan')):.1f} "
            f"| {100 * row.get('matmul_fraction', float('nan')):.0f}% | {fmt('time')} "
            f"| {fmt('memory')} |")
    return '\n'.join(lines) + '\n'


def agreement_line(agreement: dict) -> str:
    diffs = ', '.join(f'{impl} {diff:.1e}' for impl, diff in agreement['max_abs_diff'].items())
    return (f"Same input at {size_name(agreement['size'])}, max abs difference of the S1-S4 maps "
            f"from {agreement['reference']}: {diffs or 'not compared'}.")


def parse_args(argv=None):
    from mmcoatnet.utils.sizes import add_sizes_argument
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='coatnet-0-rw')
    add_sizes_argument(parser, default=[(224, 224), (512, 512), (800, 1344), (1024, 1024)],
                       help='input sizes')
    parser.add_argument('--impls', nargs='+', choices=IMPLS, default=list(IMPLS))
    parser.add_argument('--modes', nargs='+', choices=('inference', 'train'),
                        default=['inference', 'train'])
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    parser.add_argument('--timm-python',
                        help='a Python with timm (default: $TIMM_PYTHON, this one)')
    parser.add_argument('--global-blocks', type=int, nargs='+',
                        help='S3 blocks kept global in mmcoatnet-windowed (default: the model\'s)')
    parser.add_argument('--min-repeats', type=int, default=2)
    parser.add_argument('--max-repeats', type=int, default=20)
    parser.add_argument('--min-seconds', type=float, default=5.0,
                        help='repeat a case until this much time is measured (or max-repeats)')
    parser.add_argument('--case-timeout', type=float, default=1800)
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    return parser.parse_args(argv)


def machine_description(device: str) -> str:
    if device.startswith('cuda'):
        return f'{torch.cuda.get_device_name()} (torch {torch.__version__})'
    return (f'{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, '
            f'{torch.get_num_threads()} torch threads (torch {torch.__version__})')


def save_timm_weights(timm_python: str, timm_name: str, out_dir: str):
    """timm's initialisation of the architecture saved by timm's Python, for every implementation
    to load; None (each its own initialisation) where that fails."""
    weights = osp.abspath(osp.join(out_dir, f'{timm_name}.safetensors'))
    saved = subprocess.run([timm_python, '-c', (
        'import sys, timm, torch; from safetensors.torch import save_file; '
        'torch.manual_seed(0); '
        f'm = timm.create_model({timm_name!r}); '
        'save_file({k: v.contiguous() for k, v in m.state_dict().items()}, sys.argv[1])'),
        weights], capture_output=True, text=True)
    if saved.returncode:
        print('could not save timm weights, own weights used:', saved.stderr.strip()[-300:])
        return None
    return weights


def plan(args) -> dict:
    """What the run measures, before any case runs: the implementations that can run, the
    machine's matmul rate, one set of weights for all, the input whose outputs are compared, and
    every (Python, case) in the order they run."""
    from mmcoatnet.models.archs import resolve_arch
    timm_name = resolve_arch(args.arch).timm_name
    impls = list(args.impls)
    timm_python = find_timm_python(args.timm_python) if 'timm' in impls else None
    if 'timm' in impls and not (timm_python and timm_name):
        why = (f'{args.arch} has no timm counterpart' if not timm_name
               else 'no Python with timm (set --timm-python or $TIMM_PYTHON)')
        print(f'skipping timm: {why}')
        impls.remove('timm')
    os.makedirs(args.out_dir, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    matmul = matmul_flops_per_second(args.device)
    machine = dict(description=machine_description(args.device), matmul_gflops=matmul / 1e9,
                   device=args.device)
    print(f"machine: {machine['description']}; float32 matmul {matmul / 1e9:.0f} GFLOP/s",
          flush=True)

    base = dict(arch=args.arch, batch=args.batch, device=args.device, threads=args.threads,
                min_repeats=args.min_repeats, max_repeats=args.max_repeats,
                min_seconds=args.min_seconds, timm_name=timm_name, global_blocks=args.global_blocks)
    # one set of weights for every implementation of the architecture
    weights = save_timm_weights(timm_python, timm_name, args.out_dir) if timm_python else None

    # the first size's inference outputs are compared across implementations: same weights, same
    # maps
    check_size = args.sizes[0]
    check_input = osp.abspath(osp.join(args.out_dir, 'input.pt'))
    torch.manual_seed(0)
    torch.save(torch.randn(args.batch, 3, *check_size), check_input)
    outputs = {}
    cases = []
    for size in args.sizes:
        for mode in args.modes:
            for impl in impls:
                case = dict(base, impl=impl, size=size, mode=mode,
                            weights=weights if impl in OWN_IMPLS + ('timm',) else None,
                            count_flops=mode == 'inference' and impl not in ('plain-reference',
                                                                             'timm'))
                if size == check_size and mode == 'inference' and impl != 'swin-t':
                    outputs[impl] = osp.abspath(osp.join(args.out_dir, f'outputs_{impl}.pt'))
                    case.update(input=check_input, save_outputs=outputs[impl])
                cases.append((timm_python if impl == 'timm' else sys.executable, case))
    return dict(base=base, machine=machine, matmul=matmul, timm_name=timm_name, weights=weights,
                check_size=check_size, outputs=outputs, cases=cases)


def run(planned: dict, timeout: float):
    """Every case in a process of its own, in order, each printed as it ends: the rows, and the
    forward FLOPs the inference cases counted, by (impl, size)."""
    results, flops = [], {}
    for python, case in planned['cases']:
        row = run_child(python, case, 'case', timeout)
        if 'flops' in row:
            flops[(case['impl'], case['size'])] = row.pop('flops')
        results.append(row)
        shown = (row['error'] if 'error' in row else
                 f"{row['seconds']:.3f} s, {gib(row['peak_memory_bytes'])} GiB")
        print(f"{case['mode']:9s} {size_name(case['size']):>9s} {case['impl']:18s} {shown}",
              flush=True)
    return results, flops


def derive(planned: dict, results: list, flops: dict, timeout: float) -> dict:
    """The figures computed from the rows, added to them: GFLOPs (a training step as 3x the
    forward), achieved GFLOP/s and its share of the matmul rate, time and memory against timm;
    returns how far each implementation's maps are from the reference's."""

    def flops_of(impl, size):
        """plain-reference and timm compute what mmcoatnet computes: they take its count."""
        key = ('mmcoatnet' if impl in ('plain-reference', 'timm') else impl, size)
        if key not in flops:  # no inference case of it counted them: a process of its own
            flops[key] = run_child(sys.executable, dict(planned['base'], impl=key[0], size=size),
                                   'flops', timeout).get('flops')
        return flops[key]

    for row in results:
        forward = None if 'error' in row else flops_of(row['impl'], tuple(row['size']))
        if forward:
            row['gflops'] = forward * (3 if row['mode'] == 'train' else 1) / 1e9
            row['achieved_gflops'] = row['gflops'] / row['seconds']
            row['matmul_fraction'] = row['achieved_gflops'] * 1e9 / planned['matmul']

    for row in results:  # ratios against timm in the same mode and size
        timm_row = next((r for r in results if r['impl'] == 'timm' and r['mode'] == row['mode']
                         and r['size'] == row['size'] and 'error' not in r), None)
        if timm_row and 'error' not in row:
            row['vs_timm'] = dict(time=row['seconds'] / timm_row['seconds'],
                                  memory=row['peak_memory_bytes'] / timm_row['peak_memory_bytes'])
    outputs = planned['outputs']
    agreement = {}
    reference = 'timm' if 'timm' in outputs else 'plain-reference'
    if reference in outputs and osp.exists(outputs[reference]):
        expected = torch.load(outputs[reference], weights_only=True)
        for impl, path in outputs.items():
            if impl != reference and osp.exists(path):
                got = torch.load(path, weights_only=True)
                agreement[impl] = max((a - b).abs().max().item() for a, b in zip(got, expected))
    return dict(reference=reference, size=planned['check_size'], max_abs_diff=agreement)


def report(args, planned: dict, results: list, agreement: dict) -> None:
    """benchmark.json and benchmark.md in --out-dir, and the table printed."""
    data = dict(arch=args.arch, batch=args.batch, machine=planned['machine'],
                window_global_blocks=args.global_blocks or 'default',
                weights_from=planned['timm_name'] if planned['weights'] else 'own initialisation',
                results=results, agreement=agreement)
    for row in results:  # file names only: the report does not depend on where it ran
        for key in ('weights', 'input', 'save_outputs'):
            if row.get(key):
                row[key] = osp.basename(row[key])
    from mmcoatnet.utils.results import write_json
    write_json(osp.join(args.out_dir, 'benchmark.json'), data)
    text = markdown(data)
    with open(osp.join(args.out_dir, 'benchmark.md'), 'w') as f:
        f.write(text)
    print(text)
    print(f'written: {osp.join(args.out_dir, "benchmark.json")}, '
          f'{osp.join(args.out_dir, "benchmark.md")}')


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (['--case'], ['--flops']):  # a child (run_child): one case, under any Python
        work = run_case if argv[0] == '--case' else count_flops
        print(RESULT_PREFIX + json.dumps(work(json.loads(argv[1]))), flush=True)
        return 0
    args = parse_args(argv)
    planned = plan(args)
    results, flops = run(planned, args.case_timeout)
    agreement = derive(planned, results, flops, args.case_timeout)
    report(args, planned, results, agreement)
    return 0


if __name__ == '__main__':
    sys.exit(main())
