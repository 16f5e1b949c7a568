import math

import pytest
import torch

from mmcoatnet.models.kernels.chunked import (
    add_rows_bias_grad,
    relative_bias_rows_keys_reversed,
    reverse_key_rows,
    toeplitz_blocks,
    toeplitz_blocks_grad,
)
from mmcoatnet.models.reference import index_gathered_bias
from mmcoatnet.models.rel_pos import (
    gather_relative_bias,
    gather_relative_bias_by_offsets,
    gather_rows_bias_by_offsets,
    interpolate_bias_table,
    offset_index,
    relative_position_index,
    resize_bias_table,
    table_size,
    toeplitz_blocks_by_offsets,
)

SIZES = [(14, 14), (7, 7), (3, 5), (5, 3), (1, 4), (1, 1)]


def test_index_of_a_two_token_row():
    # tokens (0,0) and (0,1); table is 1 x 3 with offset dx at column dx + 1
    index = relative_position_index((1, 2))
    assert index.tolist() == [[1, 0], [2, 1]]


@pytest.mark.parametrize('size', SIZES)
def test_index_entries_are_offsets(size):
    h, w = size
    index = relative_position_index(size)
    cols = 2 * w - 1
    for i in range(0, h * w, max(1, h * w // 7)):
        for j in range(0, h * w, max(1, h * w // 5)):
            dy, dx = i // w - j // w, i % w - j % w
            assert index[i, j] == (dy + h - 1) * cols + (dx + w - 1)


@pytest.mark.parametrize('gather', [gather_relative_bias, gather_relative_bias_by_offsets],
                         ids=['eager', 'export'])
@pytest.mark.parametrize('size', SIZES)
def test_gather_equals_index_gather_bitwise(size, gather):
    torch.manual_seed(0)
    table = torch.randn(3, *table_size(size))
    assert torch.equal(gather(table, size), index_gathered_bias(table, size))


def test_offset_index_along_one_axis():
    assert offset_index(3).tolist() == [[2, 1, 0], [3, 2, 1], [4, 3, 2]]


def test_traced_resize_and_gather_follow_the_run_time_size():
    """Traced once (sizes taken from a map's shape are then graph values), run at other sizes: the
    export path's bias equals the reference's for each, so no size was baked into the trace."""
    torch.manual_seed(0)
    table = torch.randn(2, *table_size((7, 7)))

    def bias_for(feature_map):
        size = feature_map.shape[-2:]
        return gather_relative_bias_by_offsets(interpolate_bias_table(table, size), size)

    traced = torch.jit.trace(bias_for, torch.zeros(1, 7, 7), check_trace=False)
    for size in [(7, 7), (3, 5), (9, 4), (1, 1)]:
        expected = index_gathered_bias(resize_bias_table(table, size), size)
        torch.testing.assert_close(traced(torch.zeros(1, *size)), expected, atol=1e-6, rtol=0)


def test_gather_rejects_a_table_of_another_size():
    with pytest.raises(ValueError, match='does not fit a 5x5'):
        gather_relative_bias(torch.zeros(2, 27, 27), (5, 5))


def test_gather_gradient_counts_pairs_per_offset():
    h, w = 4, 6
    table = torch.zeros(2, *table_size((h, w)), requires_grad=True)
    gather_relative_bias(table, (h, w)).sum().backward()
    dy = torch.arange(-(h - 1), h).abs()[:, None]
    dx = torch.arange(-(w - 1), w).abs()[None, :]
    expected = ((h - dy) * (w - dx)).float()
    assert torch.equal(table.grad[0], expected) and torch.equal(table.grad[1], expected)


def test_resize_is_identity_at_the_pretraining_size():
    table = torch.randn(4, 27, 27)
    assert resize_bias_table(table, (14, 14)) is table
    assert torch.equal(gather_relative_bias(resize_bias_table(table, (14, 14)), (14, 14)),
                       index_gathered_bias(table, (14, 14)))


@pytest.mark.parametrize('target', [(50, 84), (84, 50), (3, 20), (20, 3), (7, 7), (1, 1)])
def test_resize_shapes_both_directions_and_keeps_zero_offset(target):
    torch.manual_seed(0)
    table = torch.randn(2, *table_size((14, 14)))
    resized = resize_bias_table(table, target)
    assert resized.shape == (2, *table_size(target))
    # odd grids map centre to centre, so the zero-offset bias is kept
    assert torch.allclose(resized[:, target[0] - 1, target[1] - 1], table[:, 13, 13], atol=1e-5)


def test_resize_keeps_a_constant_table_constant():
    table = torch.full((3, 13, 13), 0.25)
    resized = resize_bias_table(table, (10, 17))
    assert torch.allclose(resized, torch.full_like(resized, 0.25), atol=1e-6)


def test_resized_bias_has_gradients_on_the_learned_table():
    table = torch.randn(2, 13, 13, requires_grad=True)
    bias = gather_relative_bias(resize_bias_table(table, (9, 11)), (9, 11))
    assert bias.shape == (2, 99, 99)
    (bias * torch.randn_like(bias)).sum().backward()
    assert table.grad is not None and table.grad.abs().sum() > 0
    assert torch.isfinite(table.grad).all()


def cubic_tap_weights(t: float, a: float = -0.75):
    """Keys' cubic convolution weights of the taps at floor(src) - 1 ... floor(src) + 2, for the
    fraction t = src - floor(src); a = -0.75 as PyTorch's bicubic."""
    def near(x):  # |x| <= 1
        return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1

    def far(x):  # 1 < |x| < 2
        return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def bicubic_taps(out_index: int, in_size: int, out_size: int):
    """(input index, weight) pairs behind one output index: align_corners=False, taps past the
    border clamped to it."""
    src = (out_index + 0.5) * in_size / out_size - 0.5
    base = math.floor(src)
    return [(min(max(base - 1 + n, 0), in_size - 1), weight)
            for n, weight in enumerate(cubic_tap_weights(src - base))]


def bicubic_at(grid, out_shape, i: int, j: int) -> float:
    rows, cols = len(grid), len(grid[0])
    return sum(wy * wx * grid[y][x] for y, wy in bicubic_taps(i, rows, out_shape[0])
               for x, wx in bicubic_taps(j, cols, out_shape[1]))


def test_cubic_tap_weights_sum_to_one_and_interpolate_the_grid():
    for t in (0.0, 0.25, 0.5, 0.9):
        assert sum(cubic_tap_weights(t)) == pytest.approx(1.0)
    assert cubic_tap_weights(0.0) == pytest.approx([0, 1, 0, 0])


# tables 9x3 (rows up, columns down), 3x11 (the reverse), 13x17 (both up), 1x1
@pytest.mark.parametrize('target', [(5, 2), (2, 6), (7, 9), (1, 1)])
def test_resize_equals_bicubic_computed_by_hand(target):
    """Against bicubic interpolation written out in plain Python: a 5x7 table (pre-training map
    3x4) with a smooth ramp in head 0 and a single spike in head 1, whose outputs are the kernel's
    weights themselves; upsampling reaches past the borders, where taps are clamped."""
    ramp = [[0.1 * y * y - 0.3 * x + 0.02 * x ** 3 for x in range(7)] for y in range(5)]
    spike = [[1.0 if (y, x) == (2, 3) else 0.0 for x in range(7)] for y in range(5)]
    table = torch.tensor([ramp, spike])
    resized = resize_bias_table(table, target)
    out_shape = table_size(target)
    assert resized.shape == (2, *out_shape)
    for head, grid in enumerate((ramp, spike)):
        expected = [[bicubic_at(grid, out_shape, i, j) for j in range(out_shape[1])]
                    for i in range(out_shape[0])]
        torch.testing.assert_close(resized[head], torch.tensor(expected), atol=1e-5, rtol=1e-5)


def test_resize_of_half_precision_table_keeps_dtype():
    table = torch.randn(2, 13, 13).half()
    assert resize_bias_table(table, (20, 20)).dtype == torch.float16


@pytest.mark.parametrize('size, start, stop', [((5, 7), 0, 5), ((5, 7), 2, 4), ((6, 3), 5, 6),
                                               ((1, 4), 0, 1)])
def test_key_reversed_view_is_the_plain_bias_with_key_rows_reversed(size, start, stop):
    torch.manual_seed(0)
    h, w = size
    table = torch.randn(3, *table_size(size))
    plain = index_gathered_bias(table, size)  # (heads, N, N)
    view = relative_bias_rows_keys_reversed(toeplitz_blocks(table, w), h, start, stop)
    assert view.shape == (3, stop - start, w, h, w)
    # key rows reversed
    expected = plain[:, start * w:stop * w].unflatten(-1, size).flip(-2).flatten(-2)
    assert torch.equal(view.reshape(3, (stop - start) * w, h * w), expected)


def test_reverse_key_rows_reverses_map_rows_only():
    x = torch.arange(6.).view(1, 6, 1)  # a 2x3 map, one channel
    assert reverse_key_rows(x, (2, 3)).flatten().tolist() == [3, 4, 5, 0, 1, 2]
    with pytest.raises(ValueError, match='lack the vertical offsets'):
        relative_bias_rows_keys_reversed(torch.zeros(1, 3, 4, 3), 5, 0, 2)


@pytest.mark.parametrize('size', [(1, 1), (3, 4), (5, 2)])
def test_toeplitz_blocks_grad_is_the_adjoint_of_toeplitz_blocks(size):
    h, w = size
    table = torch.randn(2, 2 * h - 1, 2 * w - 1, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, w, 2 * h - 1, w, dtype=torch.float64)
    (toeplitz_blocks(table, w) * upstream).sum().backward()
    # toeplitz_blocks_grad takes the blocks' gradient as (heads, 2H-1, W query, W key)
    torch.testing.assert_close(toeplitz_blocks_grad(upstream.permute(0, 2, 1, 3)), table.grad)


@pytest.mark.parametrize('size, start, stop', [((4, 3), 0, 4), ((5, 2), 1, 3), ((3, 3), 2, 3)])
def test_rows_bias_grad_is_the_adjoint_of_the_rows_view(size, start, stop):
    h, w = size
    blocks = torch.randn(2, w, 2 * h - 1, w, dtype=torch.float64, requires_grad=True)
    view = relative_bias_rows_keys_reversed(blocks, h, start, stop)
    upstream = torch.randn(view.shape, dtype=torch.float64)
    (view * upstream).sum().backward()
    grad = torch.zeros(2, 2 * h - 1, w, w, dtype=torch.float64)
    add_rows_bias_grad(grad, upstream, start)
    torch.testing.assert_close(grad, blocks.grad.permute(0, 2, 1, 3))


@pytest.mark.parametrize('size, rows', [((5, 3), [0, 1, 2, 3, 4]), ((5, 3), [2, 3]), ((4, 2), [])])
def test_the_bias_of_some_query_rows_is_those_rows_of_the_whole_bias(size, rows):
    h, w = size
    table = torch.randn(2, 2 * h - 1, 2 * w - 1)
    whole = gather_relative_bias(table, size).view(2, h, w, h * w)
    got = gather_rows_bias_by_offsets(toeplitz_blocks_by_offsets(table, w), size,
                                      torch.tensor(rows, dtype=torch.long))
    torch.testing.assert_close(got, whole[:, rows].reshape(2, len(rows) * w, h * w))
