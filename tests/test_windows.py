import pytest
import torch

from mmcoatnet.models.attention import RelativeAttention, RelativePositionBias
from mmcoatnet.models.reference import ReferenceRelativeAttention
from mmcoatnet.models.windows import (
    as_window_size,
    window_grid,
    window_padding_mask,
    window_partition,
    window_unpartition,
)


@pytest.mark.parametrize('size', [(10, 15), (9, 7), (4, 4)])
def test_partition_round_trip_and_window_contents(size):
    x = torch.randn(2, *size, 3)
    windows = window_partition(x, (5, 5))
    rows, cols = window_grid(size, (5, 5))
    assert windows.shape == (2 * rows * cols, 5, 5, 3)
    assert torch.equal(window_unpartition(windows, size), x)
    # window (r, c) of image b holds x[b, 5r:5r+5, 5c:5c+5], zero beyond the edges
    last = windows[rows * cols - 1]
    tail = x[0, 5 * (rows - 1):, 5 * (cols - 1):]
    assert torch.equal(last[:tail.shape[0], :tail.shape[1]], tail)
    assert last[tail.shape[0]:].abs().sum() == 0 and last[:, tail.shape[1]:].abs().sum() == 0


def test_padding_mask_marks_exactly_the_padding():
    assert window_padding_mask(2, (10, 15), (5, 5)) is None
    mask = window_padding_mask(2, (9, 7), (5, 5))
    assert mask.shape == (8, 25)
    token_is_real = window_partition(torch.ones(2, 9, 7, 1), (5, 5)).flatten(1) > 0
    assert torch.equal(mask, ~token_is_real)


def test_padding_mask_always_for_traced_graphs():
    # a map that the windows tile still gets a mask (all False) when asked: a traced graph serves
    # sizes that the windows do not tile
    mask = window_padding_mask(2, (10, 15), (5, 5), always=True)
    assert mask.shape == (12, 25) and not mask.any()


def test_window_size_defaults_to_the_pretraining_size():
    assert as_window_size(None, (14, 14)) == (14, 14)
    assert as_window_size(7, (14, 14)) == (7, 7)
    assert as_window_size([6, 8], (14, 14)) == (6, 8)


def test_windowed_attention_equals_reference_with_padding_masked():
    torch.manual_seed(0)
    attn = RelativeAttention(16, 32, 32, 16, RelativePositionBias(2, (5, 5))).eval()
    y = torch.randn(1, 9, 7, 16)
    windows = window_partition(y, (5, 5))
    mask = window_padding_mask(1, (9, 7), (5, 5))
    with torch.no_grad():
        out = window_unpartition(attn(windows, key_padding_mask=mask), (9, 7))
        # plain softmax(q k^T / sqrt(d) + w[i - j]) v per window, padded keys hidden
        expected = ReferenceRelativeAttention(attn)(windows, key_padding_mask=mask)
    torch.testing.assert_close(out, window_unpartition(expected, (9, 7)), atol=1e-5, rtol=1e-5)
    # the padding changed nothing: a window that is all real tokens equals global attention on it
    with torch.no_grad():
        corner = attn(y[:, :5, :5])
    torch.testing.assert_close(out[:, :5, :5], corner, atol=1e-5, rtol=1e-5)
