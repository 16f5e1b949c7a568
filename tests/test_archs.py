"""The architecture table as typed records: every row builds, and a mistyped option is an error."""
import pytest

from mmcoatnet.models import ARCH_SETTINGS, CoAtNet
from mmcoatnet.models.archs import CoAtNetArch, ConvOptions, TransformerOptions, resolve_arch

SMALL = dict(stem_channels=(16, 16), depths=(1, 1, 2, 1), channels=(16, 32, 64, 64))


@pytest.mark.parametrize('name', sorted(ARCH_SETTINGS))
def test_every_table_row_resolves_to_a_typed_record(name):
    arch = resolve_arch(name)
    assert isinstance(arch, CoAtNetArch)
    assert isinstance(arch.conv, ConvOptions) and isinstance(arch.transformer, TransformerOptions)
    assert arch.depths == tuple(ARCH_SETTINGS[name]['depths'])


def test_rw_rows_differ_from_the_paper_by_options_only():
    paper, rw = resolve_arch('coatnet-1'), resolve_arch('coatnet-1-rw')
    assert type(paper.conv) is type(rw.conv)
    assert (paper.conv.expand_from, rw.conv.expand_from) == ('out', 'in')
    assert (paper.transformer.attn_width, rw.transformer.attn_width) == ('out', 'in')


@pytest.mark.parametrize('where, arch, bad', [
    ('conv', dict(SMALL, conv=dict(se_ration=0.5)), 'se_ration'),
    ('transformer', dict(SMALL, transformer=dict(head_dims=16)), 'head_dims'),
    ('arch key', dict(SMALL, depth=(1, 1, 1, 1)), 'depth'),
])
def test_unknown_keys_raise_and_list_the_valid_ones(where, arch, bad):
    with pytest.raises(ValueError) as error:
        CoAtNet(arch=arch)
    message = str(error.value)
    assert f"'{bad}'" in message and 'valid' in message
    if where == 'conv':
        assert 'se_ratio' in message and 'expand_ratio' in message
    elif where == 'transformer':
        assert 'head_dim' in message and 'rel_pos' in message
    else:
        assert 'depths' in message and 'stem_channels' in message


@pytest.mark.parametrize('options, message', [
    (dict(conv=dict(stride_mode='conv')), "stride_mode is one of ('dw', 'pool'), got 'conv'"),
    (dict(transformer=dict(norm='GN')), "norm is one of ('LN', 'BN'), got 'GN'"),
    (dict(transformer=dict(rel_pos='rope')), "rel_pos is one of ('table', 'mlp')"),
])
def test_choice_options_are_checked(options, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        resolve_arch(dict(SMALL, **options))


def test_a_custom_dict_takes_the_papers_defaults_and_its_own_options():
    arch = resolve_arch(dict(SMALL, conv=dict(se_ratio=0.5), transformer=dict(head_dim=16)))
    assert arch.conv.se_ratio == 0.5 and arch.conv.expand_ratio == 4
    assert arch.transformer.head_dim == 16 and arch.transformer.mlp_ratio == 4
    model = CoAtNet(arch=arch)
    assert model.stages[2].blocks[0].attn.num_heads == 64 // 16
    assert model.stages[0].blocks[0].se.fc1.out_channels == int(16 * 0.5)
