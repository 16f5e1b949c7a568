"""Bad input to the backbone gets the backbone's own error, naming what it expected and got."""
import pytest
import torch

from mmcoatnet.models import CoAtNet

SMALL = dict(stem_channels=(16, 16), depths=(1, 1, 2, 1), channels=(16, 32, 64, 64))


@pytest.fixture(scope='module')
def model():
    return CoAtNet(arch=SMALL).eval()


@pytest.mark.parametrize('dtype', [torch.uint8, torch.float16, torch.float64])
def test_an_input_dtype_other_than_the_weights_is_named(model, dtype):
    x = torch.zeros(1, 3, 64, 64, dtype=dtype)
    with pytest.raises(TypeError, match=f"weights are torch.float32 but the input is {dtype}"):
        model(x)


def test_autocast_takes_a_float_input_of_another_dtype(model):
    x = torch.randn(1, 3, 64, 64, dtype=torch.bfloat16)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(x)
    assert outs[-1].shape == (1, 64, 2, 2)
    with pytest.raises(TypeError, match='input is torch.uint8'):  # images still need converting
        with torch.autocast('cpu', dtype=torch.bfloat16):
            model(x.to(torch.uint8))


def test_a_half_precision_model_takes_a_half_precision_input():
    model = CoAtNet(arch=SMALL).eval().to(torch.bfloat16)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64, dtype=torch.bfloat16))
    assert outs[0].dtype == torch.bfloat16
