"""CoAtNet as an mmpretrain classifier: timm's classifiers converted with their heads give timm's
logits, at 224 and at 384; a classifier checkpoint serves detection as a backbone."""
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from mmengine.runner import load_checkpoint

import mmcoatnet.models.cls_head  # noqa: F401  (registers CoAtNetClsHead)
from mmcoatnet.checkpoint import convert_timm_state_dict, timm_classifier_head
from mmcoatnet.models import CoAtNet

from test_checkpoint import (
    CONVERTER,
    FIXTURE_ARCHS,
    ROOT,
    fixture_input,
    load_fixture,
    reduced_arch,
    run,
)


def build_classifier(arch, num_classes, final_norm, pretrain_img_size=224):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    arch = CoAtNet(arch=arch).arch  # typed: the head's width and norm epsilon come from it
    return MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='CoAtNet', arch=arch, out_indices=(3,),
                      pretrain_img_size=pretrain_img_size),
        head=dict(type='CoAtNetClsHead', num_classes=num_classes, in_channels=arch.channels[-1],
                  final_norm=final_norm, norm_eps=arch.transformer.norm_eps))).eval()


def logits_of(model, x):
    with torch.no_grad():
        return model(x, mode='tensor')


@pytest.mark.parametrize('arch', FIXTURE_ARCHS)
def test_converted_timm_classifiers_give_timms_logits(arch):
    meta, state, _, path = load_fixture(arch)
    from safetensors.torch import load_file
    expected = load_file(path)['logits']
    head, final_norm = timm_classifier_head(state)
    assert final_norm == ('BN' if arch == 'coatnet-bn-0-rw' else 'LN')
    model = build_classifier(reduced_arch(meta), expected.shape[-1], final_norm)
    weights = {f'backbone.{k}': v for k, v in convert_timm_state_dict(state).items()}
    missing, unexpected = model.load_state_dict({**weights, **head}, strict=False)
    assert not unexpected and not [k for k in missing if 'num_batches' not in k]
    diff = (logits_of(model, fixture_input()) - expected).abs().max().item()
    assert diff <= 1e-4, f'{arch}: logits differ from timm by {diff:.2e}'


def reduced_timm(config_name, img_size):
    from timm.models.maxxvit import MaxxVit, model_cfgs
    cfg = model_cfgs[config_name]
    cfg = replace(cfg, stem_width=(8, 16), depths=(1, 2, 2, 1), embed_dim=(16, 32, 64, 64),
                  transformer_cfg=replace(cfg.transformer_cfg, rel_pos_dim=32))
    torch.manual_seed(0)
    model = MaxxVit(cfg, img_size=img_size, num_classes=7).eval()
    with torch.no_grad():  # tables and norms away from their initial values
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and ('relative_position' in name or 'norm' in name):
                tensor.add_(0.1 * torch.randn_like(tensor))
    return model


@pytest.mark.parametrize('arch, timm_config', [('coatnet-0-rw', 'coatnet_0_rw'),
                                                ('coatnet-rmlp-2-rw', 'coatnet_rmlp_2_rw')])
def test_a_384_timm_checkpoint_converts_with_its_head_and_gives_timms_logits(tmp_path, arch,
                                                                             timm_config):
    """timm itself is the reference here: its model at 384, our converter with --keep-head,
    mmpretrain loading the result."""
    pytest.importorskip('timm')
    timm_model = reduced_timm(timm_config, 384)
    torch.save(timm_model.state_dict(), tmp_path / 'timm384.pth')
    out = tmp_path / 'cls384.pth'
    result = subprocess.run([sys.executable, CONVERTER, str(tmp_path / 'timm384.pth'), str(out),
                             '--keep-head'], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    rmlp = 'rmlp' in arch
    assert ('pre-training size: any' if rmlp else 'pre-training size: 384') in result.stdout
    assert "'final_norm': 'LN'" in result.stdout and "'num_classes': 7" in result.stdout
    small = dict(stem_channels=(8, 16), depths=(1, 2, 2, 1), channels=(16, 32, 64, 64))
    from mmcoatnet.models import ARCH_SETTINGS
    arch_dict = {**ARCH_SETTINGS[arch], **small}
    arch_dict['transformer'] = dict(arch_dict['transformer'], rel_pos_mlp_dim=32)
    model = build_classifier(arch_dict, 7, 'LN', pretrain_img_size=384)
    load_checkpoint(model, str(out), strict=True, logger='silent')
    x = torch.randn(2, 3, 384, 384)
    with torch.no_grad():
        expected = timm_model(x)
    assert (logits_of(model, x) - expected).abs().max() <= 1e-4


def test_a_classifier_checkpoint_serves_detection_as_a_backbone(tmp_path):
    meta, state, expected, _ = load_fixture('coatnet-1-rw')
    torch.save(state, tmp_path / 'timm.pth')
    cls_path = tmp_path / 'cls.pth'
    result = subprocess.run([sys.executable, CONVERTER, str(tmp_path / 'timm.pth'), str(cls_path),
                             '--keep-head'],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    saved = torch.load(cls_path, weights_only=True)['state_dict']
    assert 'head.fc.weight' in saved and 'head.norm.weight' in saved
    assert all(k.startswith(('backbone.', 'head.')) for k in saved)
    backbone = CoAtNet(arch=reduced_arch(meta), init_cfg=dict(type='Pretrained',
                                                              checkpoint=str(cls_path)))
    backbone.init_weights()  # backbone. prefix removed, the 10-class head left out
    for out, ref in zip(run(backbone, fixture_input()), expected):
        assert (out - ref).abs().max() <= 1e-4


def test_the_head_refuses_an_unknown_final_norm():
    from mmcoatnet.models.cls_head import CoAtNetClsHead
    with pytest.raises(ValueError, match="final_norm is one of .*'GN'"):
        CoAtNetClsHead(10, 64, final_norm='GN')
