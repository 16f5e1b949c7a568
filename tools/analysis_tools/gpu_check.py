"""Checks a machine's GPU road end to end, the first command to run on a GPU (``make gpu-check``).

    python tools/analysis_tools/gpu_check.py [--device auto|cuda|cpu] [--quick]
        [--out-dir work_dirs/gpu_check] [--budget-s 600] [--recipes NAME ...]

Sections, each with a verdict (pass, fail, skip, or incomplete when the time ran out inside it):

- environment: torch and its CUDA, the NVIDIA driver, each GPU and its compute capability against
  torch's architectures, mmcv's compiled CUDA version and whether its ``_ext`` holds code for each
  GPU (``cuobjdump`` where present, else the fatbinary headers in the file's bytes), the
  OpenMMLab libraries. A failure names its fix (a ``make install`` setting).
- ops: mmcv's RoIAlign (forward and backward), NMS and batched NMS, and
  MultiScaleDeformableAttention (forward and backward) on the device against float64 CPU
  references (torchvision's RoIAlign and NMS, mmcv's ``multi_scale_deformable_attn_pytorch``). On
  a CPU mmcv's MSDA module runs that pytorch function itself: the check names what ran.
- parity: the backbone (seeded weights, relative-position tables at std 1) at 224 and at a
  detection size in float32 (TF32 off and on: CUDA only), and under float16 and bfloat16 autocast,
  against float64 on the CPU; the largest error of the S1-S4 maps against the thresholds of
  ``mmcoatnet/analysis/gpu_check.py``.
- kernels: every attention kernel the device has, at CoAtNet-0's S3 of 800x1344 (a 50x84 map,
  12 heads of 32; --quick: 32x40), forward and backward: time, peak memory (CUDA), error against a
  float64 reference. The kernel the default picks (``select_kernel`` with this context) must be the
  fastest of those that fit the bias budget.
- recipes: training steps of each recipe (configs/*.py; --recipes) on a synthetic batch at the
  batch and size of its simulation, float32 and AMP: peak memory allocated and reserved beside the
  simulated figure of docs/results/, the step time and the schedule's GPU-hours on this card. On a
  CPU with --quick: the toy configs (float32).
- distributed: with two GPUs or more, a two-process NCCL DDP step with SyncBN and ``with_cp``
  against one process with the whole batch; skipped otherwise.

``--budget-s`` bounds the run: a section or recipe whose estimate does not fit what is left is
skipped and named so, never passed; the default fits 10 minutes on one H100-class GPU. The report is
``DIR/gpu_check_<device name>.json`` (torch version, date, device, every check) with a Markdown
summary beside it. The exit status is 1 when a check failed, and the first failure is printed with
its fix.
"""
import argparse
import contextlib
import copy
import gc
import glob
import importlib.util
import json
import os
import os.path as osp
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import traceback
from typing import Optional

import torch

from mmcoatnet.analysis import gpu_check as gc_logic
from mmcoatnet.analysis.gpu_check import FAIL, INFO, PASS, Budget, item, skipped
from mmcoatnet.utils.cli import exit_status, load_config
from mmcoatnet.utils.errors import ToolError
from mmcoatnet.utils.results import write_json

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RESULTS = osp.join(REPO, 'docs', 'results')
# the order the sections run in: the recipes last, as they take whatever time is left
RUN_ORDER = ('environment', 'ops', 'parity', 'kernels', 'distributed', 'recipes')
ARCH = 'coatnet-0-rw'
S3_HEADS, S3_HEAD_DIM = 12, 32  # CoAtNet-0(-rw)'s S3: width 384, heads of 32
QUICK_PARITY_BIAS_BYTES = 4 << 20  # --quick: small maps still take the chunked path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', choices=('auto', 'cuda', 'cpu'), default='auto',
                        help='auto: the GPU where torch sees one, else the CPU')
    parser.add_argument('--quick', action='store_true',
                        help='small sizes (on a CPU: the toy configs for the recipes)')
    parser.add_argument('--out-dir', default='work_dirs/gpu_check')
    parser.add_argument('--budget-s', type=float, default=600,
                        help='seconds for the whole run (default 600: 10 minutes)')
    parser.add_argument('--recipes', nargs='+', metavar='NAME',
                        help='recipes to train, by config name (maskrcnn_coatnet0_ms-3x_coco, '
                        'toy/maskrcnn_coatnet-pico_toy) or path; default every recipe the docs\' '
                        'memory tables simulate')
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------ environment

def driver_release():
    """The NVIDIA kernel module's release (580.65.06), from /proc or nvidia-smi."""
    try:
        with open('/proc/driver/nvidia/version') as f:
            match = re.search(r'Kernel Module\s+(?:for \S+\s+)?(\d[\d.]*)', f.read())
            if match:
                return match.group(1)
    except OSError:
        pass
    if shutil.which('nvidia-smi'):
        try:
            out = subprocess.run(['nvidia-smi', '--query-gpu=driver_version',
                                  '--format=csv,noheader'], capture_output=True, text=True,
                                 timeout=30).stdout.split()
            return out[0] if out else None
        except (OSError, subprocess.TimeoutExpired):
            return None
    return None


def driver_cuda_version():
    """The CUDA version the driver supports (cuDriverGetVersion: 12040 for 12.4), or None: asked
    as the install asks it, tools/dev/mmcv_ops_choice.py (read as a file: it runs before
    mmcoatnet is installed, so it lives outside the package)."""
    path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'dev', 'mmcv_ops_choice.py')
    spec = importlib.util.spec_from_file_location('mmcv_ops_choice', path)
    choice = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(choice)
    return choice.driver_cuda_version()


def find_cuobjdump():
    candidates = [shutil.which('cuobjdump')]
    for home in (os.environ.get('CUDA_HOME'), osp.join(sys.prefix, 'cuda'), '/usr/local/cuda'):
        if home:
            candidates.append(osp.join(home, 'bin', 'cuobjdump'))
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def ext_images(path: str):
    """(images, how read) of a compiled file: cuobjdump's listing, else its fatbinary headers."""
    tool = find_cuobjdump()
    if tool:
        listed = subprocess.run([tool, '--list-elf', '--list-ptx', path], capture_output=True,
                                text=True, timeout=120)
        if listed.returncode == 0:
            return gc_logic.listing_images(listed.stdout), f'{tool} --list-elf --list-ptx'
    with open(path, 'rb') as f:
        return gc_logic.fatbin_images(f.read()), "the file's fatbinary headers"


def module_version(name: str):
    try:
        return importlib.import_module(name).__version__
    except Exception as error:  # not installed, or fails to import: both are what is recorded
        return f'not importable ({type(error).__name__}: {error})'.splitlines()[0]


def gather_facts(libraries: bool = True) -> dict:
    """What the environment section judges, recorded as it was found; ``libraries``: mmcv and
    the OpenMMLab libraries too (imports that take seconds)."""
    facts = dict(torch=torch.__version__, torch_cuda=torch.version.cuda,
                 torch_arch_list=torch.cuda.get_arch_list() if torch.version.cuda else [],
                 cuda_available=torch.cuda.is_available(), python=sys.version.split()[0],
                 executable=sys.executable,
                 in_project_venv=osp.realpath(sys.prefix) == osp.realpath(osp.join(REPO, '.venv')),
                 nvidia_driver=osp.exists('/dev/nvidiactl') or bool(shutil.which('nvidia-smi')),
                 cuda_visible_devices=os.environ.get('CUDA_VISIBLE_DEVICES'))
    if facts['nvidia_driver']:
        facts.update(driver=driver_release(), driver_cuda=driver_cuda_version())
    if facts['nvidia_driver'] and torch.version.cuda and not facts['cuda_available']:
        try:
            torch.cuda.init()
        except Exception as error:  # torch's own reason, recorded
            facts['cuda_init_error'] = str(error).strip().splitlines()[0]
    if facts['cuda_available']:
        facts['gpus'] = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            facts['gpus'].append(dict(name=props.name, capability=[props.major, props.minor],
                                      total_bytes=props.total_memory))
    if not libraries:
        return facts
    facts['mmcv'] = module_version('mmcv')
    try:
        from mmcv.ops import get_compiling_cuda_version
        facts['mmcv_cuda'] = get_compiling_cuda_version()
        spec = importlib.util.find_spec('mmcv._ext')
        facts['mmcv_ext'] = spec.origin if spec else None
    except Exception as error:
        facts['mmcv_cuda'] = 'not available'
        facts['mmcv_ext_error'] = str(error).splitlines()[0]
    if facts.get('mmcv_ext'):
        images, how = ext_images(facts['mmcv_ext'])
        facts.update(mmcv_ext_images=[list(i) for i in images], mmcv_ext_read_by=how)
    for library in ('mmengine', 'mmdet', 'mmseg', 'mmpretrain'):
        facts[library] = module_version(library)
    return facts


def refuse_cuda_without_gpu(facts: dict) -> None:
    if facts['cuda_available']:
        return
    why = facts.get('cuda_init_error') or 'torch.cuda.is_available() is False'
    rows = gc_logic.environment_items(facts, 'cuda', 'cuda')
    fix = next((row['fix'] for row in rows if row['verdict'] == FAIL and row.get('fix')), None)
    raise ToolError(f'--device cuda: no GPU is visible to torch {facts["torch"]} ({why}).'
                    + (f' An NVIDIA driver is present: {fix}' if facts['nvidia_driver'] and fix
                       else ' Run it on a machine with a GPU, or with --device cpu.'))


# --------------------------------------------------------------------------------------------- ops

def rel_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    got, expected = got.detach().double().cpu(), expected.detach().double().cpu()
    return gc_logic.relative_error((got - expected).abs().max().item(),
                                   expected.abs().max().item())


def op_row(name, errors: dict, ran: str, threshold: float) -> dict:
    worst = max(errors.values())
    shown = ', '.join(f'{k} {v:.1e}' for k, v in errors.items())
    return item(name, PASS if worst <= threshold else FAIL,
                f'{shown} (threshold {threshold:.0e}); ran {ran}', errors=errors, ran=ran,
                fix=None if worst <= threshold else 'report the JSON: mmcv\'s kernel disagrees '
                'with the reference')


def check_roi_align(device: torch.device) -> dict:
    import torchvision
    from mmcv.ops import roi_align
    generator = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 48, 64, dtype=torch.float64, generator=generator)
    corner = torch.rand(60, 2, generator=generator, dtype=torch.float64) * torch.tensor(
        [110., 80.], dtype=torch.float64)
    size = torch.rand(60, 2, generator=generator, dtype=torch.float64) * 40 + 2
    batch = torch.randint(0, 2, (60, 1), generator=generator).double()
    rois = torch.cat([batch, corner, corner + size], 1)
    weights = torch.randn(60, 16, 7, 7, dtype=torch.float64, generator=generator)
    reference_in = feats.clone().requires_grad_()
    reference = torchvision.ops.roi_align(reference_in, rois, (7, 7), 0.5, 2, aligned=True)
    (reference * weights).sum().backward()
    device_in = feats.float().to(device).requires_grad_()
    out = roi_align(device_in, rois.float().to(device), (7, 7), 0.5, 2, 'avg', True)
    (out * weights.float().to(device)).sum().backward()
    return op_row('RoIAlign (mmcv, aligned, 7x7, 2 samples)', dict(
        forward=rel_error(out, reference), backward=rel_error(device_in.grad, reference_in.grad)),
        f'mmcv.ops.roi_align on {device.type}; reference torchvision.ops.roi_align, float64 CPU',
        gc_logic.OPS_FLOAT32_MAX_ERROR)


def nms_inputs(count=1000, classes=5):
    generator = torch.Generator().manual_seed(1)
    corner = torch.rand(count, 2, generator=generator) * 200
    boxes = torch.cat([corner, corner + torch.rand(count, 2, generator=generator) * 60 + 4], 1)
    scores = torch.randperm(count, generator=generator).float() / count  # distinct: one order
    return boxes, scores, torch.randint(0, classes, (count,), generator=generator)


def check_nms(device: torch.device) -> list:
    import torchvision
    from mmcv.ops import batched_nms, nms
    boxes, scores, labels = nms_inputs()
    rows = []
    _, keep = nms(boxes.to(device), scores.to(device), 0.5)
    expected = torchvision.ops.nms(boxes.double(), scores.double(), 0.5)
    same = keep.cpu().tolist() == expected.tolist()
    rows.append(item('NMS (mmcv, 1000 boxes, IoU 0.5)', PASS if same else FAIL,
                     f'{len(keep)} kept, {"same" if same else "not the same"} boxes in the same '
                     'order as torchvision.ops.nms (float64 CPU)',
                     fix=None if same else 'report the JSON: mmcv\'s NMS disagrees'))
    _, keep = batched_nms(boxes.to(device), scores.to(device), labels.to(device),
                          dict(type='nms', iou_threshold=0.5))
    expected = torchvision.ops.batched_nms(boxes.double(), scores.double(), labels, 0.5)
    same = keep.cpu().tolist() == expected.tolist()
    rows.append(item('batched NMS (mmcv, 1000 boxes of 5 classes)', PASS if same else FAIL,
                     f'{len(keep)} kept, {"same" if same else "not the same"} as '
                     'torchvision.ops.batched_nms (float64 CPU)',
                     fix=None if same else 'report the JSON: mmcv\'s batched NMS disagrees'))
    return rows


def check_msda(device: torch.device) -> dict:
    from mmcv.ops.multi_scale_deform_attn import (
        MultiScaleDeformableAttnFunction,
        multi_scale_deformable_attn_pytorch,
    )
    generator = torch.Generator().manual_seed(2)
    shapes = torch.tensor([[24, 32], [12, 16], [6, 8], [3, 4]])
    starts = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    keys = int((shapes[:, 0] * shapes[:, 1]).sum())
    batch, queries, heads, dims, levels, points = 2, 100, 8, 32, 4, 4
    value = torch.randn(batch, keys, heads, dims, dtype=torch.float64, generator=generator)
    locations = torch.rand(batch, queries, heads, levels, points, 2, dtype=torch.float64,
                           generator=generator)
    attention = torch.rand(batch, queries, heads, levels, points, dtype=torch.float64,
                           generator=generator)
    attention = attention / attention.sum((-2, -1), keepdim=True)
    weights = torch.randn(batch, queries, heads * dims, dtype=torch.float64, generator=generator)
    reference_in = [t.clone().requires_grad_() for t in (value, locations, attention)]
    reference = multi_scale_deformable_attn_pytorch(reference_in[0], shapes, *reference_in[1:])
    (reference * weights).sum().backward()
    device_in = [t.float().to(device).requires_grad_() for t in (value, locations, attention)]
    if device.type == 'cuda':  # what mmcv's MultiScaleDeformableAttention runs on a GPU
        ran = 'MultiScaleDeformableAttnFunction (mmcv\'s CUDA kernel)'
        out = MultiScaleDeformableAttnFunction.apply(device_in[0], shapes.to(device),
                                                     starts.to(device), *device_in[1:], 64)
    else:  # the module's CPU path: mmcv has no CPU kernel
        ran = 'multi_scale_deformable_attn_pytorch in float32 (mmcv\'s module on a CPU)'
        out = multi_scale_deformable_attn_pytorch(device_in[0], shapes, *device_in[1:])
    (out * weights.float().to(device)).sum().backward()
    errors = dict(forward=rel_error(out, reference))
    for name, got, expected in zip(('value', 'locations', 'weights'), device_in, reference_in):
        errors[f'grad {name}'] = rel_error(got.grad, expected.grad)
    return op_row('MultiScaleDeformableAttention (4 levels, 4 points)', errors,
                  ran + '; reference multi_scale_deformable_attn_pytorch, float64 CPU',
                  gc_logic.OPS_FLOAT32_MAX_ERROR)


def ops_section(run) -> list:
    rows = []
    for name, check in (('RoIAlign', check_roi_align), ('NMS', check_nms),
                        ('MultiScaleDeformableAttention', check_msda)):
        try:
            result = check(run.device)
        except Exception as error:  # an op missing for this device is the finding
            capability = tuple(run.facts['gpus'][0]['capability']) if run.facts.get('gpus') \
                else None
            result = item(name, FAIL, f'{type(error).__name__}: {str(error).splitlines()[0]}',
                          fix=gc_logic.mmcv_rebuild_fix(run.facts, capability)
                          if run.device.type == 'cuda' else 'report the JSON')
        rows += result if isinstance(result, list) else [result]
    return rows


# ------------------------------------------------------------------------------------------ parity

def seeded_backbone(max_bias_bytes: Optional[int]):
    """CoAtNet-0-rw with seeded weights in eval mode; the relative-position tables drawn at std 1,
    the order of trained tables (the initialisation's 0.02 would hide a misplaced bias)."""
    from mmcoatnet.models import CoAtNet
    from mmcoatnet.models.attention import RelativePositionBias
    torch.manual_seed(0)
    model = CoAtNet(ARCH, attention_max_bias_bytes=max_bias_bytes)
    model.init_weights()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, RelativePositionBias):
                module.table.copy_(torch.randn(module.table.shape, generator=generator))
    return model.eval()


@contextlib.contextmanager
def stderr_silenced():
    """File descriptor 2 to /dev/null: the profiler's library logs each start and stop there."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, 'w') as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def kernels_that_ran(run):
    """(``run()``, the attention kernels it ran), from the profiler ranges the attention names
    (as tests/helpers.py reads them)."""
    from torch.profiler import ProfilerActivity, profile
    with stderr_silenced(), profile(activities=[ProfilerActivity.CPU]) as recorded:
        result = run()
    prefix = 'coatnet.attention.'
    names = [e.name[len(prefix):] for e in recorded.events() if e.name.startswith(prefix)]
    return result, sorted(set(names))


@contextlib.contextmanager
def tf32(enabled: bool):
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def precisions(device: torch.device) -> list:
    """(name, context) of each precision the parity runs, or (name, reason) where it cannot."""
    cuda = device.type == 'cuda'
    rows = [('float32', tf32(False) if cuda else contextlib.nullcontext())]
    rows.append(('tf32', tf32(True)) if cuda else ('tf32', 'TF32 is a GPU (Ampere+) mode'))
    rows.append(('amp-float16', torch.autocast(device.type, dtype=torch.float16)))
    if cuda and not torch.cuda.is_bf16_supported():
        rows.append(('amp-bfloat16', 'this GPU has no bfloat16'))
    else:
        rows.append(('amp-bfloat16', torch.autocast(device.type, dtype=torch.bfloat16)))
    return rows


def parity_section(run) -> list:
    sizes = [(224, 224), (256, 320)] if run.quick else [(224, 224), (800, 1344)]
    budget_bytes = QUICK_PARITY_BIAS_BYTES if run.quick else None
    model = seeded_backbone(budget_bytes)  # None: the device's budget, as a recipe runs
    reference = copy.deepcopy(model).double()
    model = model.to(run.device)
    rows = []
    for index, size in enumerate(sizes):
        name = f'{size[0]}x{size[1]}'
        if index and not run.budget.allows(run.estimate('parity') / len(sizes), run.reserve):
            rows.append(skipped(f'{name}: every precision', 'not enough time left', True))
            continue
        image = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(index + 1))
        with torch.no_grad():
            expected = reference(image.double())
        kernels = None
        for precision, context in precisions(run.device):
            if isinstance(context, str):
                rows.append(skipped(f'{name} {precision}', context))
                continue
            with torch.no_grad(), context:
                if kernels is None:  # the choice does not depend on the precision
                    outs, kernels = kernels_that_ran(lambda: model(image.to(run.device)))
                else:
                    outs = model(image.to(run.device))
            errors = [rel_error(o, e) for o, e in zip(outs, expected)]
            threshold = gc_logic.PARITY_MAX_ERROR[precision]
            worst = max(errors)
            rows.append(item(
                f'{name} {precision}', PASS if worst <= threshold else FAIL,
                f'largest error {worst:.1e} (threshold {threshold:.0e}; S1-S4 '
                f'{", ".join(f"{e:.1e}" for e in errors)}); kernels {", ".join(kernels)}',
                errors=errors, kernels=kernels, threshold=threshold,
                fix=None if worst <= threshold else 'report the JSON: the backbone disagrees '
                'with its float64 reference in this precision'))
    return rows


# ----------------------------------------------------------------------------------------- kernels

def kernel_runner(kernel: str, feat_size, max_bias_bytes: int):
    from mmcoatnet.models.kernels import (
        chunked_attention,
        chunked_sdpa_attention,
        dense_attention,
        flex_relative_attention,
    )
    from mmcoatnet.models.rel_pos import gather_relative_bias
    return {
        'dense': lambda q, k, v, t: dense_attention(q, k, v, gather_relative_bias(t, feat_size)),
        'chunked': lambda q, k, v, t: chunked_attention(q, k, v, t, feat_size, max_bias_bytes),
        'chunked-sdpa': lambda q, k, v, t: chunked_sdpa_attention(q, k, v, t, feat_size,
                                                                  max_bias_bytes, True),
        'flex': lambda q, k, v, t: flex_relative_attention(q, k, v, t, feat_size),
    }[kernel]


def kernel_unavailable(kernel: str, device: torch.device):
    from mmcoatnet.torch_compat import FLEX_ATTENTION_TRAINING, TORCH_VERSION
    if kernel == 'flex' and device.type == 'cpu':
        return 'FlexAttention has no backward on a CPU'
    if kernel == 'flex' and TORCH_VERSION < FLEX_ATTENTION_TRAINING:
        return (f"FlexAttention's gradient to the bias table needs torch >= "
                f'{FLEX_ATTENTION_TRAINING}')
    return None


def synchronize(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def kernels_section(run) -> list:
    from mmcoatnet.models.kernels import KernelContext, select_kernel
    from mmcoatnet.models.reference import index_gathered_bias, reference_relative_attention
    device = run.device
    feat_size = (32, 40) if run.quick else (50, 84)
    repeats = (2 if device.type == 'cpu' else 3) if run.quick else 5
    # the backbone's defaults: attention_impl='auto', the device's bias budget
    context = KernelContext(device_type=device.type, grad=True, tracing=None, masked=False,
                            batch=1, feat_size=feat_size, num_heads=S3_HEADS,
                            head_dim=S3_HEAD_DIM)
    default = select_kernel(context)
    tokens = feat_size[0] * feat_size[1]
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, S3_HEADS, tokens, S3_HEAD_DIM, dtype=torch.float64,
                           generator=generator) for _ in range(3))
    table = torch.randn(S3_HEADS, 2 * feat_size[0] - 1, 2 * feat_size[1] - 1, dtype=torch.float64,
                        generator=generator)
    weights = torch.randn(1, S3_HEADS, tokens, S3_HEAD_DIM, dtype=torch.float64,
                          generator=generator)
    expected = None
    # the float64 reference on the GPU (about 12 GB at 50x84), else on the CPU
    for where in ([device] if device.type == 'cuda' else []) + [torch.device('cpu')]:
        try:
            leaves = [t.detach().to(where, copy=True).requires_grad_() for t in (q, k, v, table)]
            expected_out = reference_relative_attention(*leaves[:3], index_gathered_bias(
                leaves[3], feat_size))
            (expected_out * weights.to(where)).sum().backward()
            expected = [expected_out.detach().cpu()] + [t.grad.cpu() for t in leaves]
            break
        except torch.cuda.OutOfMemoryError:
            leaves = expected_out = None
            gc.collect()
            torch.cuda.empty_cache()
    del leaves, expected_out
    rows, timed = [], {}
    fits = {'dense': context.bias_bytes <= context.bias_budget}
    for kernel in ('dense', 'chunked', 'chunked-sdpa', 'flex'):
        label = f'{kernel} ({feat_size[0]}x{feat_size[1]}, forward + backward)'
        reason = kernel_unavailable(kernel, device)
        if reason:
            rows.append(skipped(label, reason))
            continue
        if not run.budget.allows(run.estimate('kernels') / 4, run.reserve):
            rows.append(skipped(label, 'not enough time left', True))
            continue
        runner = kernel_runner(kernel, feat_size, context.bias_budget)
        inputs = [t.detach().float().to(device).requires_grad_() for t in (q, k, v, table)]
        grad_out = weights.float().to(device)

        def step(inputs=inputs, runner=runner, grad_out=grad_out):
            for t in inputs:
                t.grad = None
            out = runner(*inputs)
            (out * grad_out).sum().backward()
            return out

        try:
            out = step()  # the first call compiles (flex) and warms up
            synchronize(device)
            errors = [rel_error(out, expected[0])] + [rel_error(t.grad, e)
                                                      for t, e in zip(inputs, expected[1:])]
            del out
            for t in inputs:
                t.grad = None
            if device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            times = []
            for _ in range(repeats):
                synchronize(device)
                start = time.perf_counter()
                step()
                synchronize(device)
                times.append(time.perf_counter() - start)
            peak = (torch.cuda.max_memory_allocated(device) - base
                    if device.type == 'cuda' else None)
        except torch.cuda.OutOfMemoryError:
            rows.append(item(label, INFO, 'out of memory: does not fit', out_of_memory=True))
            gc.collect()
            torch.cuda.empty_cache()
            continue
        except Exception as error:  # a kernel that fails to compile or run is the finding
            rows.append(item(label, FAIL, f'{type(error).__name__}: {str(error).splitlines()[0]}',
                             fix='report the JSON: this kernel fails on this device'))
            continue
        worst = max(errors)
        seconds = statistics.median(times)
        ok = worst <= gc_logic.KERNEL_FLOAT32_MAX_ERROR
        fit = fits.get(kernel, True)
        if ok and fit:
            timed[kernel] = seconds
        memory = (f'{peak / 2 ** 20:.0f} MiB peak' if peak is not None
                  else 'memory not measured on a CPU')
        rows.append(item(
            label, PASS if ok else FAIL,
            f'{seconds * 1e3:.1f} ms, {memory}, largest error {worst:.1e} (threshold '
            f'{gc_logic.KERNEL_FLOAT32_MAX_ERROR:.0e})' + ('' if fit else
                                                          '; past the bias budget'),
            seconds=seconds, times=times, peak_bytes=peak, errors=errors, fits_budget=fit,
            fix=None if ok else 'report the JSON: this kernel disagrees with the reference'))
    rows.append(default_kernel_row(default, timed, context))
    return rows


def default_kernel_row(default: str, timed: dict, context) -> dict:
    """Whether ``default`` (select_kernel's choice) is the fastest kernel that fits, within
    KERNEL_TIME_TOLERANCE; the fix names the setting that takes the faster one."""
    name = (f'default kernel ({context.device_type}, autograd, batch {context.batch}, '
            f'{context.num_heads} heads, {context.feat_size[0]}x{context.feat_size[1]})')
    if not timed:
        return skipped(name, 'no kernel that fits was timed')
    fastest = min(timed, key=timed.get)
    if default not in timed:
        return item(name, FAIL, f'{default}, which failed or did not run; fastest that fits: '
                    f'{fastest}', default=default, fastest=fastest,
                    fix=('--cfg-options model.backbone.attention_impl=sdpa until fixed; '
                         if default == 'flex' else '') + 'report the JSON: the default kernel '
                    'fails here')
    slower = timed[default] / timed[fastest] - 1
    value = (f'{default}: {timed[default] * 1e3:.1f} ms; fastest that fits: {fastest} '
             f'{timed[fastest] * 1e3:.1f} ms')
    if slower <= gc_logic.KERNEL_TIME_TOLERANCE:
        return item(name, PASS, value, default=default, fastest=fastest)
    return item(name, FAIL, value + f' ({slower:.0%} faster)', default=default, fastest=fastest,
                fix=faster_kernel_fix(default, fastest, context))


def faster_kernel_fix(default: str, fastest: str, context) -> str:
    """The backbone options that take ``fastest`` in place of ``default``."""
    options = []
    if fastest == 'flex':
        options.append('attention_impl=flex')
    elif default == 'flex':
        options.append('attention_impl=sdpa')  # the way off FlexAttention
    if fastest == 'dense':
        options.append(f'attention_max_bias_bytes={context.bias_bytes}')
    if fastest == 'chunked' or not options:  # chunked: the CPU's autograd Function, no option
        return 'report the JSON: select_kernel picks a slower kernel on this device'
    return ('--cfg-options ' + ' '.join(f'model.backbone.{option}' for option in options)
            + ', and report the JSON')


# ----------------------------------------------------------------------------------------- recipes

def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(
        f'gpu_check_{name}', osp.join(REPO, 'tools', 'analysis_tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def simulation_file(recipe: str, precision: str) -> str:
    return osp.join(RESULTS, f'train_memory_simulated_cuda_{precision}_{recipe}.json')


def default_recipes(device: torch.device, quick: bool) -> list:
    if device.type == 'cpu' and quick:
        # the toy of each head family but Mask2Former's instances (its 20 synthetic objects an
        # image take minutes a step on 2 cores)
        return [osp.join(REPO, 'configs', 'toy', name) for name in
                ('maskrcnn_coatnet-pico_toy.py', 'upernet_coatnet-pico_toy.py',
                 'dino_coatnet-pico_toy.py', 'mask2former_coatnet-pico_toy.py')]
    # the recipes whose simulated figures are the docs' tables (DINO and Mask2Former among them);
    # the 1x and windowed configs run by --recipes
    return [config for config in sorted(glob.glob(osp.join(REPO, 'configs', '*.py')))
            if osp.exists(simulation_file(gc_logic.recipe_name(config), 'fp32'))]


def resolve_recipes(names) -> list:
    found = []
    for name in names:
        candidates = [name, osp.join(REPO, name), osp.join(REPO, 'configs', name),
                      osp.join(REPO, 'configs', name + '.py')]
        path = next((c for c in candidates if osp.isfile(c)), None)
        if path is None:
            known = ', '.join(gc_logic.recipe_name(c) for c in
                              sorted(glob.glob(osp.join(REPO, 'configs', '*.py'))))
            raise ToolError(f'--recipes: no config {name!r}; the recipes: {known}')
        found.append(osp.abspath(path))
    return found


def recipe_size(cfg, simulation: dict):
    """(batch, (H, W)) of a recipe's run: its simulation's, else the config's batch at mmdet's
    800x1333 or mmseg's crop."""
    if simulation:
        return simulation['batch'], tuple(simulation['shape'])
    batch = cfg.train_dataloader.batch_size
    if cfg.get('crop_size'):
        return batch, tuple(cfg.crop_size)
    scale = cfg.get('image_scale')  # the toy configs' one scale
    return batch, tuple(scale) if scale else (800, 1333)


def recipes_section(run) -> list:
    train_memory = load_tool('train_memory')
    configs = resolve_recipes(run.args.recipes) if run.args.recipes else \
        default_recipes(run.device, run.quick)
    cuda = run.device.type == 'cuda'
    card_bytes = run.facts['gpus'][0]['total_bytes'] if cuda else None
    durations = []
    rows = []
    for config in configs:
        recipe = gc_logic.recipe_name(config)
        cfg = load_config(config)
        if cfg.get('default_scope') not in ('mmdet', 'mmseg'):
            rows.append(skipped(recipe, 'the synthetic batches cover mmdet and mmseg configs'))
            continue
        for precision in ('fp32', 'amp'):
            label = f'{recipe} {precision}'
            if precision == 'amp' and not cuda:
                rows.append(skipped(label, "AMP needs a GPU (mmengine's AmpOptimWrapper)"))
                continue
            # the first run's guess, then what the runs took (the first includes CUDA's set-up)
            estimate = (statistics.median(durations) if durations
                        else gc_logic.RECIPE_RUN_S[run.device.type])
            if not run.budget.allows(estimate):
                rows.append(skipped(label, f'not enough time left ({run.budget.remaining():.0f} '
                                    f's; a run takes about {estimate:.0f} s)', True))
                continue
            path = simulation_file(recipe, precision)
            simulation = json.load(open(path)) if osp.exists(path) else None
            batch, shape = recipe_size(cfg, simulation)
            row = dict(recipe=recipe, precision=precision, config=osp.relpath(config, REPO),
                       batch=batch, shape=list(shape))
            if simulation:
                row.update(simulated_total_bytes=simulation['peak_bytes']['default']['total'],
                           simulated_needed_bytes=simulation['needed_bytes']['default'],
                           simulation=osp.relpath(path, REPO))
            started = time.perf_counter()
            try:
                measured = train_memory.measure(argparse.Namespace(
                    config=config, cfg_options=None, amp=precision == 'amp', shape=shape,
                    batch=batch, instances=20,
                    iters=gc_logic.RECIPE_STEPS[(run.device.type, run.quick)],
                    device=str(run.device)))
                keep = ('seconds', 'times', 'losses', 'peak_allocated_bytes',
                        'peak_reserved_bytes', 'params')
                row['measured'] = {k: measured[k] for k in keep if k in measured}
            except torch.cuda.OutOfMemoryError:
                row['out_of_memory'] = True
            except Exception as error:  # the run's error is the finding
                row['error'] = f'{type(error).__name__}: {str(error).splitlines()[0]}'
            finally:
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
            durations.append(time.perf_counter() - started)
            rows.append(recipe_row(row, cfg, card_bytes))
    return rows


def recipe_row(row: dict, cfg, card_bytes) -> dict:
    measured = row.get('measured', {})
    cuda = card_bytes is not None
    allocated, reserved = measured.get('peak_allocated_bytes'), measured.get('peak_reserved_bytes')
    if allocated and row.get('simulated_total_bytes'):
        row['allocated_vs_simulated'] = allocated / row['simulated_total_bytes']
    if reserved and row.get('simulated_needed_bytes'):
        row['reserved_vs_needed'] = reserved / row['simulated_needed_bytes']
    from mmcoatnet.analysis.estimates import training_images
    images, schedule = training_images(cfg) or (None, None)
    row.update(schedule_images=images, schedule=schedule)
    if measured.get('seconds') and cuda:  # a schedule's hours are a GPU's (the protocols' 8)
        row['gpu_hours'] = gc_logic.measured_gpu_hours(measured['seconds'], row['batch'], images)
    verdict, fix = gc_logic.recipe_verdict(row, card_bytes)
    size = f'batch {row["batch"]} of {row["shape"][0]}x{row["shape"][1]}'
    if row.get('error'):
        value = row['error']
    elif row.get('out_of_memory'):
        value = f'{size}: out of memory'
    else:
        memory = (f'peak {gc_logic._gib(allocated)} GiB allocated, {gc_logic._gib(reserved)} '
                  'reserved' if allocated is not None else 'memory not measured on a CPU')
        if row.get('simulated_total_bytes') and allocated is not None:
            memory += (f' (simulated {gc_logic._gib(row["simulated_total_bytes"])}: '
                       f'{row["allocated_vs_simulated"]:.2f}x; reserved '
                       f'{row["reserved_vs_needed"]:.2f}x the simulated need)')
        elif not row.get('simulated_total_bytes'):
            memory += ' (no simulation)'
        hours = row.get('gpu_hours')
        value = f'{size}: {measured["seconds"]:.3g} s a step, {memory}'
        if cuda and hours is not None:
            value += f'; the schedule: {hours:.0f} GPU-hours on this card'
        elif cuda:
            value += "; the schedule's GPU-hours: unknown (the dataset's size is not known)"
    return item(f'{row["recipe"]} {row["precision"]}', verdict, value, fix=fix, **row)


# ------------------------------------------------------------------------------------- distributed

def free_port() -> str:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def ddp_comparison(device_type: str, work_dir: str, timeout: float = 600) -> dict:
    """The distributed check's row: this tool's --ddp-worker in one process and, under torchrun,
    in two (NCCL on GPUs, gloo on CPUs), their results compared."""
    from mmcoatnet.analysis.ddp_check import largest_difference
    os.makedirs(work_dir, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''),
               OMP_NUM_THREADS='1')
    worker = [osp.abspath(__file__), '--ddp-worker', device_type]
    runs = {'one': [sys.executable, *worker, osp.join(work_dir, 'one')],
            'two': [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
                    '--master_port', free_port(), *worker, osp.join(work_dir, 'two')]}
    name = f'two-process {"NCCL" if device_type == "cuda" else "gloo"} DDP step (SyncBN, with_cp)'
    for key, command in runs.items():
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=REPO)
        if done.returncode:
            tail = ' | '.join(done.stderr.strip().splitlines()[-3:])
            return item(name, FAIL, f'the {key}-process run failed: {tail}',
                        fix='see the error; NCCL_DEBUG=INFO shows what NCCL did')
    one = torch.load(osp.join(work_dir, 'one_rank0.pt'), weights_only=True)
    two = [torch.load(osp.join(work_dir, f'two_rank{r}.pt'), weights_only=True) for r in (0, 1)]
    worst = largest_difference(one, two, gc_logic.DDP_RTOL)
    ok = worst['excess'] <= gc_logic.DDP_ATOL
    return item(name, PASS if ok else FAIL,
                f'loss, gradients and BatchNorm statistics against one process: past rtol '
                f'{gc_logic.DDP_RTOL:.0e} by {max(worst["excess"], 0):.1e} at most (atol '
                f'{gc_logic.DDP_ATOL:.0e}; {worst["tensor"]}, largest difference '
                f'{worst["max_abs_difference"]:.1e})', **worst,
                fix=None if ok else 'report the JSON: SyncBN or DDP gives other gradients')


def distributed_section(run) -> list:
    gpus = torch.cuda.device_count() if run.device.type == 'cuda' else 0
    name = 'two-process NCCL DDP step (SyncBN, with_cp)'
    if gpus < 2:
        where = ('--device cpu: tests/test_distributed.py checks the same step on CPUs with gloo'
                 if run.device.type == 'cpu' else 'this machine')
        return [skipped(name, f'needs two GPUs; {gpus} visible ({where})')]
    return [ddp_comparison('cuda', osp.join(run.args.out_dir, 'ddp'))]


# ---------------------------------------------------------------------------------------- the run

class Run:
    """What the sections share: the arguments, the device, the facts and the budget."""

    def __init__(self, args, device: torch.device, facts: dict):
        self.args, self.device, self.facts = args, device, facts
        self.quick = args.quick
        self.budget = Budget(args.budget_s)
        self.reserve = 0.0  # what the sections after the running one need

    def estimate(self, section: str) -> float:
        return gc_logic.section_estimate(section, self.device.type, self.quick)


SECTION_RUNNERS = dict(ops=ops_section, parity=parity_section, kernels=kernels_section,
                       distributed=distributed_section, recipes=recipes_section)


def device_label(device: torch.device, facts: dict) -> str:
    if device.type == 'cuda':
        return facts['gpus'][0]['name']
    return 'cpu'


def run_sections(run) -> dict:
    sections = {}
    for name in RUN_ORDER:
        started = time.perf_counter()
        if name == 'environment':
            rows = gc_logic.environment_items(run.facts, run.device.type, run.args.device)
        else:
            estimate = run.estimate(name) if name != 'recipes' else 0
            run.reserve = gc_logic.reserved_after(name, run.device.type, run.quick, RUN_ORDER)
            if not run.budget.allows(estimate, run.reserve):
                rows = [skipped(name, f'not enough time left: {run.budget.remaining():.0f} s, '
                                f'it takes about {estimate:.0f} s', True)]
            else:
                try:
                    rows = SECTION_RUNNERS[name](run)
                except Exception as error:  # the report still names the section, and how it failed
                    rows = [item(name, FAIL, f'{type(error).__name__}: '
                                 f'{str(error).strip().splitlines()[0] if str(error) else ""}',
                                 fix='report the JSON: the check itself failed here',
                                 traceback=traceback.format_exc())]
        sections[name] = dict(verdict=gc_logic.section_verdict(rows),
                              seconds=time.perf_counter() - started, items=rows)
        print(f'gpu-check: {name}: {sections[name]["verdict"]} '
              f'({sections[name]["seconds"]:.0f} s)', flush=True)
        if run.device.type == 'cuda':
            gc.collect()
            torch.cuda.empty_cache()
    return {name: sections[name] for name in gc_logic.SECTIONS}


def report_paths(out_dir: str, label: str):
    stem = 'gpu_check_' + (re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-') or 'device')
    return osp.join(out_dir, stem + '.json'), osp.join(out_dir, stem + '.md')


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--ddp-worker']:  # a process of the distributed check (ddp_comparison)
        from mmcoatnet.analysis.ddp_check import ddp_step
        ddp_step(argv[2], argv[1], with_cp=True)
        return 0
    args = parse_args(argv)
    started = time.perf_counter()
    if args.device == 'cuda' and not torch.cuda.is_available():
        refuse_cuda_without_gpu(gather_facts(libraries=False))  # at once
    facts = gather_facts()
    device = torch.device('cuda' if args.device == 'cuda' or args.device == 'auto'
                          and facts['cuda_available'] else 'cpu')
    if args.recipes:
        resolve_recipes(args.recipes)  # an unknown name stops the run before it starts
    run = Run(args, device, facts)
    sections = run_sections(run)
    label = device_label(device, facts)
    report = dict(tool='gpu_check', device=device.type, requested_device=args.device,
                  device_name=label, quick=args.quick, budget_s=args.budget_s,
                  device_total_bytes=facts['gpus'][0]['total_bytes'] if device.type == 'cuda'
                  else None, seconds=time.perf_counter() - started, sections=sections,
                  skipped_sections=[n for n, s in sections.items() if s['verdict'] == 'skip'],
                  facts=facts)
    failure = gc_logic.first_failure(report)
    if failure:
        report['first_failure'] = dict(section=failure[0], check=failure[1]['name'],
                                       value=failure[1].get('value'), fix=failure[1].get('fix'))
    json_path, md_path = report_paths(args.out_dir, label)
    write_json(json_path, report)
    report = json.load(open(json_path))  # with the torch version and the date
    with open(md_path, 'w') as f:
        f.write(gc_logic.markdown(report))
    print(f'gpu-check: {", ".join(f"{k} {v}" for k, v in gc_logic.verdicts(report).items())} '
          f'in {report["seconds"]:.0f} s; written: {json_path}, {md_path}')
    if failure:
        print(f'gpu-check: FAILED {failure[0]}: {failure[1]["name"]}: {failure[1].get("value")}'
              f'\n  fix: {failure[1].get("fix") or "see the report"}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(exit_status(main))
