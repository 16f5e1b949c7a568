"""ONNX export of a config's model for any input size, and its check against PyTorch in onnxruntime.

What is exported (``WHATS``):
  backbone   a detector's ``extract_feat`` (backbone + neck): image to the FPN maps
  segmentor  a segmentor's ``encode_decode``: image to logits at the image's size

Exporters (``EXPORTERS``): ``torchscript``, the default here, is torch.onnx's deprecated
TorchScript one (``dynamo=False``), which mmdeploy 1.3.1 still needs and which exports in seconds;
``dynamo`` its torch.export-based one (torch's default from 2.9, needs onnxscript). Either way
CoAtNet's attention takes its ``'traced'`` kernel, which resizes and gathers the relative bias from
the feature size as a graph value, so one file serves every batch, height and width. The input is
the normalised image (the data preprocessor's output), of any size of at least 32x32.
"""
import copy
import time
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.utils import to_2tuple

from ..models.backbone import MIN_INPUT_SIDE  # the graph cannot check it, so run_onnx does
from ..torch_compat import DYNAMO_ONNX_EXPORT, require_torch

WHATS = {'backbone': 'mmdet', 'segmentor': 'mmseg'}  # what to export: the scope it needs
# ONNX Resize takes run-time sizes and the cubic mode the tables are resized with from opset 11
MIN_OPSET = 11
DEFAULT_OPSET = 17  # LayerNormalization is one ONNX op from 17 on
DYNAMO_MIN_OPSET = 18  # the dynamo exporter writes opset 18 and up
EXPORTERS = ('dynamo', 'torchscript')
INPUT_NAME = 'image'


def torchscript_exporter() -> dict:
    """The keyword that picks torch.onnx's TorchScript exporter: ``dynamo=False`` where torch
    has the choice (2.5 on; the default from 2.9), nothing before, where it is the only one."""
    import inspect
    return dict(dynamo=False) if 'dynamo' in inspect.signature(torch.onnx.export).parameters \
        else {}


def max_opset() -> int:
    from torch.onnx import _constants  # the TorchScript exporter's own limit
    return _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET


def default_opset(exporter: str) -> int:
    return max(DEFAULT_OPSET, DYNAMO_MIN_OPSET) if exporter == 'dynamo' else DEFAULT_OPSET


def check_export_options(what: str, opset: Optional[int] = None,
                         scope: Optional[str] = None, exporter: str = 'torchscript') -> None:
    """Refuses an unsupported ``--what``, ``--exporter`` or ``--opset`` (or a ``--what`` that
    does not fit the config's ``default_scope``), naming the option and what it takes."""
    if exporter not in EXPORTERS:
        raise ValueError(f'--exporter {exporter!r} is not supported; choose one of '
                         f'{list(EXPORTERS)}')
    if exporter == 'dynamo' and opset is not None and opset < DYNAMO_MIN_OPSET:
        raise ValueError(f'--opset {opset} is below the {DYNAMO_MIN_OPSET} the dynamo exporter '
                         f'writes; choose --opset {DYNAMO_MIN_OPSET} or more, or '
                         '--exporter torchscript')
    if what not in WHATS:
        raise ValueError(f'--what {what!r} is not supported; choose one of {sorted(WHATS)} '
                         '(backbone: a detector\'s backbone + neck, segmentor: a whole segmentor)')
    if opset is not None and not MIN_OPSET <= opset <= max_opset():
        old = (f' (too old: ONNX Resize takes run-time sizes and the cubic mode of the bias-table '
               f'resize from opset {MIN_OPSET} on)' if opset < MIN_OPSET else '')
        raise ValueError(f'--opset {opset} is not supported{old}; choose an opset from '
                         f'{MIN_OPSET} to {max_opset()} (default {DEFAULT_OPSET})')
    if scope is not None and WHATS[what] != scope:
        fitting = [w for w, s in WHATS.items() if s == scope]
        raise ValueError(f'--what {what} exports an {WHATS[what]} model, but the config\'s '
                         f'default_scope is {scope!r}; for this config use --what '
                         f'{" or ".join(fitting) if fitting else "(none supported)"}')


class DetectorFeatures(nn.Module):
    """A detector's ``extract_feat`` (backbone + neck) as a module of the image alone."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.detector.extract_feat(image))


class SegmentorLogits(nn.Module):
    """A segmentor's ``encode_decode``, logits resized to the input's own (run-time) size."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.segmentor.encode_decode(image, [dict(img_shape=image.shape[2:])])


def adaptive_pool_matrix(length, bins: int, dtype=torch.float32) -> torch.Tensor:
    """(bins, L) matrix of adaptive average pooling along one axis: bin i averages positions
    [floor(i L / bins), ceil((i + 1) L / bins)). ``length`` may be a traced 0-dim tensor."""
    index = torch.arange(bins)
    start = index * length // bins
    stop = ((index + 1) * length + bins - 1) // bins
    positions = torch.arange(length)
    inside = (positions[None, :] >= start[:, None]) & (positions[None, :] < stop[:, None])
    return inside.to(dtype) / (stop - start)[:, None].to(dtype)


class TraceableAdaptiveAvgPool2d(nn.Module):
    """nn.AdaptiveAvgPool2d as two matrix products with run-time sizes: torch.onnx's TorchScript
    exporter takes adaptive pooling to more than 1x1 (UperNet's pyramid pooling) only at a fixed
    input size, and ONNX has no adaptive pooling op."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = to_2tuple(output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = self.output_size
        by_rows = adaptive_pool_matrix(x.shape[-2], rows, x.dtype).to(x.device)
        by_cols = adaptive_pool_matrix(x.shape[-1], cols, x.dtype).to(x.device)
        return torch.matmul(torch.matmul(by_rows, x), by_cols.transpose(0, 1))


def make_adaptive_pools_traceable(model: nn.Module) -> nn.Module:
    """Replaces every nn.AdaptiveAvgPool2d in ``model`` by :class:`TraceableAdaptiveAvgPool2d`."""
    for name, child in model.named_children():
        if isinstance(child, nn.AdaptiveAvgPool2d) and None not in to_2tuple(child.output_size):
            setattr(model, name, TraceableAdaptiveAvgPool2d(child.output_size))
        else:
            make_adaptive_pools_traceable(child)
    return model


def build_export_model(cfg, what: str, checkpoint: Optional[str] = None) -> nn.Module:
    """The module to export, in eval mode on the CPU: random weights without ``checkpoint``
    (through the libraries' own ``init_detector`` / ``init_model``, which skip init_cfg)."""
    from mmengine.model import revert_sync_batchnorm
    check_export_options(what, scope=cfg.get('default_scope'))
    if what == 'backbone':
        from mmdet.apis import init_detector
        model = DetectorFeatures(init_detector(cfg, checkpoint, device='cpu'))
    else:
        from mmseg.apis import init_model
        model = SegmentorLogits(init_model(cfg, checkpoint, device='cpu'))
    return revert_sync_batchnorm(model).eval()


def output_names(model: nn.Module, shape: Sequence[int]) -> List[str]:
    """One name per output: 'logits', or 'feat<i>' for each map the neck gives at ``shape``
    (counted by running it: FPN says num_outs, DINO's ChannelMapper does not)."""
    if isinstance(model, SegmentorLogits):
        return ['logits']
    with torch.no_grad():
        maps = model(torch.zeros(1, 3, *shape))
    return [f'feat{i}' for i in range(len(maps))]


def export_onnx(model: nn.Module, path: str, shape: Sequence[int] = (224, 224),
                opset: Optional[int] = None, exporter: str = 'torchscript',
                batch: int = 1) -> List[str]:
    """Writes ``model`` (from :func:`build_export_model`) to ``path`` with dynamic batch, height and
    width, traced on a (``batch``, 3, *shape) image by ``exporter`` (:data:`EXPORTERS`); returns the
    output names. ``model`` itself is left as it is (the reference to check the file against): a
    copy with traceable pools is exported."""
    opset = default_opset(exporter) if opset is None else opset
    check_export_options('segmentor' if isinstance(model, SegmentorLogits) else 'backbone', opset,
                         exporter=exporter)
    if min(shape) < MIN_INPUT_SIDE:
        raise ValueError(f'--shape {shape[0]} {shape[1]} is below the {MIN_INPUT_SIDE}x'
                         f'{MIN_INPUT_SIDE} the backbone takes; trace at a larger size')
    names = output_names(model, shape)
    image = torch.randn(batch, 3, *shape)
    traceable = make_adaptive_pools_traceable(copy.deepcopy(model))
    with warnings.catch_warnings(), torch.no_grad():
        if exporter == 'dynamo':
            _export_dynamo(traceable, image, path, opset, names)
        else:
            _export_torchscript(traceable, image, path, opset, names)
    return names


def _export_torchscript(model: nn.Module, image: torch.Tensor, path: str, opset: int,
                        names: List[str]) -> None:
    axes = {INPUT_NAME: {0: 'batch', 2: 'height', 3: 'width'}}
    axes.update({name: {0: 'batch', 2: f'{name}_height', 3: f'{name}_width'} for name in names})
    # the backbone's input checks run on the tracing image only, which the warnings say
    warnings.filterwarnings('ignore', category=torch.jit.TracerWarning,
                            module=r'mmcoatnet\.models\.backbone')
    warnings.filterwarnings('ignore', message='You are using the legacy TorchScript')
    torch.onnx.export(model, (image,), path, **torchscript_exporter(), opset_version=opset,
                      input_names=[INPUT_NAME], output_names=names, dynamic_axes=axes)


def _export_dynamo(model: nn.Module, image: torch.Tensor, path: str, opset: int,
                   names: List[str]) -> None:
    require_torch(DYNAMO_ONNX_EXPORT, 'the dynamo ONNX exporter (--exporter dynamo)')
    try:
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError('--exporter dynamo needs onnxscript (pip install onnxscript, or '
                          '.[deploy]); or use --exporter torchscript') from error
    import torch.fx.experimental._config as shape_config
    from torch.export import Dim
    dynamic = {INPUT_NAME: {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}
    # size-oblivious: a batch-1 example keeps the batch dynamic instead of specialising on 1
    with shape_config.patch(backed_size_oblivious=True):
        torch.onnx.export(model, (image,), path, dynamo=True, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=names, dynamic_shapes=dynamic,
                          external_data=False, verbose=False)


def convert_to_float16(path: str) -> None:
    """Rewrites the ONNX file at ``path`` with float16 weights and computation, its input and
    outputs kept float32 (onnxruntime's own converter, ``keep_io_types``): what fp16 deployment
    runs, checkable in onnxruntime's CPU session against PyTorch."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    onnx.save(convert_float_to_float16(onnx.load(path), keep_io_types=True), path)


def onnx_session(path: str, threads: int = 0):
    """An onnxruntime CPU session (``threads``: intra-op threads, 0 = onnxruntime's choice)."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def run_onnx(session, image: np.ndarray) -> List[np.ndarray]:
    """The session's outputs for a (N, 3, H, W) float32 image, refusing what the backbone refuses
    (an ONNX graph has no assertion op to do it)."""
    if image.ndim != 4 or min(image.shape[-2:]) < MIN_INPUT_SIDE:
        raise ValueError(f'CoAtNet needs H and W of at least {MIN_INPUT_SIDE} (expected (N, 3, '
                         f'>={MIN_INPUT_SIDE}, >={MIN_INPUT_SIDE})), got shape '
                         f'{tuple(image.shape)};'
                         ' resize or pad the images')
    return session.run(None, {INPUT_NAME: np.ascontiguousarray(image, dtype=np.float32)})


def _best_seconds(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def compare_with_torch(model: nn.Module, session, shape: Sequence[int], batch: int = 1,
                       repeat: int = 0, seed: int = 0) -> Dict[str, object]:
    """onnxruntime against PyTorch on one random (batch, 3, H, W) image: per output the max abs
    difference and the largest |PyTorch value| (for a relative bound); with ``repeat`` > 0 also
    both inference times in seconds (the best of ``repeat`` runs after one warm-up)."""
    image = torch.randn(batch, 3, *shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(image)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    got = run_onnx(session, image.numpy())
    result = dict(shape=[batch, 3, *shape],
                  max_abs_diff=[float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected)],
                  max_abs_value=[float(e.abs().max()) for e in expected],
                  output_shapes=[list(g.shape) for g in got])
    if [list(e.shape) for e in expected] != result['output_shapes']:
        raise AssertionError(f'onnxruntime output shapes {result["output_shapes"]} differ from '
                             f'PyTorch\'s {[list(e.shape) for e in expected]}')
    if repeat > 0:
        with torch.no_grad():
            result['torch_seconds'] = _best_seconds(lambda: model(image), repeat)
        result['onnxruntime_seconds'] = _best_seconds(lambda: run_onnx(session, image.numpy()),
                                                      repeat)
    return result
