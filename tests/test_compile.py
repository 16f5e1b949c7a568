"""torch.compile at varying input sizes: recompilations stay bounded and results match eager.

Inductor takes minutes to compile even the toy backbone on 2 cores (see
tools/analysis_tools/compile_benchmark.py for its figures), so these tests compile with
``aot_eager`` (dynamo's graphs and AOT autograd's joint graph, run by eager kernels): recompilation
is decided by dynamo's guards, the same whichever backend runs the graphs.
"""
import json

import pytest
import torch

from mmcoatnet.compile_support import counting_compiles, keep_optimizer_step_eager
from mmcoatnet.models import CoAtNet
from mmcoatnet.models.attention import RelativeAttention, RelativePositionBias, flex_token_bucket
from mmcoatnet.models.reference import ReferenceRelativeAttention
from test_tools import TOY_SEG, run_tool

SIZES = [(128, 160), (96, 128), (160, 96), (64, 224)]  # H and W both change at every step


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


def test_flex_attention_compiles_once_per_token_bucket_not_per_size():
    pytest.importorskip('torch.nn.attention.flex_attention')
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


def _compiled_training_step(keep_step_eager: bool):
    """A real mmengine optimizer wrapper built from a config with per-parameter options (so its
    param groups are ConfigDicts, as the runner builds them) and an lr schedule, stepped inside a compiled step
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


def test_compile_benchmark_records_times_and_recompiles(tmp_path):
    # dynamo with its eager backend on UperNet's inference only: the tool's plumbing, in seconds
    out = tmp_path / 'compile.json'
    result = run_tool('tools/analysis_tools/compile_benchmark.py', TOY_SEG, '--backend', 'eager',
                      '--modes', 'inference', '--batch', '1', '--sizes', '160x192', '192x160',
                      '224x160', '--cfg-options', 'model.data_preprocessor.size=None',
                      'model.data_preprocessor.size_divisor=32', '--out', str(out))
    assert 'inference: eager' in result.stdout
    figures = json.loads(out.read_text())['modes']['inference']
    assert figures['eager_s'] > 0 and figures['compiled_s'] > 0
    assert 1 <= figures['first_pass']['recompiles'] <= 8, figures['recompile_reasons']
    assert figures['second_pass']['recompiles'] == 0  # every size was compiled in the first pass
