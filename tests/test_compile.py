"""torch.compile at varying input sizes: recompilations stay bounded and results match eager.

Inductor takes minutes to compile even the toy backbone on 2 cores (see
tools/analysis_tools/compile_benchmark.py for its figures), so these tests compile with
``aot_eager`` (dynamo's graphs and AOT autograd's joint graph, run by eager kernels): recompilation
is decided by dynamo's guards, the same whichever backend runs the graphs.
"""
import json

import pytest
import torch

from mmcoatnet.analysis.compile_counts import counting_compiles
from mmcoatnet.engine.hooks.compiled_training_hook import (
    keep_optimizer_step_eager,
    sort_symbolic_strides_with_shape_env,
)
from mmcoatnet.models import CoAtNet
from mmcoatnet.models.attention import RelativeAttention, RelativePositionBias
from mmcoatnet.models.kernels import flex_token_bucket, rows_per_chunk
from mmcoatnet.models.reference import ReferenceRelativeAttention
from mmcoatnet.torch_compat import FLEX_ATTENTION_ON_CPU

from helpers import TOY_SEG, kernels_that_ran, needs_torch, run_tool

SIZES = [(128, 160), (96, 128), (160, 96), (64, 224)]  # H and W both change at every step


@pytest.mark.slow
def test_compiled_backbone_trains_at_varying_sizes_with_bounded_recompiles():
    torch.manual_seed(0)
    torch._dynamo.reset()  # counts and dynamo's recompile limit start from nothing
    # every block kind (stride-2 MBConv, stride-2 and stride-1 transformer) at the fewest blocks
    model = CoAtNet(arch=dict(depths=(1, 1, 2, 1), channels=(16, 32, 64, 64))).train()
    compiled = torch.compile(model, backend='aot_eager')  # dynamic=None: mmengine's compile=True
    images = [torch.randn(2, 3, *size) for size in SIZES]

    eager_maps = model(images[0])
    with counting_compiles() as counts:
        for index, image in enumerate(images):
            maps = compiled(image)
            sum(m.square().mean() for m in maps).backward()
            if index == 0:
                for eager, got in zip(eager_maps, maps):
                    torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-4)
    # automatic dynamic shapes: the first compile is for the first size; the first size change
    # recompiles once with H and W symbolic; a dimension that changed later would add one more
    # (at most 2 recompiles); no later size may recompile (a constant size would cost one per size)
    assert 1 <= len(counts.recompiles) <= 2, counts.recompiles
    assert counts.graphs == 1 + len(counts.recompiles)  # the whole backbone is one graph
    assert not counts.graph_breaks
    with counting_compiles() as later:
        sum(m.sum() for m in compiled(torch.randn(2, 3, 192, 288))).backward()
    assert later.graphs == 0 and not later.recompiles
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with pytest.raises(ValueError, match='at least 32'):  # the eager error, compiled too
        compiled(torch.randn(2, 3, 31, 64))


@pytest.mark.slow
def test_chunked_attention_runs_eagerly_in_a_compiled_model_without_recompiling_per_chunking():
    """At detection sizes every S3 layer takes the chunked kernel; compiled, its size-dependent loop
    would be unrolled and recompiled for every chunk count. It runs eagerly instead (a graph break),
    so sizes that only change the chunk count compile nothing new, and results match eager."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    # a budget this small chunks the S3 maps of these sizes
    model = CoAtNet(arch=dict(depths=(1, 1, 2, 1), channels=(16, 32, 64, 64)),
                    attention_max_bias_bytes=30000).train()
    layers = [m for m in model.modules() if isinstance(m, RelativeAttention)]
    compiled = torch.compile(model, backend='aot_eager')
    s3_layer = layers[0]
    params = [p for p in model.parameters()]
    sizes = SIZES + [(192, 160)]
    new_graphs = []
    for height, width in sizes:
        x = torch.randn(2, 3, height, width)
        with counting_compiles() as counts:
            got = compiled(x)
            got_grads = torch.autograd.grad(sum(m.square().mean() for m in got), params)
        new_graphs.append(counts.graphs)
        ran = kernels_that_ran(lambda: model(x))
        assert ran[0] == 'chunked', ran  # S3's global layer
        eager = model(x)
        eager_grads = torch.autograd.grad(sum(m.square().mean() for m in eager), params)
        for a, b in zip(got + got_grads, eager + eager_grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    rows = [rows_per_chunk(2, s3_layer.num_heads, (h // 16, w // 16), 30000) for h, w in sizes]
    chunks = [-(-(h // 16) // r) for (h, _), r in zip(sizes, rows)]
    assert len(set(zip(rows[2:], chunks[2:]))) == 3, (rows, chunks)  # the later sizes chunk anew
    # the first size compiles, the second recompiles with symbolic sizes, later ones reuse them
    assert new_graphs[0] > 0 and new_graphs[2:] == [0, 0, 0], (new_graphs, rows, chunks)


@needs_torch(FLEX_ATTENTION_ON_CPU, 'FlexAttention on a CPU')
def test_flex_attention_compiles_once_per_token_bucket_not_per_size():
    torch.manual_seed(0)
    attn = RelativeAttention(32, 32, 32, 16, RelativePositionBias(2, (4, 4)), impl='flex').eval()
    sizes = [(5, 7), (6, 9), (9, 5), (10, 10), (12, 6), (11, 13), (13, 13)]  # 35 to 169 tokens
    torch._dynamo.reset()  # FlexAttention's compiled kernels of other tests would be reused
    with counting_compiles() as counts, torch.no_grad():
        for height, width in sizes:
            x = torch.randn(2, height, width, 32)
            torch.testing.assert_close(attn(x), ReferenceRelativeAttention(attn)(x), atol=1e-5,
                                       rtol=1e-5)
    buckets = {flex_token_bucket(height * width) for height, width in sizes}
    assert buckets == {128, 256}
    assert counts.graphs == len(buckets), counts.recompiles  # was one per size: 7


@pytest.mark.slow
@needs_torch(FLEX_ATTENTION_ON_CPU, 'FlexAttention on a CPU')
def test_flex_attention_inside_a_compiled_model_does_not_recompile_it_per_size():
    """The model compiled as a whole: FlexAttention runs outside its graph (a graph break), so the
    bucket, a Python int of the size, does not make the model's graph recompile per size."""
    torch.manual_seed(0)
    arch = dict(depths=(1, 1, 2, 1), channels=(16, 32, 64, 64))
    model = CoAtNet(arch=arch, attention_impl='flex').eval()
    reference = CoAtNet(arch=arch).eval()  # the default kernels, same weights
    reference.load_state_dict(model.state_dict())
    compiled = torch.compile(model, backend='aot_eager')
    sizes = [(80, 112), (96, 144), (144, 80), (128, 96)]  # S3 35 to 54 tokens, all in bucket 128
    torch._dynamo.reset()
    new_graphs = []
    with torch.no_grad():
        for size in sizes:
            x = torch.randn(1, 3, *size)
            with counting_compiles() as counts:
                maps = compiled(x)
            new_graphs.append(counts.graphs)
            for got, expected in zip(maps, reference(x)):
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # the first size compiles, the second recompiles with symbolic sizes, later ones reuse them
    assert new_graphs[0] > 0 and new_graphs[2:] == [0, 0], new_graphs


def test_symbolic_strides_are_ordered_with_the_graphs_shape_env():
    """pytorch/pytorch#185510, which failed the toy Mask R-CNN's inductor training: inductor orders
    a graph output's symbolic strides without its ShapeEnv. Reproduced on inductor's own
    GraphLowering with an S3 map of a square input (H = W = (side - 1) // 16 + 1)."""
    from torch._dynamo.source import ConstantSource
    from torch._inductor import ir
    from torch._inductor.graph import GraphLowering
    from torch._inductor.virtualized import V
    from torch.fx.experimental.symbolic_shapes import ShapeEnv
    from torch.utils._sympy.functions import FloorDiv

    shape_env = ShapeEnv()
    side = shape_env.create_symbol(160, ConstantSource('side'))
    s3_side = FloorDiv(side - 1, 16) + 1
    channels_last = [64 * s3_side ** 2, 1, 64 * s3_side, 64]  # (B, 64, H, W) with H = W
    graph = GraphLowering(torch.fx.symbolic_trace(lambda x: x), shape_env=shape_env)
    stock = ir.get_fill_order
    try:
        with V.set_graph_handler(graph):
            if not hasattr(stock, 'stock'):  # the bug, in this torch
                with pytest.raises(TypeError, match='truth value of Relational'):
                    ir.get_stride_order(channels_last)
            sort_symbolic_strides_with_shape_env()
            sort_symbolic_strides_with_shape_env()  # idempotent: wraps once
            assert ir.get_fill_order.stock is stock
            assert ir.get_stride_order(channels_last) == [3, 0, 2, 1]
        with pytest.raises(TypeError):  # outside a graph the stock error stands
            ir.get_stride_order(channels_last)
    finally:
        ir.get_fill_order = stock


def _compiled_training_step(keep_step_eager: bool):
    """A real mmengine optimizer wrapper built from a config with per-parameter options (so its
    param groups are ConfigDicts, as the runner builds them) and an lr schedule, stepped inside a
    compiled step
    as mmengine's compile=True steps it."""
    from mmengine.config import ConfigDict
    from mmengine.optim import LinearLR, build_optim_wrapper
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 1))
    optim_wrapper = build_optim_wrapper(model, ConfigDict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        paramwise_cfg=dict(norm_decay_mult=0.0), clip_grad=dict(max_norm=10.0)))
    scheduler = LinearLR(optim_wrapper, start_factor=0.1, by_epoch=False, begin=0, end=4)
    if keep_step_eager:
        keep_optimizer_step_eager(optim_wrapper)

    @torch.compile(backend='eager')
    def train_step(x):
        loss = model(x).square().mean()
        optim_wrapper.update_params(loss)
        return loss.detach()

    losses = []
    for _ in range(3):  # the lr changes at every step
        losses.append(train_step(torch.randn(4, 8)))
        scheduler.step()
    return losses


def test_optimizer_step_stays_out_of_the_compiled_train_step():
    with counting_compiles() as counts:
        losses = _compiled_training_step(keep_step_eager=True)
    assert all(torch.isfinite(loss) for loss in losses)
    assert not counts.recompiles  # a traced step would guard on every new learning rate
    with pytest.raises(Exception, match='UserDefinedDictVariable'):  # what the hook avoids
        _compiled_training_step(keep_step_eager=False)


@pytest.mark.slow
def test_compile_benchmark_records_times_and_recompiles(tmp_path):
    # dynamo with its eager backend on UperNet's inference only: the tool's plumbing, in seconds
    out = tmp_path / 'compile.json'
    result = run_tool('tools/analysis_tools/compile_benchmark.py', TOY_SEG, '--backend', 'eager',
                      '--modes', 'inference', '--batch', '1', '--sizes', '160x192', '192x160',
                      '--cfg-options', 'model.data_preprocessor.size=None',
                      'model.data_preprocessor.size_divisor=32', '--out', str(out))
    assert 'inference: eager' in result.stdout
    figures = json.loads(out.read_text())['modes']['inference']
    assert figures['eager_s'] > 0 and figures['compiled_s'] > 0
    assert 1 <= figures['first_pass']['recompiles'] <= 8, figures['recompile_reasons']
    assert figures['second_pass']['recompiles'] == 0  # every size was compiled in the first pass
