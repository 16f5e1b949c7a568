"""One way to patch a library attribute for the length of a ``with`` block, shared by the
simulation's patches (simulation.py, query_heads_simulation.py)."""
import contextlib
import functools
import importlib
from typing import Callable, Iterator


@contextlib.contextmanager
def replaced(module_name: str, owner: str, attribute: str,
              make: Callable[[Callable], Callable]) -> Iterator[None]:
    """Within it, ``module_name``'s ``owner.attribute`` (``owner`` '' for the module itself) is
    ``make(original)``; without the module (mmdet in an mmseg-only environment) nothing is."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        yield
        return
    target = getattr(module, owner) if owner else module
    original = getattr(target, attribute)
    setattr(target, attribute, functools.wraps(original)(make(original)))
    try:
        yield
    finally:
        setattr(target, attribute, original)
