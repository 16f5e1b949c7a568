"""The CoAtNet family as data: every architecture is a row of this table, built by the same blocks.

A row gives the stem widths (S0), per-stage depths, widths and block types (S1-S4), and the options
of the convolutional and transformer blocks that distinguish one family member from another.
"""
from dataclasses import dataclass, fields
from typing import (
    Any,
    Dict,
    Literal,
    Mapping,
    Optional,
    Tuple,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

Width = Literal['in', 'out']
Pool = Literal['avg2', 'max']


class _Options:
    """A typed record of block options: built from a dict whose unknown keys raise, naming the
    valid ones, and whose ``Literal`` fields are checked (a typo is an error, never ignored)."""

    @classmethod
    def from_dict(cls, options: Optional[Mapping[str, Any]], where: str):
        options = dict(options or {})
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f'unknown {where} option(s) {unknown}; valid options: '
                             f'{", ".join(valid)}')
        return cls(**options)

    def __post_init__(self):
        for name, kind in get_type_hints(type(self)).items():
            choices = get_args(kind) if get_origin(kind) is Literal else None
            if choices and getattr(self, name) not in choices:
                raise ValueError(f'{type(self).__name__}.{name} is one of {choices}, got '
                                 f'{getattr(self, name)!r}')


# Defaults are the paper's (Dai et al., 2021, section 3 and Table 3).
@dataclass(frozen=True)
class ConvOptions(_Options):
    """Options of the MBConv blocks of stages S1 and S2 (and the stem's activation)."""
    expand_ratio: float = 4          # MBConv inverted-bottleneck expansion
    expand_from: Width = 'out'       # expansion width from the block's 'out' or 'in' channels
    se_ratio: float = 0.25           # squeeze-excitation width, relative to expand_from channels
    se_act: str = 'SiLU'
    se_before_norm: bool = False     # SE after the depthwise conv's norm and activation
    act: str = 'GELU'
    pre_norm_act: bool = False       # the pre-norm is a plain norm, no activation
    # downsampling in the depthwise conv ('pool': residual_pool, then a stride-1 depthwise conv)
    stride_mode: Literal['dw', 'pool'] = 'dw'
    pool: Pool = 'avg2'              # shortcut pooling: 'avg2' (2x2 average), 'max' (3x3, stride 2)
    residual_pool: Pool = 'avg2'     # pooling on the residual branch when stride_mode is 'pool'
    output_bias: bool = True         # bias in the block's last 1x1 conv and its shortcut projection


@dataclass(frozen=True)
class TransformerOptions(_Options):
    """Options of the relative-attention transformer blocks of stages S3 and S4."""
    head_dim: int = 32
    mlp_ratio: float = 4
    attn_width: Width = 'out'        # attention runs at the output width ('in': at the input width)
    shortcut_bias: bool = True
    pool: Pool = 'avg2'
    layer_scale: Optional[float] = None  # initial LayerScale value, None for no LayerScale
    act: str = 'GELU'
    norm: Literal['LN', 'BN'] = 'LN'  # 'LN', or 'BN' (BatchNorm over channels)
    norm_eps: float = 1e-6
    # 'table': learned w[i - j]; 'mlp': timm's MLP over log offsets
    rel_pos: Literal['table', 'mlp'] = 'table'
    rel_pos_mlp_dim: int = 512


@dataclass(frozen=True)
class CoAtNetArch:
    """One architecture: stem widths (S0), per-stage depths, widths and block types (S1-S4), and
    the block options."""
    depths: Tuple[int, int, int, int]
    channels: Tuple[int, int, int, int]
    stem_channels: Tuple[int, int] = (64, 64)
    block_types: Tuple[str, str, str, str] = ('C', 'C', 'T', 'T')
    conv: ConvOptions = ConvOptions()
    transformer: TransformerOptions = TransformerOptions()
    timm_name: Optional[str] = None  # the timm model whose checkpoints this row loads exactly

    def __post_init__(self):
        for name in ('depths', 'channels', 'block_types'):
            if len(getattr(self, name)) != 4:
                raise ValueError(f'arch {name} needs one entry per stage S1-S4, '
                                 f'got {getattr(self, name)!r}')
        if len(self.stem_channels) != 2:
            raise ValueError(f'arch stem_channels needs two widths, got {self.stem_channels!r}')
        unknown_types = set(self.block_types) - {'C', 'T'}
        if unknown_types:
            raise ValueError(f'block_types are "C" (MBConv) or "T" (transformer), '
                             f'got {sorted(unknown_types)}')


# timm's `_rw_` CoAtNets (the ones with public ImageNet weights) differ from the paper in these
# options.
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

ArchSpec = Union[str, Mapping[str, Any], CoAtNetArch]
_ARCH_KEYS = [f.name for f in fields(CoAtNetArch)]


def resolve_arch(arch: ArchSpec) -> CoAtNetArch:
    """The typed architecture of a table name or a custom dict.

    A custom dict needs ``depths`` and ``channels`` (four entries each); ``stem_channels``,
    ``block_types``, ``conv`` and ``transformer`` options fall back to the paper's. Unknown keys,
    at the top level or among the options, raise and list the valid ones.
    """
    if isinstance(arch, CoAtNetArch):
        return arch
    if isinstance(arch, str):
        key = arch.lower()
        if key not in ARCH_SETTINGS:
            raise ValueError(
                f'unknown CoAtNet arch {arch!r}; known: {", ".join(sorted(ARCH_SETTINGS))}, '
                'or a dict with "depths" and "channels"')
        spec = ARCH_SETTINGS[key]
    elif isinstance(arch, Mapping):
        spec = arch
        missing = {'depths', 'channels'} - set(spec)
        if missing:
            raise ValueError(f'a custom CoAtNet arch needs {sorted(missing)}; '
                             f'got keys {sorted(spec)}')
    else:
        raise TypeError(f'arch must be a name or a dict, got {type(arch).__name__}')
    unknown = sorted(set(spec) - set(_ARCH_KEYS))
    if unknown:
        raise ValueError(f'unknown CoAtNet arch key(s) {unknown}; '
                         f'valid keys: {", ".join(_ARCH_KEYS)}')
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    values['conv'] = _as_options(ConvOptions, values.get('conv'), 'conv')
    values['transformer'] = _as_options(TransformerOptions, values.get('transformer'),
                                        'transformer')
    return CoAtNetArch(**values)


def _as_options(cls, options, where: str):
    return options if isinstance(options, cls) else cls.from_dict(options, where)
