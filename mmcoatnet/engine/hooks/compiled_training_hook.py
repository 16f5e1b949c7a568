"""What a training run under torch.compile (mmengine's ``compile=True``) needs besides the switch:
the optimizer step kept out of the compiled ``train_step``, and an inductor bug worked around."""
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...torch_compat import COMPILED_TRAINING, require_torch


def keep_optimizer_step_eager(optim_wrapper) -> None:
    """Runs ``optim_wrapper.update_params`` (backward, clipping, step, zero_grad) outside dynamo.

    Traced inside ``train_step``, its ConfigDict param groups fail dynamo and every scheduled
    learning rate becomes a guard (one recompilation per iteration); the forward, the loss and
    their AOT-autograd backward stay compiled."""
    optim_wrapper.update_params = torch.compiler.disable(optim_wrapper.update_params)


def sort_symbolic_strides_with_shape_env() -> None:
    """Redoes a failed ordering of symbolic strides with the active graph's ShapeEnv (idempotent).

    Inductor orders a graph output's strides without its ShapeEnv, so sympy cannot decide e.g.
    ``(H//16 + 1)**2 < H//16 + 1`` and the compile fails (docs/torch-compile.md; pytorch#185510)."""
    from torch._inductor import ir
    from torch._inductor.virtualized import V
    stock = getattr(ir, 'get_fill_order', None)
    if stock is None or hasattr(stock, 'stock'):  # not this torch's inductor, or already wrapped
        return

    def get_fill_order(seq, shape_env=None):
        try:
            return stock(seq, shape_env)
        except TypeError:  # sympy's: a relational between symbolic strides has no truth value
            graph_shape_env = getattr(getattr(V.graph, 'sizevars', None), 'shape_env', None)
            if shape_env is not None or graph_shape_env is None:
                raise
            return stock(seq, graph_shape_env)

    get_fill_order.stock = stock
    ir.get_fill_order = get_fill_order  # get_stride_order looks it up in ir at every call


def prepare_compiled_training(optim_wrapper) -> None:
    """What a compiled ``train_step`` needs: :func:`keep_optimizer_step_eager` and, for inductor,
    :func:`sort_symbolic_strides_with_shape_env`."""
    require_torch(COMPILED_TRAINING, 'training with torch.compile (compile=True)')
    keep_optimizer_step_eager(optim_wrapper)
    sort_symbolic_strides_with_shape_env()


@HOOKS.register_module()
class CompiledTrainingHook(Hook):
    """:func:`prepare_compiled_training` for the runner's optimizer wrapper before training starts
    (after mmengine built it); tools/train.py adds it when the config sets ``compile``."""

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        prepare_compiled_training(runner.optim_wrapper)
