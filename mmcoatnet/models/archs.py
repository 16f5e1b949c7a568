"""The CoAtNet family as data: every architecture is a row of this table, built by the same blocks.

A row gives the stem widths (S0), per-stage depths, widths and block types (S1-S4), and the options
of the convolutional and transformer blocks that distinguish one family member from another.
"""
import copy
from typing import Any, Dict, Union

# Block options shared by the paper's architectures (Dai et al., 2021, section 3 and Table 3).
PAPER_CONV_OPTIONS = dict(
    expand_ratio=4,          # MBConv inverted-bottleneck expansion
    expand_from='out',       # expansion width computed from the block's output channels
    se_ratio=0.25,           # squeeze-excitation width, relative to expand_from channels
    se_act='SiLU',
    se_before_norm=False,    # SE after the depthwise conv's norm and activation
    act='GELU',
    pre_norm_act=False,      # the pre-norm is a plain norm, no activation
    stride_mode='dw',        # downsampling by the depthwise conv ('pool': residual_pool before the 1x1)
    pool='avg2',             # shortcut pooling: 'avg2' (2x2 average) or 'max' (3x3 max, stride 2)
    residual_pool='avg2',    # pooling on the residual branch when stride_mode is 'pool'
    output_bias=True,        # bias in the block's last 1x1 conv and in its shortcut projection
)
PAPER_TRANSFORMER_OPTIONS = dict(
    head_dim=32,
    mlp_ratio=4,
    attn_width='out',        # attention runs at the output width ('in': at the input width)
    shortcut_bias=True,
    pool='avg2',
    layer_scale=None,        # initial LayerScale value, None for no LayerScale
    act='GELU',
    norm='LN',               # 'LN', or 'BN' (BatchNorm over channels)
    norm_eps=1e-6,
    rel_pos='table',         # 'table': learned w[i - j]; 'mlp': timm's MLP over log-spaced offsets
    rel_pos_mlp_dim=512,
)

# timm's `_rw_` CoAtNets (the ones with public ImageNet weights) differ from the paper in these options.
RW_CONV_OPTIONS = dict(expand_from='in', pre_norm_act=True, output_bias=False, act='SiLU',
                       se_act='ReLU', stride_mode='pool')
RW_TRANSFORMER_OPTIONS = dict(attn_width='in')


def _rw(stem, depths, channels, conv=None, transformer=None, timm_name=None):
    return dict(stem_channels=stem, depths=depths, channels=channels, timm_name=timm_name,
                conv={**RW_CONV_OPTIONS, **(conv or {})},
                transformer={**RW_TRANSFORMER_OPTIONS, **(transformer or {})})

ARCH_SETTINGS: Dict[str, Dict[str, Any]] = {
    # Paper, Table 3: L (blocks) and D (channels) for S0, S1, S2, S3, S4.
    'coatnet-0': dict(stem_channels=(64, 64), depths=(2, 3, 5, 2), channels=(96, 192, 384, 768)),
    'coatnet-1': dict(stem_channels=(64, 64), depths=(2, 6, 14, 2), channels=(96, 192, 384, 768)),
    'coatnet-2': dict(stem_channels=(128, 128), depths=(2, 6, 14, 2),
                      channels=(128, 256, 512, 1024)),
    'coatnet-3': dict(stem_channels=(192, 192), depths=(2, 6, 14, 2),
                      channels=(192, 384, 768, 1536)),
    'coatnet-4': dict(stem_channels=(192, 192), depths=(2, 12, 28, 2),
                      channels=(192, 384, 768, 1536)),
    # Not in the paper: a small member for CPU runs (the toy demo) and quick experiments.
    'coatnet-pico': dict(stem_channels=(32, 32), depths=(2, 2, 3, 2), channels=(32, 64, 128, 256)),
    # timm-compatible architectures: load timm's ImageNet checkpoints exactly.
    'coatnet-0-rw': _rw((32, 64), (2, 3, 7, 2), (96, 192, 384, 768), timm_name='coatnet_0_rw_224',
                        conv=dict(se_before_norm=True), transformer=dict(shortcut_bias=False)),
    'coatnet-1-rw': _rw((32, 64), (2, 6, 14, 2), (96, 192, 384, 768), timm_name='coatnet_1_rw_224',
                        conv=dict(stride_mode='dw', se_before_norm=True),
                        transformer=dict(shortcut_bias=False)),
    'coatnet-2-rw': _rw((64, 128), (2, 6, 14, 2), (128, 256, 512, 1024),
                        timm_name='coatnet_2_rw_224', conv=dict(stride_mode='dw', se_act='SiLU')),
    'coatnet-3-rw': _rw((96, 192), (2, 6, 14, 2), (192, 384, 768, 1536),
                        timm_name='coatnet_3_rw_224', conv=dict(stride_mode='dw', se_act='SiLU'),
                        transformer=dict(layer_scale=1e-6)),
    'coatnet-bn-0-rw': _rw((32, 64), (2, 3, 7, 2), (96, 192, 384, 768),
                           timm_name='coatnet_bn_0_rw_224',
                           conv=dict(stride_mode='dw', se_before_norm=True),
                           transformer=dict(shortcut_bias=False, norm='BN')),
    'coatnet-rmlp-1-rw': _rw((32, 64), (2, 6, 14, 2), (96, 192, 384, 768),
                             timm_name='coatnet_rmlp_1_rw_224',
                             conv=dict(pool='max', se_before_norm=True),
                             transformer=dict(pool='max', shortcut_bias=False, rel_pos='mlp',
                                              rel_pos_mlp_dim=384)),
    'coatnet-rmlp-2-rw': _rw((64, 128), (2, 6, 14, 2), (128, 256, 512, 1024),
                             timm_name='coatnet_rmlp_2_rw_224',
                             conv=dict(stride_mode='dw', se_act='SiLU'),
                             transformer=dict(layer_scale=1e-6, rel_pos='mlp')),
}

ArchSpec = Union[str, Dict[str, Any]]


def resolve_arch(arch: ArchSpec) -> Dict[str, Any]:
    """A complete architecture description from a table name or a custom dict.

    A custom dict needs ``depths`` and ``channels`` (four entries each); ``stem_channels``,
    ``block_types``, ``conv`` and ``transformer`` options fall back to the paper's.
    """
    if isinstance(arch, str):
        key = arch.lower()
        if key not in ARCH_SETTINGS:
            raise ValueError(
                f'unknown CoAtNet arch {arch!r}; known: {", ".join(sorted(ARCH_SETTINGS))}, '
                'or a dict with "depths" and "channels"')
        spec = copy.deepcopy(ARCH_SETTINGS[key])
    elif isinstance(arch, dict):
        missing = {'depths', 'channels'} - set(arch)
        if missing:
            raise ValueError(f'a custom CoAtNet arch needs {sorted(missing)}; got keys {sorted(arch)}')
        spec = copy.deepcopy(dict(arch))
    else:
        raise TypeError(f'arch must be a name or a dict, got {type(arch).__name__}')

    spec.setdefault('stem_channels', (64, 64))
    spec.setdefault('block_types', ('C', 'C', 'T', 'T'))
    spec['conv'] = {**PAPER_CONV_OPTIONS, **spec.get('conv', {})}
    spec['transformer'] = {**PAPER_TRANSFORMER_OPTIONS, **spec.get('transformer', {})}
    for key in ('depths', 'channels', 'block_types'):
        if len(spec[key]) != 4:
            raise ValueError(f'arch {key} needs one entry per stage S1-S4, got {spec[key]!r}')
    if len(spec['stem_channels']) != 2:
        raise ValueError(f'arch stem_channels needs two widths, got {spec["stem_channels"]!r}')
    unknown_types = set(spec['block_types']) - {'C', 'T'}
    if unknown_types:
        raise ValueError(f'block_types are "C" (MBConv) or "T" (transformer), got {sorted(unknown_types)}')
    return spec
