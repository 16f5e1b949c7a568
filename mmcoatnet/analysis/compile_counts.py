"""How often torch.compile compiled: graphs, recompilations and graph breaks, from torch._dynamo's
own counters and its "recompiles" log, so tools and tests can measure them."""
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Iterator, List

import torch

# the logger behind TORCH_LOGS=recompiles: torch._logging.getArtifactLogger('torch._dynamo.guards',
# ...)
RECOMPILES_LOGGER = 'torch._dynamo.guards.__recompiles'


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
