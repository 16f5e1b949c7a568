"""The decisions of ``tools/analysis_tools/gpu_check.py`` (``make gpu-check``), as pure functions of
what it recorded, so that every GPU branch runs on a machine without one: the verdict of each
environment fact, which GPU architectures a compiled library holds code for (from its bytes or
from ``cuobjdump``'s listing), the thresholds of the numerical checks and why, the time budget, the
GPU-hours of a schedule, the report's verdicts and its Markdown, and the figures the docs' tables
read from a report (:func:`measured_recipe_figures`).

Standard library only: ``tools/dev/docs_tables.py`` may load this file by its path, without torch.
"""
import re
import struct
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

PASS, FAIL, SKIP, INFO = 'pass', 'fail', 'skip', 'info'
# a section some of whose checks were skipped for lack of time: neither passed nor failed
INCOMPLETE = 'incomplete'
SECTIONS = ('environment', 'ops', 'parity', 'kernels', 'recipes', 'distributed')

# ------------------------------------------------------------------------------------- thresholds
# The numerical checks compare with a float64 reference; each figure is the largest absolute error
# over the largest absolute reference value (of a map, an op's output or a gradient).

# mmcv's ops in float32 against float64: float32 rounds at 6e-8, and an op sums a few dozen terms
# (RoIAlign's samples, the deformable attention's points), some by atomics in another order on a
# GPU: 1e-6 was measured on the CPU. A wrong kernel is off by order 1.
OPS_FLOAT32_MAX_ERROR = 1e-4
# The backbone's S1-S4 maps, by precision. Measured on the CPU for CoAtNet-0-rw at 224 and 256x320
# (relative-position tables at std 1): float32 6e-7, float16 autocast 1.6e-3, bfloat16 autocast
# 1.4e-2; a bias 10% off in every layer moves S3 by 5e-3. The thresholds are about 5x (100x for
# float32, where nothing but a bug adds error) what rounding gives. TF32 rounds the matmul inputs to
# float16's 10 mantissa bits and keeps float32's range: float16's threshold. A chunk, a kernel or a
# bias in the wrong place is off by order 1e-2 and more.
PARITY_MAX_ERROR = {'float32': 1e-4, 'tf32': 1e-2, 'amp-float16': 1e-2, 'amp-bfloat16': 5e-2}
# One attention layer's output and gradients (q, k, v, the table) in float32: 1e-6 on the CPU.
# 1e-3 tolerates a kernel that rounds its float32 products to TF32 (Triton's dots may), while a
# bias of std 1 in the wrong place is off by order 1.
KERNEL_FLOAT32_MAX_ERROR = 1e-3
# The default kernel is "the fastest" when within this fraction of the fastest kernel that fits:
# repeated timings of one kernel differ by a few percent.
KERNEL_TIME_TOLERANCE = 0.10
# DDP with SyncBN over two processes against one process with the whole batch, float32 with TF32
# off and deterministic cuDNN: the same sums in another order, held to what
# tests/test_distributed.py holds the CPU's to (torch.testing.assert_close's rtol 1e-4, atol 1e-6:
# a bias before a BatchNorm has a gradient of zero but for rounding, 1e-8, whose relative error
# means nothing).
DDP_RTOL, DDP_ATOL = 1e-4, 1e-6


def relative_error(max_abs_error: float, max_abs_reference: float) -> float:
    return max_abs_error / max(max_abs_reference, 1e-30)


# ------------------------------------------------------------------------------------- check rows

def item(name: str, verdict: str, value=None, fix: Optional[str] = None, **details) -> dict:
    """One check: what was looked at, its value, the verdict and, where it fails, the fix."""
    row = dict(name=name, verdict=verdict, value=value)
    if fix:
        row['fix'] = fix
    row.update(details)
    return row


def skipped(name: str, reason: str, for_time: bool = False) -> dict:
    """A check that did not run, and why; ``for_time``: the budget ran out (never a pass)."""
    return item(name, SKIP, reason=reason, for_time=for_time)


def section_verdict(items: Sequence[dict]) -> str:
    """fail if any check failed; skip if none ran; incomplete if checks were skipped for lack of
    time; else pass."""
    verdicts = [row['verdict'] for row in items]
    if FAIL in verdicts:
        return FAIL
    if not items or all(v == SKIP for v in verdicts):
        return SKIP
    if any(row['verdict'] == SKIP and row.get('for_time') for row in items):
        return INCOMPLETE
    return PASS


def first_failure(report: dict) -> Optional[Tuple[str, dict]]:
    """(section, check) of the first failed check, in section order."""
    for name in SECTIONS:
        for row in report.get('sections', {}).get(name, {}).get('items', []):
            if row['verdict'] == FAIL:
                return name, row
    return None


# --------------------------------------------------------------------- GPU code in a compiled file

FATBIN_MAGIC = 0xBA55ED50  # CUDA's fatbinary header (fatbinary.h), little-endian
FATBIN_KINDS = {1: 'ptx', 2: 'elf'}


def fatbin_images(data: bytes) -> List[Tuple[str, int]]:
    """(kind, sm) of every GPU code image embedded in a compiled file's bytes: kind 'elf' (machine
    code, a cubin) or 'ptx', sm the architecture (80 for sm_80). Reads the fatbinary containers
    nvcc embeds (``.nv_fatbin``): a 16-byte header (magic 0xBA55ED50, version 1, header size, size
    of the entries), then entries whose header holds the kind (u16 at 0), the header size (u32 at
    4), the payload size (u64 at 8) and the architecture (u32 at 28). A compressed payload keeps
    its header, so compression does not hide the architecture. A file without CUDA code (mmcv
    built with CPU ops) gives []."""
    images = []
    magic = struct.pack('<I', FATBIN_MAGIC)
    pos = data.find(magic)
    while pos != -1:
        if pos + 16 <= len(data):
            version, header_size, size = struct.unpack_from('<HHQ', data, pos + 4)
        else:
            version = header_size = size = 0
        end = pos + header_size + size
        if version != 1 or header_size < 16 or end > len(data):
            pos = data.find(magic, pos + 4)
            continue
        entry = pos + header_size
        while entry + 32 <= end:
            kind, _, entry_header, payload = struct.unpack_from('<HHIQ', data, entry)
            if entry_header < 32 or kind not in FATBIN_KINDS:
                break
            images.append((FATBIN_KINDS[kind], struct.unpack_from('<I', data, entry + 28)[0]))
            entry += entry_header + payload
        pos = data.find(magic, end)
    return images


LISTING_LINE = re.compile(r'^(ELF|PTX) file\s+\d+:\s*(\S+)', re.M)


def listing_images(listing: str) -> List[Tuple[str, int]]:
    """(kind, sm) from ``cuobjdump --list-elf --list-ptx`` output, whose lines read
    ``ELF file    1: _ext.1.sm_80.cubin`` and ``PTX file    1: _ext.1.sm_80.ptx``."""
    images = []
    for kind, name in LISTING_LINE.findall(listing):
        match = re.search(r'sm_(\d+)', name)
        if match:
            images.append((kind.lower(), int(match.group(1))))
    return images


def code_for(images: Iterable[Tuple[str, int]], capability: Tuple[int, int]) -> Optional[str]:
    """Which image a GPU of compute ``capability`` runs, or None: machine code for its
    architecture, or for an earlier one of the same major version (cubins run on later minors);
    else PTX for its architecture or an earlier one, compiled by the driver at load time."""
    sm = capability[0] * 10 + capability[1]
    images = set(images)
    if ('elf', sm) in images:
        return f'sm_{sm} machine code'
    same_major = sorted(a for kind, a in images if kind == 'elf' and a // 10 == sm // 10 and a < sm)
    if same_major:
        return f'sm_{same_major[-1]} machine code (binary-compatible)'
    ptx = sorted(a for kind, a in images if kind == 'ptx' and a <= sm)
    if ptx:
        return f'compute_{ptx[-1]} PTX (compiled by the driver at load)'
    return None


def describe_images(images: Sequence[Tuple[str, int]]) -> str:
    if not images:
        return 'no CUDA code'
    counts: Dict[str, int] = {}
    for kind, sm in images:
        key = f'sm_{sm}' if kind == 'elf' else f'compute_{sm} PTX'
        counts[key] = counts.get(key, 0) + 1
    return ', '.join(f'{key} ({n})' for key, n in sorted(counts.items()))


def torch_arch_images(arch_list: Sequence[str]) -> List[Tuple[str, int]]:
    """torch.cuda.get_arch_list() (['sm_75', ..., 'compute_120']) as (kind, sm) images."""
    images = []
    for name in arch_list:
        match = re.fullmatch(r'(sm|compute)_(\d+)a?', name)
        if match:
            images.append(('elf' if match.group(1) == 'sm' else 'ptx', int(match.group(2))))
    return images


# ---------------------------------------------------------------------------- environment verdicts

def parse_cuda_version(text) -> Optional[Tuple[int, int]]:
    """'13.0' -> (13, 0); cuDriverGetVersion's 12040 -> (12, 4); None for anything else."""
    if isinstance(text, int):
        return text // 1000, text % 1000 // 10
    match = re.match(r'^(\d+)\.(\d+)', str(text or ''))
    return (int(match.group(1)), int(match.group(2))) if match else None


def torch_variant(torch_version: str) -> Optional[str]:
    """The local part of torch's version: 'cu126' for 2.13.0+cu126; None without one."""
    return torch_version.partition('+')[2] or None


# PyPI's torch 2.13.0 is PyTorch's CUDA 13.0 build, reporting 2.13.0+cu130: that variant needs no
# MMCOATNET_TORCH_INDEX (tools/install.sh)
DEFAULT_TORCH_VARIANT = 'cu130'
OLD_DRIVER_VARIANT = 'cu126'  # Maxwell to Hopper, Linux driver >= 525.60.13 (docs/install.md)


def install_command(facts: dict, variant: Optional[str] = None, **settings: str) -> str:
    """The ``make install`` that gives this environment again with torch's ``variant`` (default:
    the one it has, so that the fix does not swap torch) and ``settings``."""
    variant = variant or torch_variant(facts.get('torch') or '') or DEFAULT_TORCH_VARIANT
    env = {}
    if variant != DEFAULT_TORCH_VARIANT and (facts.get('torch_cuda') or variant.startswith('cu')):
        env['MMCOATNET_TORCH_INDEX'] = variant
    env.update(settings)
    return ' '.join([f'{key}={value}' for key, value in env.items() if value] + ['make install'])


def mmcv_rebuild_fix(facts: dict, capability: Optional[Tuple[int, int]]) -> str:
    """How to get mmcv with CUDA ops for this GPU: ``make install`` in the project's .venv; in
    another environment, mmcv built from source there (keeping its torch)."""
    arch = f'{capability[0]}.{capability[1]}' if capability else '8.0'
    if facts.get('in_project_venv', True):
        return install_command(facts, MMCOATNET_MMCV_OPS='cuda', TORCH_CUDA_ARCH_LIST=arch)
    return (f'MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST={arch} pip install '
            f'--no-build-isolation --no-cache-dir --no-deps --force-reinstall '
            f'mmcv=={facts.get("mmcv", "2.1.0")} (needs nvcc of CUDA {facts.get("torch_cuda")})')


def environment_items(facts: dict, device: str, requested: Optional[str] = None) -> List[dict]:
    """The verdict of every environment fact for a run on ``device`` ('cuda' or 'cpu'; the user
    asked for ``requested``: 'auto', 'cuda' or 'cpu'), with the fix where one fails. ``facts`` is
    what the tool recorded (absent keys: unknown). A driver that torch cannot use fails unless the
    user asked for the CPU."""
    cuda = device == 'cuda'
    wants_gpu = (requested or device) != 'cpu'
    rows = [item('torch', INFO, facts.get('torch')),
            item('torch CUDA', INFO, facts.get('torch_cuda') or 'none (a CPU-only build)'),
            item('torch architectures', INFO, ' '.join(facts.get('torch_arch_list') or []) or
                 'none')]
    torch_cuda = parse_cuda_version(facts.get('torch_cuda'))
    driver = parse_cuda_version(facts.get('driver_cuda'))
    driver_name = facts.get('driver') or 'unknown release'
    old_driver_fix = (f'{install_command(facts, OLD_DRIVER_VARIANT)} (torch for CUDA 12.6), or '
                      f'update the NVIDIA driver to one for CUDA {facts.get("torch_cuda")} (580 or '
                      'newer for CUDA 13)')
    if not facts.get('nvidia_driver'):
        rows.append(item('NVIDIA driver', FAIL if cuda else INFO, 'none found (no /dev/nvidiactl, '
                         'no nvidia-smi)', fix='install the NVIDIA driver' if cuda else None))
    elif driver and torch_cuda and driver[0] < torch_cuda[0]:
        rows.append(item('NVIDIA driver', FAIL if wants_gpu else INFO,
                         f'{driver_name}, CUDA {driver[0]}.{driver[1]}; torch needs CUDA '
                         f'{torch_cuda[0]}.{torch_cuda[1]}', fix=old_driver_fix))
    else:
        note = ''
        if driver and torch_cuda and driver < torch_cuda:
            note = ' (minor-version compatibility)'
        shown = f'CUDA {driver[0]}.{driver[1]}' if driver else 'CUDA version unknown'
        rows.append(item('NVIDIA driver', PASS, f'{driver_name}, {shown}{note}'))
    if facts.get('nvidia_driver') and not facts.get('cuda_available'):
        reason = facts.get('cuda_init_error') or 'torch.cuda.is_available() is False'
        too_old = driver and torch_cuda and driver[0] < torch_cuda[0]
        rows.append(item('GPU visible to torch', FAIL if wants_gpu else INFO, f'no: {reason}',
                         fix=old_driver_fix if too_old else 'check CUDA_VISIBLE_DEVICES and that '
                         f'this node has a GPU (nvidia-smi -L); else {old_driver_fix}'))
    gpus = facts.get('gpus') or []
    torch_images = torch_arch_images(facts.get('torch_arch_list') or [])
    for index, gpu in enumerate(gpus):
        capability = tuple(gpu['capability'])
        name = f'GPU {index}: {gpu["name"]}, compute capability {capability[0]}.{capability[1]}'
        runs = code_for(torch_images, capability)
        rows.append(item(name, PASS if runs else FAIL, f'torch: {runs or "no code for it"}',
                         fix=None if runs else f'{install_command(facts, OLD_DRIVER_VARIANT)} '
                         '(torch for CUDA 12.6 holds Maxwell to Hopper)'))
    rows += mmcv_items(facts, device)
    for library in ('mmengine', 'mmdet', 'mmseg', 'mmpretrain'):
        rows.append(item(library, INFO, facts.get(library) or 'not installed'))
    return rows


def mmcv_items(facts: dict, device: str) -> List[dict]:
    """mmcv's compiled CUDA version and whether its ``_ext`` holds code for each GPU."""
    cuda = device == 'cuda'
    compiled = facts.get('mmcv_cuda') or 'not available'
    images = [tuple(i) for i in facts.get('mmcv_ext_images') or []]
    gpus = facts.get('gpus') or []
    capability = tuple(gpus[0]['capability']) if gpus else None
    fix = mmcv_rebuild_fix(facts, capability)
    rows = [item('mmcv', INFO, facts.get('mmcv') or 'not installed')]
    if compiled == 'not available':
        rows.append(item('mmcv CUDA ops', FAIL if cuda else INFO,
                         'none: mmcv was built with CPU ops', fix=fix if cuda else None))
    elif compiled != facts.get('torch_cuda'):
        rows.append(item('mmcv CUDA ops', FAIL if cuda else INFO,
                         f'compiled for CUDA {compiled}; torch is CUDA {facts.get("torch_cuda")}',
                         fix=fix if cuda else None))
    else:
        rows.append(item('mmcv CUDA ops', PASS, f'compiled for CUDA {compiled}'))
    how = facts.get('mmcv_ext_read_by', 'its bytes')
    rows.append(item('mmcv _ext GPU code', INFO, describe_images(images), file=facts.get(
        'mmcv_ext'), read_by=how))
    for index, gpu in enumerate(gpus):
        cap = tuple(gpu['capability'])
        runs = code_for(images, cap)
        rows.append(item(f'mmcv _ext code for GPU {index} (sm_{cap[0]}{cap[1]})',
                         PASS if runs else FAIL, runs or 'none: "no kernel image is available"',
                         fix=None if runs else mmcv_rebuild_fix(facts, cap)))
    return rows


# ------------------------------------------------------------------------------------- the budget

class Budget:
    """The run's time budget: a check runs only if its estimate fits what is left, less what the
    checks after it reserve. ``clock``: seconds (time.monotonic; a test passes its own)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self.start = clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def allows(self, estimate_s: float, reserved_s: float = 0.0) -> bool:
        return estimate_s <= self.remaining() - reserved_s


# Rough costs in seconds of each section on an H100-class GPU (full sizes; guesses: no GPU has run
# them) and on this project's 2-core CPU (--quick, measured); what is not listed costs little. The
# recipes take what is left, one run at a time (a model built, RECIPE_STEPS steps), each estimated
# by the runs before it (RECIPE_RUN_S for the first: on a GPU, guessed as about 4 s to build and
# move the model and 2 s a step at full size): the 17 simulated recipes x 2 precisions take 340 s,
# 550 s with the other sections, within the default 600 s.
SECTION_ESTIMATES_S = {
    ('cuda', False): dict(environment=5, ops=10, parity=60, kernels=90, distributed=45),
    ('cuda', True): dict(environment=5, ops=10, parity=20, kernels=40, distributed=45),
    ('cpu', False): dict(environment=5, ops=5, parity=240, kernels=120, distributed=0),
    ('cpu', True): dict(environment=5, ops=5, parity=60, kernels=20, distributed=0),
}
# training steps of a recipe run: the first warms up (allocator, cuDNN's choices), the others are
# timed; --quick takes 2 on a CPU
RECIPE_STEPS = {('cuda', False): 3, ('cuda', True): 3, ('cpu', False): 3, ('cpu', True): 2}
RECIPE_RUN_S = {'cuda': 10, 'cpu': 20}


def section_estimate(section: str, device: str, quick: bool) -> float:
    return SECTION_ESTIMATES_S[(device, quick)].get(section, 5)


def reserved_after(section: str, device: str, quick: bool, order: Sequence[str]) -> float:
    """What the sections after ``section`` in ``order`` need (the recipes reserve nothing: they
    take what is left)."""
    later = order[list(order).index(section) + 1:]
    return sum(section_estimate(s, device, quick) for s in later if s != 'recipes')


# ---------------------------------------------------------------------------- the schedule's hours

def measured_gpu_hours(step_seconds: float, batch_per_gpu: int, images: Optional[int]):
    """GPU-hours of a schedule of ``images`` training images (``estimates.training_images``) at a
    measured ``step_seconds`` per step of ``batch_per_gpu`` images per GPU: steps on one GPU, data
    parallelism taken as free (a bound from below) and the step at the check's one size."""
    if not images or not step_seconds:
        return None
    return images / batch_per_gpu * step_seconds / 3600


# ------------------------------------------------------------------------- the report, for others

def recipe_name(config: str) -> str:
    return re.sub(r'\.py$', '', config.rsplit('/', 1)[-1])


def measured_recipe_figures(report: dict) -> Dict[Tuple[str, str], dict]:
    """From a gpu_check report (the JSON), the figures measured for each recipe on a GPU, keyed as
    the simulations are named: (recipe, precision) with precision 'fp32' or 'amp'
    (docs/results/train_memory_simulated_cuda_<precision>_<recipe>.json), each the configured
    variant ('default' in the simulation's ``peak_bytes``): the card, the measured peak allocated
    and reserved bytes, the simulated peak and its margin-added need with the ratios, the step
    time and the schedule's GPU-hours on this card. Only runs that trained on a GPU are given."""
    figures = {}
    if report.get('device') != 'cuda':
        return figures
    section = report.get('sections', {}).get('recipes', {})
    for row in section.get('items', []):
        measured = row.get('measured')
        if not measured or row.get('precision') not in ('fp32', 'amp'):
            continue
        figures[(row['recipe'], row['precision'])] = dict(
            variant='default', card=report.get('device_name'),
            card_bytes=report.get('device_total_bytes'), torch=report.get('torch'),
            date=report.get('date'), batch=row.get('batch'), shape=row.get('shape'),
            peak_allocated_bytes=measured.get('peak_allocated_bytes'),
            peak_reserved_bytes=measured.get('peak_reserved_bytes'),
            simulated_total_bytes=row.get('simulated_total_bytes'),
            simulated_needed_bytes=row.get('simulated_needed_bytes'),
            allocated_vs_simulated=row.get('allocated_vs_simulated'),
            reserved_vs_needed=row.get('reserved_vs_needed'),
            step_seconds=measured.get('seconds'), gpu_hours=row.get('gpu_hours'),
            schedule_images=row.get('schedule_images'))
    return figures


def recipe_verdict(row: dict, card_bytes: Optional[int]) -> Tuple[str, Optional[str]]:
    """The verdict of one recipe run (``row``: losses, out_of_memory, error, the measured peak
    reserved, the simulation's margin-added need): a non-finite loss or an error fails; running
    out of memory fails where the simulation said the card fits it, and is expected otherwise;
    a peak reserved above the simulated need fails (the docs' card advice would be wrong)."""
    if row.get('error'):
        return FAIL, 'see the error; the environment section names what is missing'
    needed = row.get('simulated_needed_bytes')
    if row.get('out_of_memory'):
        if needed and card_bytes and needed <= card_bytes:
            return FAIL, ('the simulation said this card fits it: train with --amp or '
                          '--cfg-options model.backbone.with_cp=True, and report the JSON')
        return INFO, None
    losses = row.get('measured', {}).get('losses') or []
    if not losses or any(loss != loss or loss in (float('inf'), float('-inf')) for loss in losses):
        return FAIL, 'non-finite losses: report the JSON'
    reserved = row.get('measured', {}).get('peak_reserved_bytes')
    if reserved and needed and reserved > needed:
        return FAIL, ('the simulated need (docs/recipes.md) is low for this card: train with '
                      '--amp or with_cp, and report the JSON')
    return PASS, None


def verdicts(report: dict) -> Dict[str, str]:
    return {name: report['sections'][name]['verdict'] for name in SECTIONS
            if name in report.get('sections', {})}


def _gib(num_bytes) -> str:
    return '-' if num_bytes is None else f'{num_bytes / 2 ** 30:.2f}'


def _fmt(value, spec: str = '.3g') -> str:
    return '-' if value is None else format(value, spec)


def markdown(report: dict) -> str:
    """The report as Markdown: the verdict of each section, the first failure and its fix, then each
    section's checks."""
    lines = [f'# gpu-check: {report.get("device_name")}', '',
             f'torch {report.get("torch")}, {report.get("date")}, device {report.get("device")}'
             f'{" (--quick)" if report.get("quick") else ""}, {report.get("seconds", 0):.0f} s '
             f'of a {report.get("budget_s")} s budget.', '',
             '| section | verdict | seconds |', '|---|---|---:|']
    for name in SECTIONS:
        section = report['sections'].get(name)
        if section:
            lines.append(f'| {name} | {section["verdict"]} | {section.get("seconds", 0):.1f} |')
    failure = first_failure(report)
    lines += ['', f'First failure: {failure[0]}: {failure[1]["name"]}: {failure[1].get("value")}. '
              f'Fix: {failure[1].get("fix") or "-"}' if failure else 'No check failed.']
    for name in SECTIONS:
        section = report['sections'].get(name)
        if not section:
            continue
        lines += ['', f'## {name}: {section["verdict"]}', '', '| check | verdict | value | fix |',
                  '|---|---|---|---|']
        for row in section['items']:
            value = row.get('value') if row['verdict'] != SKIP else f'skipped: {row["reason"]}'
            lines.append(f'| {row["name"]} | {row["verdict"]} | {value} | {row.get("fix") or ""} |')
    return '\n'.join(lines) + '\n'
