"""What torch.compile runs need besides the switch itself (mmengine's ``compile=True``): the
optimizer step kept out of the compiled train_step and an inductor bug worked around
(:func:`prepare_compiled_training`, :class:`CompiledTrainingHook`), and a count of
the graphs dynamo compiled, its recompilations and graph breaks, taken from torch._dynamo's own
counters and its "recompiles" log, so tools and tests measure how often a model recompiles."""
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Iterator, List

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

# the logger behind TORCH_LOGS=recompiles: torch._logging.getArtifactLogger('torch._dynamo.guards', ...)
RECOMPILES_LOGGER = 'torch._dynamo.guards.__recompiles'


def keep_optimizer_step_eager(optim_wrapper) -> None:
    """Runs ``optim_wrapper.update_params`` (backward, clipping, step, zero_grad) outside dynamo,
    as mmengine's ``compile=True`` would otherwise trace it inside ``train_step``: its param groups
    are ConfigDicts, which dynamo fails on (InternalTorchDynamoError in Adam's step), and their
    learning rates, Python floats that the schedulers change every iteration, would each be a
    guard, so one recompilation per iteration. The forward and the loss stay compiled, and so does
    their backward (AOT autograd's)."""
    optim_wrapper.update_params = torch.compiler.disable(optim_wrapper.update_params)


def prepare_compiled_training(optim_wrapper) -> None:
    """What a compiled ``train_step`` needs: :func:`keep_optimizer_step_eager` and, for inductor,
    :func:`sort_symbolic_strides_with_shape_env`."""
    keep_optimizer_step_eager(optim_wrapper)
    sort_symbolic_strides_with_shape_env()


@HOOKS.register_module()
class CompiledTrainingHook(Hook):
    """:func:`prepare_compiled_training` for the runner's optimizer wrapper before training starts
    (after mmengine built it); tools/train.py adds it when the config sets ``compile``."""

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        prepare_compiled_training(runner.optim_wrapper)


@dataclass
class CompileCounts:
    """What dynamo did inside :func:`counting_compiles`: ``graphs`` compiled in all (every frame,
    first compiles and recompiles), ``recompiles`` (one message per recompilation, naming the guard
    that failed), ``graph_breaks`` (by reason)."""
    graphs: int = 0
    recompiles: List[str] = field(default_factory=list)
    graph_breaks: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return dict(graphs=self.graphs, recompiles=len(self.recompiles),
                    graph_breaks=sum(self.graph_breaks.values()))


def sort_symbolic_strides_with_shape_env() -> None:
    """Works around pytorch/pytorch#185510 (torch 2.13; fix proposed in pytorch/pytorch#185871):
    inductor orders a graph output's symbolic strides without its ShapeEnv, so sympy cannot decide
    e.g. ``(H//16 + 1)**2 < H//16 + 1`` and the compile fails ("cannot determine truth value of
    Relational"). It failed the toy Mask R-CNN's inductor training, whose first batch is square
    (H and W one symbol) and whose graph breaks make feature maps graph outputs. Only where the
    stock ordering fails is it redone with the active graph's ShapeEnv, which compares sizes by
    their hints; idempotent."""
    from torch._inductor import ir
    from torch._inductor.virtualized import V
    stock = ir.get_fill_order
    if hasattr(stock, 'stock'):  # already wrapped
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


class _RecompileRecorder(logging.Handler):

    def __init__(self, messages: List[str]):
        super().__init__(logging.DEBUG)
        self.messages = messages

    def emit(self, record: logging.LogRecord):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def counting_compiles() -> Iterator[CompileCounts]:
    """Counts what torch._dynamo compiles inside the block (its counters are reset on entry); the
    counts are filled in when the block exits, which also resets torch._logging's settings."""
    from torch._dynamo.utils import counters

    counts = CompileCounts()
    counters.clear()
    # the recompiles artifact is logged only while enabled; the handler records it, printing nothing
    torch._logging.set_logs(recompiles=True)
    logger = logging.getLogger(RECOMPILES_LOGGER)
    recorder = _RecompileRecorder(counts.recompiles)
    logger.addHandler(recorder)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield counts
    finally:
        logger.removeHandler(recorder)
        logger.propagate = propagate
        torch._logging.set_logs()
        counts.graphs = counters['stats']['unique_graphs']
        counts.graph_breaks = dict(counters['graph_break'])
