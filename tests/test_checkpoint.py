"""Loading timm and mmcoatnet checkpoints: exactness against timm, formats, resizing, errors."""
import copy
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.logging import MessageHub
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mmcoatnet.checkpoint import (
    CheckpointMismatchError,
    guess_architectures,
    load_pretrained,
    read_checkpoint,
)
from mmcoatnet.models import ARCH_SETTINGS, CoAtNet
from mmcoatnet.safe_load import UnsafeCheckpointError

ROOT = osp.dirname(osp.dirname(__file__))
FIXTURES = osp.join(ROOT, 'tests', 'data', 'timm_fixtures')
FIXTURE_ARCHS = sorted(osp.basename(p)[:-len('.safetensors')]
                       for p in glob.glob(osp.join(FIXTURES, 'coatnet-*.safetensors')))
CONVERTER = osp.join(ROOT, 'tools', 'model_converters', 'timm2mmcoatnet.py')


def load_fixture(arch):
    path = osp.join(FIXTURES, f'{arch}.safetensors')
    with safe_open(path, 'pt') as f:
        meta = json.loads(f.metadata()['fixture'])
    tensors = load_file(path)
    state = {k[len('state_dict.'):]: v for k, v in tensors.items() if k.startswith('state_dict.')}
    outs = [tensors[f'out.{i}'] for i in range(4)]
    return meta, state, outs, path


def reduced_arch(meta):
    """The table row of the fixture's architecture at the fixture's reduced size."""
    arch = copy.deepcopy(ARCH_SETTINGS[meta['arch']])
    reduced = meta['reduced']
    arch.update({k: reduced[k] for k in ('stem_channels', 'depths', 'channels')})
    arch['transformer']['rel_pos_mlp_dim'] = reduced['rel_pos_mlp_dim']
    return arch


def fixture_input():
    return load_file(osp.join(FIXTURES, 'input.safetensors'))['input']


def run(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def test_every_timm_compatible_architecture_has_a_fixture():
    timm_archs = sorted(k for k, v in ARCH_SETTINGS.items() if v.get('timm_name'))
    assert FIXTURE_ARCHS == timm_archs and len(timm_archs) == 7


@pytest.mark.parametrize('arch', FIXTURE_ARCHS)
def test_outputs_equal_timm(arch, tmp_path):
    meta, state, expected, path = load_fixture(arch)
    assert meta['arch'] == arch
    torch.save(state, tmp_path / 'timm.pth')  # what a timm .pth holds: a bare state dict
    model = CoAtNet(arch=reduced_arch(meta),
                    init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'timm.pth')))
    model.init_weights()
    outs = run(model, fixture_input())
    for index, (out, ref) in enumerate(zip(outs, expected)):
        assert out.shape == ref.shape
        diff = (out - ref).abs().max().item()
        assert diff <= 1e-4, f'{arch} S{index + 1}: max abs diff {diff:.2e}'


@pytest.mark.slow
@pytest.mark.parametrize('arch', ['coatnet-0-rw', 'coatnet-rmlp-2-rw'])
def test_converter_round_trip_pth_and_safetensors(arch, tmp_path):
    meta, state, expected, _ = load_fixture(arch)
    src = tmp_path / 'timm.safetensors'
    save_file({**state, 'head.fc.weight': torch.zeros(10, 64)}, str(src))
    for suffix in ('pth', 'safetensors'):
        dst = tmp_path / f'converted.{suffix}'
        result = subprocess.run([sys.executable, CONVERTER, str(src), str(dst)],
                                capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        assert 'architecture:' in result.stdout and 'parameters:' in result.stdout
        converted = read_checkpoint(str(dst))
        converted = converted.get('state_dict', converted)
        assert not any(k.startswith('head.') for k in converted)
        model = CoAtNet(arch=reduced_arch(meta),
                        init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
        model.init_weights()
        for out, ref in zip(run(model, fixture_input()), expected):
            assert (out - ref).abs().max() <= 1e-4


def test_converter_recognises_a_full_size_architecture(tmp_path):
    model = CoAtNet(arch='coatnet-0')
    src = tmp_path / 'model.safetensors'
    # a timm-format file: transformer 1x1 layers as convs, tables as (L, heads)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith('rel_pos.table'):
            key, value = key.replace('rel_pos.table', 'rel_pos.relative_position_bias_table'), \
                value.flatten(1).t()
        elif value.dim() == 2:
            value = value[:, :, None, None]
        state[key.replace('shortcut_proj.', 'shortcut.expand.')] = value.contiguous()
    save_file(state, str(src))
    result = subprocess.run([sys.executable, CONVERTER, str(src), str(tmp_path / 'out.pth')],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert 'architecture: coatnet-0' in result.stdout and '23.68M' in result.stdout


def test_other_pretraining_size_is_resized_and_runs_at_detection_resolution(tmp_path):
    meta, state, expected, path = load_fixture('coatnet-1-rw')
    torch.save({'state_dict': state}, tmp_path / 'timm224.pth')
    model = CoAtNet(arch=reduced_arch(meta), pretrain_img_size=384,
                    init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'timm224.pth')))
    model.init_weights()
    table = model.stages[2].blocks[1].attn.rel_pos.table
    assert table.shape[-2:] == (47, 47)  # 384 / 16 = 24 -> 2 * 24 - 1
    outs = run(model, torch.randn(1, 3, 800, 1344))
    assert [o.shape[-2:] for o in outs] == [(200, 336), (100, 168), (50, 84), (25, 42)]
    assert all(torch.isfinite(o).all() for o in outs)
    # and back: the 384 model's weights into a 224 model reproduce a resized-twice table
    torch.save(model.state_dict(), tmp_path / 'mm384.pth')
    small = CoAtNet(arch=reduced_arch(meta), pretrain_img_size=224,
                    init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'mm384.pth')))
    small.init_weights()
    assert small.stages[2].blocks[1].attn.rel_pos.table.shape[-2:] == (27, 27)


def test_wrapped_and_prefixed_checkpoints_load(tmp_path):
    source = CoAtNet(arch='coatnet-0', out_indices=(3,))
    source.init_weights()
    wrapped = {'meta': {'epoch': 3},
               'state_dict': {f'module.backbone.{k}': v for k, v in source.state_dict().items()}}
    wrapped['state_dict']['module.neck.conv.weight'] = torch.zeros(3)
    wrapped['state_dict']['module.backbone.head.fc.weight'] = torch.zeros(3)
    torch.save(wrapped, tmp_path / 'detector.pth')
    target = CoAtNet(arch='coatnet-0', out_indices=(3,),
                     init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'detector.pth')))
    target.init_weights()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(run(source, x)[0], run(target, x)[0])


def test_mmengine_checkpoint_with_message_hub_loads_safely(tmp_path):
    hub = MessageHub.get_instance('mmcoatnet-test')
    hub.update_scalar('train/loss', 0.5)
    source = CoAtNet(arch=dict(depths=(1, 1, 1, 1), channels=(16, 32, 64, 64)))
    torch.save({'meta': {'seed': 0}, 'message_hub': hub.state_dict(),
                'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()}},
               tmp_path / 'epoch_1.pth')
    target = CoAtNet(arch=dict(depths=(1, 1, 1, 1), channels=(16, 32, 64, 64)))
    report = load_pretrained(target, str(tmp_path / 'epoch_1.pth'))
    assert report.source == 'mmcoatnet' and not report.missing and not report.unexpected


class Payload:
    def __reduce__(self):
        return (print, ('this would have run',))


def test_a_pickle_with_arbitrary_globals_is_refused(tmp_path):
    torch.save({'state_dict': {}, 'evil': Payload()}, tmp_path / 'evil.pth')
    model = CoAtNet(arch=dict(depths=(1, 1, 1, 1), channels=(16, 32, 64, 64)))
    with pytest.raises(UnsafeCheckpointError, match='refusing to load'):
        load_pretrained(model, str(tmp_path / 'evil.pth'))


def test_a_resnet_checkpoint_is_rejected_with_a_clear_error(tmp_path):
    from mmdet.models.backbones import ResNet
    torch.save(ResNet(depth=18).state_dict(), tmp_path / 'resnet18.pth')
    model = CoAtNet(arch='coatnet-0')
    with pytest.raises(CheckpointMismatchError, match="matches no CoAtNet.*'coatnet-0'"):
        load_pretrained(model, str(tmp_path / 'resnet18.pth'))


def test_the_wrong_architecture_is_named(tmp_path):
    save_file(CoAtNet(arch='coatnet-0').state_dict(), str(tmp_path / 'c0.safetensors'))
    model = CoAtNet(arch='coatnet-1')
    with pytest.raises(CheckpointMismatchError,
                       match="configured backbone 'coatnet-1'.*look like 'coatnet-0'"):
        load_pretrained(model, str(tmp_path / 'c0.safetensors'))


def test_partial_fit_is_loaded_and_summarised(tmp_path):
    arch = dict(depths=(1, 1, 2, 1), channels=(16, 32, 64, 64))
    source = CoAtNet(arch=arch)
    state = source.state_dict()
    state.pop('stages.3.blocks.0.mlp.fc2.bias')
    state['stages.3.blocks.0.mlp.fc1.bias'] = torch.zeros(7)
    torch.save(state, tmp_path / 'partial.pth')
    report = load_pretrained(CoAtNet(arch=arch), str(tmp_path / 'partial.pth'))
    assert report.missing == ['stages.3.blocks.0.mlp.fc2.bias']
    assert report.mismatched == ['stages.3.blocks.0.mlp.fc1.bias: (7,) vs (256,)']


def test_guess_names_table_architectures():
    state = CoAtNet(arch='coatnet-bn-0-rw').state_dict()
    assert guess_architectures(state, CoAtNet.architecture_signatures()) == ['coatnet-bn-0-rw']


# ---------------------------------------------------------------- one checkpoint path, bad files

TINY = dict(stem_channels=(8, 8), depths=(1, 1, 1, 1), channels=(8, 16, 32, 32))


def tiny_model(**kwargs):
    return CoAtNet(arch=TINY, **kwargs)


@pytest.mark.parametrize('make, problem', [
    (lambda p, good: p.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2]),
     'not a readable torch checkpoint'),
    (lambda p, good: p.write_bytes(b'\x80\x02not a pickle at all' * 10),
     'not a readable torch checkpoint'),
    (lambda p, good: p.with_suffix('.safetensors').write_bytes(b'{"bad": 1}' * 3),
     'not a valid safetensors file'),
])
def test_a_corrupt_checkpoint_names_the_file_and_the_problem(tmp_path, make, problem):
    good = tmp_path / 'good.pth'
    torch.save(tiny_model().state_dict(), good)
    bad = tmp_path / 'bad.pth'
    make(bad, good)
    if not bad.exists():
        bad = bad.with_suffix('.safetensors')
    with pytest.raises(ValueError,
                       match=f'cannot read checkpoint {bad}: {problem}.*truncated or corrupt'):
        tiny_model(init_cfg=dict(type='Pretrained', checkpoint=str(bad))).init_weights()


def test_a_truncated_safetensors_file_names_the_file(tmp_path):
    good = tmp_path / 'good.safetensors'
    save_file(tiny_model().state_dict(), str(good))
    bad = tmp_path / 'cut.safetensors'
    bad.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ValueError, match=f'cannot read checkpoint {bad}: not a valid safetensors'):
        read_checkpoint(str(bad))


def test_a_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(IsADirectoryError, match=f'checkpoint {tmp_path} is a directory'):
        tiny_model(init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path))).init_weights()


def timm_fixture_file(tmp_path, arch='coatnet-0-rw', wrap=None):
    meta, state, expected, _ = load_fixture(arch)
    if wrap:
        state = {f'{wrap}{k}': v for k, v in state.items()}
    path = tmp_path / f'{arch}.pth'
    torch.save({'state_dict': state}, path)
    return meta, expected, str(path)


def assert_outputs_equal(model, expected):
    for out, ref in zip(run(model, fixture_input()), expected):
        assert (out - ref).abs().max() <= 1e-4


def test_list_form_init_cfg_goes_through_the_adapter(tmp_path):
    meta, expected, path = timm_fixture_file(tmp_path)
    model = CoAtNet(arch=reduced_arch(meta), init_cfg=[
        dict(type='Constant', layer='Linear', val=0.),  # applied first, then overwritten
        dict(type='Pretrained', checkpoint=path)])
    model.init_weights()
    assert_outputs_equal(model, expected)


def test_prefix_selects_the_part_of_a_checkpoint_and_resizes_its_tables(tmp_path):
    meta, expected, path = timm_fixture_file(tmp_path, wrap='teacher.encoder.')
    model = CoAtNet(arch=reduced_arch(meta),
                    init_cfg=dict(type='Pretrained', checkpoint=path, prefix='teacher.encoder'))
    model.init_weights()
    assert_outputs_equal(model, expected)
    bigger = CoAtNet(arch=reduced_arch(meta), pretrain_img_size=384,
                     init_cfg=[dict(type='Pretrained', checkpoint=path, prefix='teacher.encoder.')])
    bigger.init_weights()
    assert bigger.stages[2].blocks[0].attn.rel_pos.table.shape[-2:] == (47, 47)
    with pytest.raises(CheckpointMismatchError,
                       match="no tensors under prefix 'student.'.*teacher."):
        CoAtNet(arch=reduced_arch(meta), init_cfg=dict(
            type='Pretrained', checkpoint=path, prefix='student')).init_weights()


class Touch:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


@pytest.fixture
def http_server(tmp_path, monkeypatch):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www, and a fresh torch hub cache."""
    import functools
    import http.server
    import threading
    root = tmp_path / 'www'
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'hub'))
    try:
        yield root, f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        torch.hub.set_dir(hub_dir)
        server.shutdown()
        server.server_close()


def test_two_urls_with_the_same_file_name_give_their_own_weights(http_server):
    root, base = http_server
    models = []
    for repo in ('a', 'b'):  # Hugging Face's layout: .../<repo>/model.safetensors
        (root / repo).mkdir()
        source = tiny_model()
        source.init_weights()
        save_file(source.state_dict(), str(root / repo / 'model.safetensors'))
        models.append(source)
    for repo, source in zip(('a', 'b'), models):
        loaded = tiny_model(init_cfg=dict(type='Pretrained',
                                          checkpoint=f'{base}/{repo}/model.safetensors'))
        loaded.init_weights()
        for key, value in source.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), (repo, key)
    assert not torch.equal(models[0].stem.conv1.weight, models[1].stem.conv1.weight)


def test_a_url_checkpoint_is_read_safely(http_server, tmp_path):
    root, base = http_server
    marker = tmp_path / 'pwned'
    torch.save({'state_dict': tiny_model().state_dict(), 'x': Touch(str(marker))},
               root / 'evil.pth')
    with pytest.raises(UnsafeCheckpointError, match='refusing to load'):
        tiny_model(init_cfg=dict(type='Pretrained', checkpoint=f'{base}/evil.pth')).init_weights()
    assert not marker.exists()
    # mmengine's own URL path (load_from, openmmlab:// and torchvision:// resolve to it) too
    from mmengine.runner import CheckpointLoader
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(f'{base}/evil.pth', map_location='cpu')
    assert not marker.exists()


def test_safe_loading_is_installed_once_and_can_be_undone(tmp_path):
    from mmengine.runner import CheckpointLoader, checkpoint

    from mmcoatnet import safe_load
    assert not safe_load.mmengine_loads_weights_only()  # mmengine 0.10.7: torch.load as is
    assert CheckpointLoader._schemes[''] is safe_load.load_local_checkpoint
    assert safe_load.install_safe_checkpoint_loading()  # a second call changes nothing
    marker = tmp_path / 'pwned'
    torch.save({'x': Touch(str(marker))}, tmp_path / 'evil.pth')
    safe_load.uninstall_safe_checkpoint_loading()
    try:
        assert CheckpointLoader._schemes[''] is checkpoint.load_from_local
        assert checkpoint.load_url is not safe_load.load_url_checkpoint
    finally:
        safe_load.install_safe_checkpoint_loading()
    assert CheckpointLoader._schemes[''] is safe_load.load_local_checkpoint
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'evil.pth'))
    assert not marker.exists()
