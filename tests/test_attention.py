import pytest
import torch

from mmcoatnet.models.attention import RelativeAttention, RelativePositionBias, RelativePositionMlp
from mmcoatnet.models.kernels import (
    DEFAULT_GPU_MAX_BIAS_BYTES,
    DEFAULT_MAX_BIAS_BYTES,
    KERNELS,
    KernelContext,
    checked_max_bias_bytes,
    chunked_attention,
    chunked_sdpa_attention,
    default_max_bias_bytes,
    flex_head_dim_supported,
    flex_runs,
    rows_per_chunk,
    select_kernel,
)
from mmcoatnet.models.reference import (
    ReferenceRelativeAttention,
    index_gathered_bias,
    reference_relative_attention,
)
from mmcoatnet.models.rel_pos import table_size
from mmcoatnet.torch_compat import DYNAMO_ONNX_EXPORT, FLEX_ATTENTION_ON_CPU

from helpers import kernels_that_ran, needs_torch


def assert_matches_reference_with_gradients(attn: RelativeAttention, x: torch.Tensor):
    """Output and every parameter's gradient equal those of the reference attention."""
    out = attn(x)
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in attn.named_parameters()}
    attn.zero_grad()
    expected = ReferenceRelativeAttention(attn)(x)
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    for name, param in attn.named_parameters():
        torch.testing.assert_close(grads[name], param.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_bias_at_pretraining_size_is_the_plain_gather_bitwise():
    rel = RelativePositionBias(4, (14, 14))
    for cache in (True, False):
        assert torch.equal(rel.bias_at((14, 14), cache),
                           index_gathered_bias(rel.make_table((14, 14)), (14, 14)))


def test_bias_gradient_reaches_the_table_at_another_size():
    rel = RelativePositionBias(3, (7, 7))
    bias = rel.bias_at((5, 12))
    assert bias.shape == (3, 60, 60)
    (bias * torch.randn_like(bias)).sum().backward()
    assert rel.table.grad.abs().sum() > 0


def test_uncached_calls_keep_nothing_derived_from_the_table():
    rel = RelativePositionBias(2, (7, 7)).eval()
    rel.bias_at((9, 9), cache=True)
    rel.train()
    assert len(rel._cache) == 0  # training mode drops what eval cached
    first = rel.bias_at((9, 9))
    assert len(rel._cache) == 0
    with torch.no_grad():
        rel.table.add_(1.0)
    assert not torch.equal(rel.bias_at((9, 9)), first)


def test_cache_reuses_sizes_and_is_bounded():
    rel = RelativePositionBias(2, (7, 7))
    first = rel.bias_at((10, 6), cache=True)
    assert rel.bias_at((10, 6), cache=True) is first
    assert rel.table_at((10, 6), cache=True) is rel.table_at((10, 6), cache=True)
    for side in range(2, 14):
        rel.bias_at((side, side), cache=True)
    assert len(rel._cache) <= rel.cache_size


def test_cache_sees_a_changed_table():
    rel = RelativePositionBias(2, (7, 7))
    with torch.no_grad():
        before = rel.bias_at((10, 6), cache=True)
        rel.load_state_dict({'table': rel.table + 1.0})
        after = rel.bias_at((10, 6), cache=True)
    assert torch.allclose(after, before + 1.0, atol=1e-5)


@pytest.mark.parametrize('training, grad, cached', [(False, False, True), (False, True, False),
                                                   (True, False, False)],
                         ids=['eval', 'eval with autograd', 'training'])
def test_the_attention_caches_the_bias_only_in_eval_without_autograd(training, grad, cached):
    attn = RelativeAttention(32, 32, 32, 16, RelativePositionBias(2, (4, 4))).train(training)
    x = torch.randn(1, 5, 6, 32)
    with torch.set_grad_enabled(grad):
        for _ in range(2):  # a cached graph would fail on the second backward
            out = attn(x)
            if grad:
                out.sum().backward()
    assert bool(attn.rel_pos._cache) == cached


def test_attention_equals_reference_at_pretraining_and_other_sizes():
    torch.manual_seed(0)
    attn = RelativeAttention(64, 96, 96, 32, RelativePositionBias(3, (7, 7))).eval()
    with torch.no_grad():
        for size in [(7, 7), (4, 11), (11, 4), (16, 9)]:
            x = torch.randn(2, *size, 64)
            out = attn(x)
            assert out.shape == (2, *size, 96)
            expected = ReferenceRelativeAttention(attn)(x)
            torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_attention_gradients_equal_reference():
    torch.manual_seed(0)
    attn = RelativeAttention(32, 32, 64, 32, RelativePositionBias(2, (4, 4))).train()
    assert_matches_reference_with_gradients(attn, torch.randn(2, 5, 3, 32))


def test_mlp_bias_works_at_any_size_and_depends_only_on_offsets():
    torch.manual_seed(0)
    rel = RelativePositionMlp(3, hidden_dim=16).eval()
    with torch.no_grad():
        small, large = rel.bias_at((3, 4)), rel.bias_at((9, 13))
    assert small.shape == (3, 12, 12) and large.shape == (3, 117, 117)
    # offset (0, 1) between tokens (0, 0) and (0, 1) is the same value at both sizes
    assert torch.allclose(small[:, 1, 0], large[:, 1, 0])
    assert torch.allclose(small[:, 0, 0], large[:, 50, 50])


def test_mlp_bias_trains_and_caches():
    rel = RelativePositionMlp(2, hidden_dim=8)
    rel.bias_at((5, 7)).sum().backward()
    assert rel.mlp.fc1.weight.grad.abs().sum() > 0 and len(rel._cache) == 0
    rel.eval()
    assert rel.bias_at((5, 7), cache=True) is rel.bias_at((5, 7), cache=True)


def test_the_cache_keeps_only_the_table_for_large_sizes():
    rel = RelativePositionBias(2, (7, 7), max_cached_bias_bytes=4096)
    small, large = rel.bias_at((3, 3), True), rel.bias_at((20, 30), True)  # 648 B and 2.9 MB
    assert rel.bias_at((3, 3), True) is small
    kept = {key[0]: sorted(entry) for key, entry in rel._cache.items()}
    assert kept == {(3, 3): ['bias', 'table'], (20, 30): ['table']}
    assert torch.equal(rel.bias_at((20, 30), True), large)
    assert torch.equal(large, index_gathered_bias(rel.make_table((20, 30)), (20, 30)))


def test_chunked_training_attention_equals_reference_with_gradients():
    torch.manual_seed(0)
    budget = 2 * 2 * 7 * 63 * 4 * 2  # batch 2, 2 heads: 2 rows of a 9x7 map a chunk
    assert rows_per_chunk(2, 2, (9, 7), budget) == 2
    attn = RelativeAttention(32, 64, 64, 32, RelativePositionBias(2, (4, 4)),
                             max_bias_bytes=budget).train()
    assert kernels_that_ran(lambda: assert_matches_reference_with_gradients(
        attn, torch.randn(2, 9, 7, 32))) == ['chunked']
    assert attn.rel_pos.table.grad.abs().sum() > 0


def test_chunked_inference_equals_reference_and_uses_the_cached_table():
    torch.manual_seed(0)
    attn = RelativeAttention(32, 64, 64, 32, RelativePositionBias(2, (4, 4)),
                             max_bias_bytes=2 * 7 * 63 * 4 * 3).eval()  # 3 rows a chunk
    x = torch.randn(1, 9, 7, 32)
    with torch.no_grad():
        assert kernels_that_ran(lambda: attn(x)) == ['chunked-sdpa']
        torch.testing.assert_close(attn(x), ReferenceRelativeAttention(attn)(x), atol=1e-5,
                                   rtol=1e-5)
    (key, entry), = attn.rel_pos._cache.items()
    assert key[0] == (9, 7) and list(entry) == ['table']  # the full bias never existed


@pytest.mark.slow
@needs_torch(FLEX_ATTENTION_ON_CPU, 'FlexAttention on a CPU')
def test_flex_attention_reads_the_bias_inside_the_kernel():
    torch.manual_seed(0)
    attn = RelativeAttention(32, 32, 32, 16, RelativePositionBias(2, (4, 4)), impl='flex').eval()
    x = torch.randn(2, 6, 5, 32)  # a 6x5 map: the table is resized from 4x4, as at run time
    with torch.no_grad():
        assert kernels_that_ran(lambda: attn(x)) == ['flex']
        torch.testing.assert_close(attn(x), ReferenceRelativeAttention(attn)(x), atol=1e-5,
                                   rtol=1e-5)
    # CPU training (no FlexAttention backward there) takes the default path, gradients included
    assert kernels_that_ran(lambda: assert_matches_reference_with_gradients(attn.train(), x)) \
        == ['dense']
    with pytest.raises(ValueError, match='not one of'):
        RelativeAttention(32, 32, 32, 16, RelativePositionBias(2, (4, 4)), impl='fused')


@pytest.mark.parametrize('path', ['whole bias', 'chunked training', 'chunked inference',
                                  'padded windows'])
def test_every_path_runs_under_mixed_precision(path):
    """Autocast as AMP trains (bfloat16 on the CPU, float16 on GPUs): each path gives the float32
    result to half-precision accuracy, and in training gradients reach the table."""
    torch.manual_seed(0)
    budget = {'chunked training': 2 * 2 * 7 * 63 * 4 * 2, 'chunked inference': 2 * 7 * 63 * 4 * 3}
    training = path != 'chunked inference'
    attn = RelativeAttention(32, 64, 64, 32, RelativePositionBias(2, (4, 4)),
                             max_bias_bytes=budget.get(path, 64 << 20)).train(training)
    x = torch.randn(2, 9, 7, 32)
    padding = None
    if path == 'padded windows':
        padding = torch.zeros(2, 63, dtype=torch.bool)
        padding[:, -10:] = True
    with torch.set_grad_enabled(training):
        expected = attn(x, key_padding_mask=padding)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = attn(x, key_padding_mask=padding)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=1e-2, rtol=2e-2)
    if training:
        out.float().square().sum().backward()
        assert torch.isfinite(attn.rel_pos.table.grad).all()
        assert attn.rel_pos.table.grad.abs().sum() > 0


# ------------------------------------------------------------------------ choosing and running
# kernels

def context(**fields) -> KernelContext:
    """A 9x7 map of one image, 2 heads, autograd off, on a CPU, torch 2.13, a budget of 3 map
    rows."""
    base = dict(device_type='cpu', grad=False, tracing=None, masked=False, batch=1,
                feat_size=(9, 7), num_heads=2, max_bias_bytes=2 * 7 * 63 * 4 * 3, impl='auto',
                torch_version='2.13')
    return KernelContext(**{**base, **fields})


@pytest.mark.parametrize('fields, kernel', [
    (dict(), 'chunked-sdpa'),                                 # past the budget
    (dict(grad=True), 'chunked'),                             # CPU autograd: its own backward
    (dict(grad=True, device_type='cuda', impl='sdpa'), 'chunked-sdpa'),  # GPU: fused SDPA chunks
    (dict(feat_size=(3, 7)), 'dense'),                        # fits the budget
    (dict(max_bias_bytes=64 << 20), 'dense'),
    (dict(masked=True), 'dense'),                             # only it takes a mask
    (dict(masked=True, device_type='cuda'), 'dense'),
    (dict(tracing='jit'), 'traced'),                          # whatever the size
    (dict(tracing='export', masked=True), 'exported'),
    (dict(tracing='jit', device_type='cuda', grad=True), 'traced'),
    (dict(impl='flex'), 'flex'),                              # CPU inference
    (dict(impl='flex', grad=True), 'chunked'),                # no CPU FlexAttention backward
    (dict(impl='flex', grad=True, feat_size=(3, 7)), 'dense'),
    (dict(impl='flex', grad=True, device_type='cuda'), 'flex'),  # GPUs have it
    (dict(impl='flex', grad=True, device_type='cuda', torch_version='2.5.1'), 'chunked-sdpa'),
    (dict(impl='flex', masked=True, device_type='cuda'), 'dense'),
    (dict(impl='sdpa', device_type='cuda'), 'chunked-sdpa'),  # never FlexAttention
    (dict(batch=0), 'chunked-sdpa'),                          # an empty batch counts as one
    (dict(batch=2, max_bias_bytes=2 * 2 * 63 * 63 * 4), 'dense'),  # the budget is per batch
    (dict(batch=3, max_bias_bytes=2 * 2 * 63 * 63 * 4), 'chunked-sdpa'),
], ids=lambda value: value if isinstance(value, str) else '-'.join(map(str, value)) or 'base')
def test_the_kernel_choice(fields, kernel):
    assert select_kernel(context(**fields)) == kernel


S3_HEADS = 12  # CoAtNet-0's S3: 384 channels in heads of 32
S3_800X1344, S3_512X640, S3_224 = (50, 84), (32, 40), (14, 14)


def default_context(device_type: str, grad: bool, feat_size, torch_version: str = '2.13',
                    head_dim: int = 32) -> KernelContext:
    """A backbone's call with every default (attention_impl='auto', no budget set): CoAtNet-0's
    S3, batch 2."""
    return KernelContext(device_type=device_type, grad=grad, tracing=None, masked=False, batch=2,
                         feat_size=feat_size, num_heads=S3_HEADS, head_dim=head_dim,
                         torch_version=torch_version)


@pytest.mark.parametrize('device_type, grad, feat_size, torch_version, head_dim, kernel', [
    # a CPU, as before GPUs had their own choice: SDPA within 64 MiB, else chunks
    ('cpu', False, S3_224, '2.13', 32, 'dense'),
    ('cpu', True, S3_224, '2.13', 32, 'dense'),
    ('cpu', False, S3_512X640, '2.13', 32, 'chunked-sdpa'),  # 157 MB of bias and scores
    ('cpu', True, S3_512X640, '2.13', 32, 'chunked'),
    ('cpu', False, S3_800X1344, '2.13', 32, 'chunked-sdpa'),
    ('cpu', True, S3_800X1344, '2.13', 32, 'chunked'),
    # CUDA: FlexAttention at every size, training included
    ('cuda', True, S3_224, '2.13', 32, 'flex'),
    ('cuda', True, S3_800X1344, '2.13', 32, 'flex'),
    ('cuda', False, S3_800X1344, '2.13', 32, 'flex'),
    ('cuda', True, S3_800X1344, '2.6.0', 32, 'flex'),
    # torch 2.5: FlexAttention in inference only; training takes fused SDPA within 256 MiB
    ('cuda', False, S3_800X1344, '2.5.1', 32, 'flex'),
    ('cuda', True, S3_224, '2.5.1', 32, 'dense'),
    ('cuda', True, S3_512X640, '2.5.1', 32, 'dense'),      # a CPU would chunk it
    ('cuda', True, S3_800X1344, '2.5.1', 32, 'chunked-sdpa'),  # 1.7 GB: chunks of 7 rows
    # before FlexAttention
    ('cuda', False, S3_512X640, '2.1.2', 32, 'dense'),
    ('cuda', False, S3_800X1344, '2.4.1', 32, 'chunked-sdpa'),
    # heads FlexAttention does not take in every release: SDPA
    ('cuda', True, S3_224, '2.13', 48, 'dense'),
    ('cuda', True, S3_800X1344, '2.13', 8, 'chunked-sdpa'),
    # other devices keep the CPU's budget and SDPA
    ('mps', False, S3_512X640, '2.13', 32, 'chunked-sdpa'),
    ('xpu', True, S3_800X1344, '2.13', 32, 'chunked-sdpa'),
], ids=lambda value: str(value) if not isinstance(value, tuple) else 'x'.join(map(str, value)))
def test_the_default_kernel_for_each_device_grad_and_size(device_type, grad, feat_size,
                                                         torch_version, head_dim, kernel):
    assert select_kernel(default_context(device_type, grad, feat_size, torch_version,
                                         head_dim)) == kernel


def test_each_device_has_its_bias_budget():
    assert default_max_bias_bytes('cpu') == DEFAULT_MAX_BIAS_BYTES == 64 << 20
    assert default_max_bias_bytes('cuda') == DEFAULT_GPU_MAX_BIAS_BYTES == 256 << 20
    assert default_max_bias_bytes('mps') == DEFAULT_MAX_BIAS_BYTES
    assert default_context('cuda', True, S3_224).bias_budget == DEFAULT_GPU_MAX_BIAS_BYTES
    assert context(device_type='cuda', max_bias_bytes=1000).bias_budget == 1000  # a set one rules
    # the GPU budget's chunks at 800x1344, batch 2: 7 map rows of 50, 8 SDPA calls (the CPU's: 1)
    assert rows_per_chunk(2, S3_HEADS, S3_800X1344, DEFAULT_GPU_MAX_BIAS_BYTES) == 7
    assert rows_per_chunk(2, S3_HEADS, S3_800X1344, DEFAULT_MAX_BIAS_BYTES) == 1


@pytest.mark.parametrize('value, error', [(0, ValueError), (-1, ValueError), (1.5e9, TypeError),
                                          ('256MB', TypeError), (True, TypeError)])
def test_a_bias_budget_is_none_or_whole_bytes(value, error):
    assert checked_max_bias_bytes(None) is None and checked_max_bias_bytes(1 << 30) == 1 << 30
    with pytest.raises(error, match='attention_max_bias_bytes'):
        checked_max_bias_bytes(value)


def test_the_backbone_validates_its_bias_budget():
    from mmcoatnet.models import CoAtNet
    with pytest.raises(ValueError, match='at least 1'):
        CoAtNet('coatnet-pico', attention_max_bias_bytes=0)
    with pytest.raises(TypeError, match='whole number of bytes'):
        CoAtNet('coatnet-pico', attention_max_bias_bytes=2.5e8)
    budgets = {m.max_bias_bytes for m in CoAtNet('coatnet-pico').modules()
               if isinstance(m, RelativeAttention)}
    assert budgets == {None}  # each call takes its device's


@pytest.mark.parametrize('head_dim, supported', [(8, False), (16, True), (24, False), (32, True),
                                                 (48, False), (64, True), (128, True)])
def test_flex_attention_head_sizes(head_dim, supported):
    assert flex_head_dim_supported(head_dim) is supported


@pytest.mark.parametrize('device_type, grad, torch_version, runs', [
    ('cpu', False, '2.13', True), ('cpu', True, '2.13', False),  # no CPU backward
    ('cuda', False, '2.5.0', True), ('cuda', True, '2.5.1', False),  # the table's gradient: 2.6
    ('cuda', True, '2.6.0', True), ('cuda', False, '2.4.1', False), ('cuda', True, '2.13', True),
])
def test_where_flex_attention_runs(device_type, grad, torch_version, runs):
    assert flex_runs(device_type, grad, torch_version) is runs


def test_every_choice_is_a_named_kernel():
    answers = {select_kernel(context(tracing=tracing, masked=masked, impl=impl, grad=grad,
                                     device_type=device, feat_size=size))
               for tracing in (None, 'jit', 'export') for masked in (False, True)
               for impl in ('auto', 'flex', 'sdpa') for grad in (False, True)
               for device in ('cpu', 'cuda')
               for size in ((3, 7), (9, 7))}
    assert answers == set(KERNELS)


@pytest.mark.parametrize('kernel', [chunked_attention, chunked_sdpa_attention],
                         ids=['chunked', 'chunked-sdpa'])
@pytest.mark.parametrize('grad', [False, True], ids=['no grad', 'autograd'])
def test_chunked_kernels_equal_reference(kernel, grad):
    """Either kernel, either way, whatever a device would choose: the chunks' autograd Function,
    and SDPA chunks (recomputed in backward with autograd)."""
    torch.manual_seed(0)
    size = (5, 4)
    table = torch.randn(2, *table_size(size), requires_grad=grad)
    q, k, v = (torch.randn(2, 2, 20, 8, requires_grad=grad) for _ in range(3))
    two_rows = 2 * 2 * 2 * 4 * 20 * 4  # batch 2, 2 heads, 2 rows of 4 queries against 20 keys
    with torch.set_grad_enabled(grad):
        out = (kernel(q, k, v, table, size, two_rows) if kernel is chunked_attention
               else kernel(q, k, v, table, size, two_rows, grad))
        expected = reference_relative_attention(q, k, v, index_gathered_bias(table, size))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    if not grad:
        return
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v, table))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (q, k, v, table))
    for name, grad_, expected_grad in zip(('q', 'k', 'v', 'table'), grads, expected_grads):
        torch.testing.assert_close(grad_, expected_grad, atol=1e-5, rtol=1e-5, msg=name)
    assert grads[-1].abs().sum() > 0  # the table's gradient


# ---------------------------------------------------------------------------------- empty batches

@pytest.mark.parametrize('kernel, masked', [('dense', False), ('chunked-sdpa', False),
                                            ('dense', True)],
                         ids=['dense', 'chunked', 'padded windows'])
def test_empty_batch_gives_an_empty_map_in_each_kernel(kernel, masked):
    budget = 2 * 7 * 63 * 4 * 3 if kernel == 'chunked-sdpa' else 64 << 20  # 3 rows a chunk
    attn = RelativeAttention(32, 48, 64, 32, RelativePositionBias(2, (4, 4)),
                             max_bias_bytes=budget).eval()
    x = torch.zeros(0, 9, 7, 32)
    padding = torch.zeros(0, 63, dtype=torch.bool) if masked else None
    with torch.no_grad():
        assert kernels_that_ran(lambda: attn(x, key_padding_mask=padding)) == [kernel]
        assert attn(x, key_padding_mask=padding).shape == (0, 9, 7, 48)


@pytest.mark.parametrize('window_attention', [None, dict(window_size=3)],
                         ids=['global', 'windowed'])
@pytest.mark.parametrize('size', [(64, 96), (1024, 1024)], ids=['small', 'chunked'])
def test_empty_batch_gives_empty_maps_from_the_backbone(window_attention, size):
    from mmcoatnet.models import CoAtNet
    model = CoAtNet(dict(stem_channels=(16, 16), depths=(1, 1, 2, 1), channels=(16, 32, 64, 64)),
                    window_attention=window_attention).eval()
    with torch.no_grad():
        ran = kernels_that_ran(lambda: model(torch.zeros(0, 3, *size)))
        outs = model(torch.zeros(0, 3, *size))
    # S3 global attention at 64x64 passes the bias budget: chunked
    assert ('chunked-sdpa' in ran) == (size == (1024, 1024))
    assert [tuple(o.shape) for o in outs] == [(0, c, -(-size[0] // s), -(-size[1] // s))
                                              for c, s in zip((16, 32, 64, 64), (4, 8, 16, 32))]


@pytest.mark.parametrize('size', [(7, 4), (17, 3), (1, 1), (33, 2)])
def test_the_exported_graphs_chunked_attention_equals_the_reference(size):
    """16 chunks of ceil(H / 16) rows whatever the size: small maps leave trailing chunks empty
    (TorchScript's kernel) or padded (torch.export's)."""
    from mmcoatnet.models.kernels.exported import (
        exported_chunked_attention,
        traced_chunked_attention,
    )
    from mmcoatnet.models.reference import index_gathered_bias, reference_relative_attention
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, size[0] * size[1], 8) for _ in range(3))
    table = torch.randn(3, 2 * size[0] - 1, 2 * size[1] - 1)
    expected = reference_relative_attention(q, k, v, index_gathered_bias(table, size))
    torch.testing.assert_close(traced_chunked_attention(q, k, v, table, size), expected)
    torch.testing.assert_close(exported_chunked_attention(q, k, v, table, size), expected)


@needs_torch(DYNAMO_ONNX_EXPORT, 'torch.export (the dynamo ONNX exporter)')
def test_torch_export_takes_the_exported_kernel():
    """Under torch.export (the dynamo ONNX exporter) the attention picks its export kernel, so no
    size is tested or turned into an int: H and W stay dynamic in the exported program."""
    from torch.export import Dim

    attention = RelativeAttention(16, 16, 16, 8, RelativePositionBias(2, (7, 7))).eval()
    x = torch.randn(1, 5, 6, 16)
    program = torch.export.export(attention, (x,), strict=False, dynamic_shapes={
        'x': {1: Dim.DYNAMIC, 2: Dim.DYNAMIC}})
    calls = {str(node.target) for node in program.graph.nodes if node.op == 'call_function'}
    assert 'aten.upsample_bicubic2d.vec' in calls  # the table resized for the run-time size
    with torch.no_grad():
        for size in ((7, 7), (3, 11)):
            y = torch.randn(1, *size, 16)
            torch.testing.assert_close(program.module()(y), attention(y))
