"""Make the exactness fixtures: small seeded timm CoAtNets, their state dicts and timm's outputs.

timm is a test dependency of the project's environment (requirements-lock.txt), so:

    .venv/bin/python tools/dev/make_timm_fixtures.py tests/data/timm_fixtures

For each timm-compatible architecture of ours, it builds timm's model from that architecture's timm
config with reduced widths and depths (every block type and option is still exercised: stride-2 and
stride-1 MBConv and transformer blocks, width-changing shortcuts, several heads), randomises every
parameter and BN statistic from a fixed seed (so LayerScale, BN and bias tables are not
near-identity), and saves, in float32 safetensors:
  input.safetensors   one (1, 3, 224, 224) input shared by all architectures
  <arch>.safetensors  'state_dict.<timm key>' tensors (a 10-class classifier included),
                      'out.<i>' = timm's S1-S4 outputs in eval mode (forward_intermediates, before
                      the final norm) and 'logits' = timm's classifier output; metadata gives the
                      timm model, the reduced sizes and the versions used.
"""
import argparse
import json
import os
from dataclasses import replace

import timm
import torch
from safetensors.torch import save_file
from timm.models.maxxvit import MaxxVit, model_cfgs

# our arch name -> timm's model config name
ARCHS = {
    'coatnet-0-rw': 'coatnet_0_rw',
    'coatnet-1-rw': 'coatnet_1_rw',
    'coatnet-2-rw': 'coatnet_2_rw',
    'coatnet-3-rw': 'coatnet_3_rw',
    'coatnet-bn-0-rw': 'coatnet_bn_0_rw',
    'coatnet-rmlp-1-rw': 'coatnet_rmlp_1_rw',
    'coatnet-rmlp-2-rw': 'coatnet_rmlp_2_rw',
}
REDUCED = dict(stem_channels=(8, 16), depths=(1, 2, 2, 1), channels=(16, 32, 64, 64))
RMLP_DIM = 32
IMG_SIZE = 224


def randomise(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith('running_var'):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith('running_mean'):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.2)
            elif 'relative_position_bias_table' in name or name.endswith('gamma'):
                tensor.copy_(torch.randn(tensor.shape, generator=gen))
            elif name.endswith('weight') and tensor.dim() == 1:  # norm scales
                tensor.copy_(1 + 0.2 * torch.randn(tensor.shape, generator=gen))
            else:
                fan_in = tensor[0].numel() if tensor.dim() > 1 else 1
                scale = fan_in ** -0.5 if tensor.dim() > 1 else 0.1
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * scale)


def build_reduced(timm_cfg_name: str) -> MaxxVit:
    cfg = model_cfgs[timm_cfg_name]
    transformer_cfg = replace(cfg.transformer_cfg, rel_pos_dim=RMLP_DIM)
    cfg = replace(cfg, stem_width=REDUCED['stem_channels'], depths=REDUCED['depths'],
                  embed_dim=REDUCED['channels'], transformer_cfg=transformer_cfg)
    return MaxxVit(cfg, img_size=IMG_SIZE, num_classes=10)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    torch.manual_seed(0)
    image = torch.randn(1, 3, IMG_SIZE, IMG_SIZE)
    save_file({'input': image.contiguous()}, os.path.join(args.out_dir, 'input.safetensors'))
    for seed, (arch, timm_cfg_name) in enumerate(ARCHS.items()):
        model = build_reduced(timm_cfg_name)
        randomise(model, seed)
        model.eval()
        with torch.no_grad():
            outs = model.forward_intermediates(image, indices=4, intermediates_only=True)
            logits = model(image)
        tensors = {f'state_dict.{k}': v.contiguous() for k, v in model.state_dict().items()}
        tensors.update({f'out.{i}': o.contiguous() for i, o in enumerate(outs)})
        tensors['logits'] = logits.contiguous()
        meta = dict(arch=arch, timm_config=timm_cfg_name,
                    reduced=dict(REDUCED, rel_pos_mlp_dim=RMLP_DIM), img_size=IMG_SIZE,
                    timm=timm.__version__, torch=torch.__version__, seed=seed)
        path = os.path.join(args.out_dir, f'{arch}.safetensors')
        save_file(tensors, path, metadata={'fixture': json.dumps(meta)})
        print(f'{arch}: {sum(p.numel() for p in model.parameters())} params, outputs '
              f'{[tuple(o.shape) for o in outs]} -> {path} ({os.path.getsize(path) / 1e3:.0f} kB)')


if __name__ == '__main__':
    main()
