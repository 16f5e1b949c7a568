"""Fake tensors' values and data-dependent sizes in the memory simulation: ops whose output size
depends on values get their upper bound, except where FakeTensorMode keeps the values (its
constants: query_heads_simulation.py), and deep copies of fake tensors are clones."""
from typing import Optional

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


class UpperBoundDataDependentOps(TorchDispatchMode):
    """Gives ops whose output size depends on values their upper bound (every element selected),
    and ``.item()`` a stand-in value (1, or True for a bool), except where FakeTensorMode keeps the
    values (its constants), from which it computes them. Entered inside a FakeTensorMode.
    ``unique_at_most``: a tighter bound on ``unique``'s size, where the caller knows one."""

    unique_at_most: Optional[int] = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet in _VALUE_DEPENDENT and all(values_known(t) for t in pytree.tree_leaves(args)
                                               if isinstance(t, torch.Tensor)):
            return func(*args, **kwargs)  # FakeTensorMode computes them from the values it keeps
        if packet is aten.nonzero:
            return every_position(args[0])
        if packet is aten._local_scalar_dense:
            x = args[0]
            if x.dtype == torch.bool:
                return True
            return 1.0 if x.is_floating_point() else 1
        if packet is aten.masked_select:
            x, _ = torch.broadcast_tensors(args[0], args[1])
            return x.new_empty((x.numel(),))
        if packet in (aten._unique2, aten.unique_consecutive, aten.unique_dim):
            x = args[0]
            size = x.numel() if self.unique_at_most is None else min(x.numel(), self.unique_at_most)
            values = x.new_empty((size,)) if packet is not aten.unique_dim else x.clone()
            extras = [x.new_empty(x.shape, dtype=torch.long),
                      x.new_empty((size,), dtype=torch.long)]
            return (values, *extras)
        if packet in (aten.index, aten._unsafe_index, aten.index_put, aten.index_put_,
                      aten._index_put_impl_):
            args = (args[0], bool_indices_as_positions(args[1]), *args[2:])
        return func(*args, **kwargs)


class FakeDeepcopyAsClone(TorchFunctionMode):
    """``copy.deepcopy`` of a fake tensor as a clone (mmdet deep-copies its data samples). torch's
    default would also deep-copy the fake tensor's ``__dict__``, its FakeTensorMode included, whose
    storage weak references then get released twice: a use-after-free."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.__deepcopy__ and isinstance(args[0], FakeTensor):
            tensor, memo = args
            if id(tensor) not in memo:
                memo[id(tensor)] = tensor.clone().requires_grad_(tensor.requires_grad)
            return memo[id(tensor)]
        return func(*args, **(kwargs or {}))


_VALUE_DEPENDENT = (aten.nonzero, aten._local_scalar_dense, aten.masked_select, aten._unique2,
                    aten.unique_consecutive, aten.unique_dim)


def values_known(x: torch.Tensor) -> bool:
    """Whether FakeTensorMode keeps the values of ``x`` (a constant: query_heads_simulation.py)."""
    return isinstance(x, FakeTensor) and x.constant is not None


def every_position(mask: torch.Tensor) -> torch.Tensor:
    """``mask.nonzero()``'s shape were every element true (its own where its values are known)."""
    if values_known(mask):
        return torch.nonzero(mask)
    return mask.new_empty((mask.numel(), mask.dim()), dtype=torch.long)


def bool_indices_as_positions(indices):
    """A boolean mask in an index list becomes the positions it would select (its upper bound)."""
    positions = []
    for index in indices:
        if index is not None and index.dtype in (torch.bool, torch.uint8):
            positions.extend(every_position(index).unbind(1))
        else:
            positions.append(index)
    return positions
