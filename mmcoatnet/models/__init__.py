from .archs import ARCH_SETTINGS, resolve_arch
from .backbone import CoAtNet

__all__ = ['ARCH_SETTINGS', 'CoAtNet', 'resolve_arch']
