"""The torch APIs mmcoatnet calls that older torch releases (back to 2.1) spell differently, in one
place. Everything else it needs exists in torch 2.1; features that need a newer torch say so."""
import torch
from torch.torch_version import TorchVersion

TORCH_VERSION = TorchVersion(torch.__version__)

# torch.compiler.is_compiling: torch >= 2.3; before it, torch._dynamo.is_compiling (which dynamo
# also reads as True inside a traced graph)
if hasattr(torch.compiler, 'is_compiling'):
    is_compiling = torch.compiler.is_compiling
else:  # torch 2.1, 2.2
    from torch._dynamo import is_compiling  # noqa: F401


def is_exporting() -> bool:
    """Whether torch.export traces the model (torch.onnx's dynamo exporter uses it); False where
    torch.compiler.is_exporting does not exist yet (before 2.6), as torch.export's export of
    mmcoatnet needs a newer torch anyway."""
    check = getattr(torch.compiler, 'is_exporting', None)
    return bool(check and check())


def autocast_enabled(device_type: str) -> bool:
    """``torch.is_autocast_enabled(device_type)`` (torch >= 2.4); the per-device functions
    before."""
    if TORCH_VERSION >= '2.4':
        return torch.is_autocast_enabled(device_type)
    if device_type == 'cpu':
        return torch.is_autocast_cpu_enabled()
    if device_type == 'cuda':
        return torch.is_autocast_enabled()
    return False


# Features beyond the core and the torch release each needs (the core runs on torch >= 2.1).
FLEX_ATTENTION = '2.5'     # torch.nn.attention.flex_attention
# FlexAttention compiled for a CPU: inductor's C++ build of it fails on 2.8 (make test-newest) and
# works on 2.13, the releases tried; GPUs compile it with Triton from 2.5
FLEX_ATTENTION_ON_CPU = '2.13'
FLEX_ATTENTION_TRAINING = '2.6'  # the bias table's gradient: pytorch PR 137452, merged after 2.5
MEMORY_SIMULATION = '2.5'  # torch.library.custom_op / register_fake, MemTracker
COMPILED_TRAINING = '2.13'  # torch.compile of the models: fails on 2.1; tested on 2.13
DYNAMO_ONNX_EXPORT = '2.9'  # torch.onnx's dynamo exporter, torch's default from 2.9; tested on 2.13


class TorchTooOldError(RuntimeError):
    """A feature needs a newer torch than the one installed; the message names both."""


def require_torch(version: str, feature: str) -> None:
    """Raises :class:`TorchTooOldError` naming ``feature`` and the torch release it needs."""
    if TORCH_VERSION < version:
        raise TorchTooOldError(f'{feature} needs torch >= {version}; this is torch '
                               f'{torch.__version__}')
