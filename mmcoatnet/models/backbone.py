"""The CoAtNet backbone: S0 stem, four C-C-T-T stages, S1-S4 feature maps for FPN and UperNet
heads."""
import functools
from typing import Dict, Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule, initialize
from mmengine.model.weight_init import constant_init, kaiming_init, trunc_normal_, trunc_normal_init
from mmengine.registry import MODELS
from mmengine.utils import to_2tuple
from torch.nn.modules.batchnorm import _BatchNorm

from ..torch_compat import autocast_enabled
from .archs import ARCH_SETTINGS, ArchSpec, resolve_arch
from .attention import CachedBiasProvider, RelativePositionBias
from .blocks import CoAtNetStage, LayerScale, MBConv, Stem, TransformerBlock
from .kernels import checked_max_bias_bytes
from .windows import as_window_size

MIN_INPUT_SIDE = 32  # S4 has stride 32: a smaller side leaves it less than one pixel of input
# The mmengine weight initializer that takes `Pretrained` entries of init_cfg: the checkpoint
# adapter (mmcoatnet/checkpoint.py, the room above) imports this name and registers itself by it
PRETRAINED_INITIALIZER = 'CoAtNetPretrained'


WINDOWED_STAGE = 2  # S3: S4 is small enough at any detection size to stay global
LAYER_DECAY_TYPES = ('layer_wise', 'stage_wise')


def default_global_blocks(depth: int) -> Tuple[int, ...]:
    """Every third block counted back from the last, as ViTDet keeps 2, 5, 8, 11 of 12 global."""
    return tuple(range(depth - 1, -1, -3))[::-1]


def halve(size: Tuple[int, int]) -> Tuple[int, int]:
    """Feature size after a stride-2 layer that keeps partial windows: ceil(size / 2)."""
    return tuple((s + 1) // 2 for s in size)


@MODELS.register_module()
class CoAtNet(BaseModule):
    """CoAtNet backbone (Dai et al., "CoAtNet: Marrying Convolution and Attention for All Data
    Sizes").

    Args:
        arch: a name from ``ARCH_SETTINGS`` ('coatnet-0' ... 'coatnet-4') or a dict with ``depths``
            and ``channels`` (and optionally ``stem_channels``, ``block_types``, block options).
        in_channels: input image channels.
        out_indices: which of S1-S4 to return (0-3; strides 4, 8, 16, 32).
        drop_path_rate: stochastic depth rate, rising linearly over all blocks to this value.
        pretrain_img_size: image size the relative-bias tables are learned for; any other input
            size resizes them at run time.
        norm_cfg: norm of the convolutional stem and MBConv stages (BN, SyncBN, ...).
        frozen_stages: -1 freezes nothing; k >= 0 freezes the stem and stages S1..Sk
            (parameters and norm statistics).
        norm_eval: keep every BatchNorm in eval mode during training.
        with_cp: recompute each block's activations in backward to save memory.
        window_attention: None (default) keeps the paper's global attention everywhere. A dict
            runs S3 attention in windows, for the highest resolutions: ``window_size`` (int or
            (h, w); default the S3 pre-training feature size, 14x14 for 224, so tables need no
            resizing) and ``global_blocks`` (S3 block indices kept global for propagation across
            windows; default every third counted back from the last). S4 stays global.
        attention_impl: 'auto' (default): on CUDA, global attention through compiled
            FlexAttention, which reads the bias from the table inside the kernel (no N x N bias;
            torch >= 2.5, training >= 2.6), elsewhere (and on CUDA where FlexAttention cannot run)
            scaled_dot_product_attention, with the bias in row chunks at large sizes. 'flex':
            FlexAttention wherever it runs (CPU inference too). 'sdpa': never FlexAttention.
            FlexAttention compiles once per token bucket, not per feature size.
        attention_max_bias_bytes: one attention layer's budget for its float32 bias and scores
            (batch x heads x N x N for N tokens) on the SDPA path: past it global attention runs
            in chunks of query rows, exact, in bounded memory. None (default): the device's,
            64 MiB on a CPU, 256 MiB on a CUDA GPU.
        init_cfg: mmengine initialisation config, e.g. ``dict(type='Pretrained', checkpoint=...)``.
    """

    def __init__(self,
                 arch: ArchSpec = 'coatnet-0',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 drop_path_rate: float = 0.,
                 pretrain_img_size: Union[int, Tuple[int, int]] = 224,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 window_attention: Optional[dict] = None,
                 attention_impl: str = 'auto',
                 attention_max_bias_bytes: Optional[int] = None,
                 init_cfg: Optional[Union[dict, list]] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch = resolve_arch(arch)
        self.arch_name = arch.lower() if isinstance(arch, str) else None
        self.in_channels = in_channels
        self.out_indices = tuple(out_indices)
        for index in self.out_indices:
            if not 0 <= index < 4:
                raise ValueError(f'out_indices pick stages S1-S4 as 0-3, got {self.out_indices}')
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f'frozen_stages is -1 (none) or 0-4, got {frozen_stages}')
        self.frozen_stages = frozen_stages
        attention_max_bias_bytes = checked_max_bias_bytes(attention_max_bias_bytes)
        self.norm_eval = norm_eval
        self.pretrain_img_size = tuple(to_2tuple(pretrain_img_size))

        conv_options, transformer_options = self.arch.conv, self.arch.transformer
        self.stem = Stem(in_channels, self.arch.stem_channels, norm_cfg, conv_options.act)
        depths = self.arch.depths
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        feat_size = halve(self.pretrain_img_size)
        stage_in = self.arch.stem_channels[-1]
        self.stages = nn.ModuleList()
        for stage_index, (depth, width, kind) in enumerate(
                zip(depths, self.arch.channels, self.arch.block_types)):
            feat_size = halve(feat_size)
            windows = (self._window_sizes(window_attention, depth, feat_size)
                       if stage_index == WINDOWED_STAGE else [None] * depth)
            if kind != 'T' and any(windows):
                raise ValueError(f'window_attention needs a transformer S3, but this arch has '
                                 f'block types {self.arch.block_types}')
            blocks = []
            for block_index in range(depth):
                block_in = stage_in if block_index == 0 else width
                stride = 2 if block_index == 0 else 1
                drop_path = rates[sum(depths[:stage_index]) + block_index]
                if kind == 'C':
                    blocks.append(MBConv(block_in, width, stride, conv_options, norm_cfg,
                                         drop_path))
                else:
                    blocks.append(TransformerBlock(block_in, width, stride, transformer_options,
                                                   feat_size, drop_path, windows[block_index],
                                                   attention_impl, attention_max_bias_bytes))
            self.stages.append(CoAtNetStage(blocks, channels_last=(kind == 'T'), with_cp=with_cp))
            stage_in = width
        self.out_channels = [self.arch.channels[i] for i in self.out_indices]
        self._freeze_stages()

    @staticmethod
    def _window_sizes(window_attention: Optional[dict], depth: int, pretrain_feat_size):
        """Per S3 block: its window size, or None for global attention."""
        if window_attention is None:
            return [None] * depth
        unknown = set(window_attention) - {'window_size', 'global_blocks'}
        if unknown:
            raise ValueError(f'window_attention takes window_size and global_blocks, '
                             f'got unknown keys {sorted(unknown)}')
        size = as_window_size(window_attention.get('window_size'), pretrain_feat_size)
        if min(size) < 1:
            raise ValueError(f'window_size must be positive, got {size}')
        global_blocks = window_attention.get('global_blocks')
        if global_blocks is None:
            global_blocks = default_global_blocks(depth)
        outside = [i for i in global_blocks if not 0 <= i < depth]
        if outside:
            raise ValueError(f'global_blocks {outside} are not S3 blocks 0-{depth - 1}')
        return [None if i in global_blocks else size for i in range(depth)]

    def _frozen_modules(self):
        if self.frozen_stages >= 0:
            yield self.stem
        yield from self.stages[:max(self.frozen_stages, 0)]

    def _freeze_stages(self):
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def get_layer_depth(self, param_name: str, prefix: str = '',
                        decay_type: str = 'layer_wise') -> Tuple[int, int]:
        """The depth of a parameter for layer-wise learning-rate decay and the number of depths,
        as mmpretrain's backbones answer it. The stem has depth 0; then ``'layer_wise'``: every
        block of S1-S4 in order (1..B), ``'stage_wise'``: every stage (1..4). A name outside
        ``prefix`` (neck, heads) has the last depth, B + 1 or 5."""
        if decay_type not in LAYER_DECAY_TYPES:
            raise ValueError(f'decay_type is one of {LAYER_DECAY_TYPES}, got {decay_type!r}')
        depths = self.arch.depths
        num_depths = (sum(depths) if decay_type == 'layer_wise' else len(depths)) + 2
        if not param_name.startswith(prefix):
            return num_depths - 1, num_depths
        parts = param_name[len(prefix):].split('.')
        if parts[0] == 'stem':
            return 0, num_depths
        if parts[0] == 'stages' and len(parts) > 3 and parts[2] == 'blocks':
            stage, block = int(parts[1]), int(parts[3])
            if decay_type == 'stage_wise':
                return stage + 1, num_depths
            return sum(depths[:stage]) + block + 1, num_depths
        raise ValueError(f'{param_name} is in neither the stem nor a block of a stage: no depth')

    def no_weight_decay(self) -> Set[str]:
        """Names of the parameters that take no weight decay beyond biases and norms, as timm's
        models name them: every relative-position parameter (tables, the rmlp MLP) and
        LayerScale."""
        names = set()
        for module_name, module in self.named_modules():
            if isinstance(module, (CachedBiasProvider, LayerScale)):
                names.update(f'{module_name}.{name}' for name, _ in module.named_parameters())
        return names

    @staticmethod
    def architecture_signatures() -> Dict[str, Dict[str, tuple]]:
        """Every table architecture's state-dict keys and shapes, by name: what the checkpoint
        adapter compares a checkpoint with to name the architecture it belongs to."""
        return {name: _arch_signature(name) for name in ARCH_SETTINGS}

    def init_weights(self):
        """Default initialisation, then ``init_cfg``, a dict or a list. ``Pretrained`` entries
        (with mmengine's ``checkpoint`` and ``prefix``) go through the project's checkpoint adapter:
        timm or mmcoatnet formats, table resizing, one report, an error for another architecture."""
        if self._is_init:
            return
        self._init_default()
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        cfgs = [dict(cfg) for cfg in cfgs if cfg]
        others = [cfg for cfg in cfgs if cfg.get('type') != 'Pretrained']
        pretrained = [dict(cfg, type=PRETRAINED_INITIALIZER) for cfg in cfgs
                      if cfg.get('type') == 'Pretrained']
        if others:
            initialize(self, others)
        if pretrained:  # last, as mmengine applies them, so the weights are not overwritten
            initialize(self, pretrained)
        self._is_init = True

    def _init_default(self):
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_init(module, std=0.02, bias=0.)
            elif isinstance(module, nn.Conv2d):
                kaiming_init(module, mode='fan_out', nonlinearity='relu', bias=0.)
            elif isinstance(module, (_BatchNorm, nn.LayerNorm, nn.GroupNorm)):
                constant_init(module, 1., bias=0.)
            elif isinstance(module, RelativePositionBias):
                trunc_normal_(module.table, std=0.02)

    def _check_input(self, x: torch.Tensor):
        if x.dim() != 4:
            raise ValueError(f'CoAtNet expects a 4-D (N, {self.in_channels}, H, W) batch, '
                             f'got shape {tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'CoAtNet was built for {self.in_channels} input channels '
                             f'(N, {self.in_channels}, H, W), got shape {tuple(x.shape)}; '
                             'set in_channels in the backbone config to match the data')
        weight = self.stem.conv1.weight
        autocast = x.is_floating_point() and autocast_enabled(x.device.type)
        if x.dtype != weight.dtype and not autocast:
            raise TypeError(f'CoAtNet\'s weights are {weight.dtype} but the input is {x.dtype}; '
                            f'convert the images to {weight.dtype} (mmdet\'s and mmseg\'s data '
                            'preprocessors do), cast the model to the input\'s dtype, or run '
                            'under torch.autocast')
        if min(x.shape[-2:]) < MIN_INPUT_SIDE:
            raise ValueError(f'CoAtNet needs H and W of at least {MIN_INPUT_SIDE} '
                             f'(expected (N, {self.in_channels}, >={MIN_INPUT_SIDE}, '
                             f'>={MIN_INPUT_SIDE})), got shape {tuple(x.shape)}; '
                             'resize or pad the images')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self._check_input(x)
        # channels-last inside: oneDNN and cuDNN convolutions are faster on it, and the transformer
        # stages' (B, H, W, C) views of it are free; the returned maps are plain contiguous NCHW
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        outs = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.out_indices:
                outs.append(x.contiguous())
        return tuple(outs)


@functools.lru_cache(maxsize=None)
def _arch_signature(name: str) -> Dict[str, tuple]:
    with torch.device('meta'):  # shapes only: nothing is allocated or initialised
        model = CoAtNet(arch=name)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}
