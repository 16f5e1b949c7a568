"""ONNX export (mmcoatnet/deployment/onnx_export.py, tools/deployment/pytorch2onnx.py): one file
per model runs
in onnxruntime at sizes other than the traced one, odd ones included, and matches PyTorch; the whole
Mask R-CNN through mmdeploy (tools/deployment/mmdeploy_export.py) likewise."""
import json

import numpy as np
import onnx
import onnxruntime  # noqa: F401  (the deploy extra: tools/install.sh installs it)
import pytest
import torch
import torch.nn as nn

from mmcoatnet.deployment.onnx_export import (
    MIN_OPSET,
    TraceableAdaptiveAvgPool2d,
    adaptive_pool_matrix,
    build_export_model,
    check_export_options,
    compare_with_torch,
    export_onnx,
    max_opset,
    onnx_session,
    run_onnx,
)
from mmcoatnet.torch_compat import DYNAMO_ONNX_EXPORT
from mmcoatnet.utils.cli import load_config

from helpers import TOY_DET, TOY_DINO, TOY_MASK2FORMER, TOY_SEG, needs_torch, run_tool

# none a multiple of 32, and none the size the files are traced at (64x96)
SIZES = [(97, 61), (224, 224), (333, 517)]
WINDOWED = {'model.backbone.window_attention': dict(window_size=4)}


def exported(tmp_path_factory, config, what, cfg_options=None, exporter='torchscript'):
    torch.manual_seed(0)
    model = build_export_model(load_config(config, cfg_options), what)
    path = str(tmp_path_factory.mktemp('onnx') / f'{what}.onnx')
    export_onnx(model, path, shape=(64, 96), exporter=exporter)
    return model, path


@pytest.fixture(scope='module')
def toy_features(tmp_path_factory):
    return exported(tmp_path_factory, TOY_DET, 'backbone')


@pytest.fixture(scope='module')
def toy_windowed_features(tmp_path_factory):
    return exported(tmp_path_factory, TOY_DET, 'backbone', WINDOWED)


@pytest.fixture(scope='module')
def toy_segmentor(tmp_path_factory):
    return exported(tmp_path_factory, TOY_SEG, 'segmentor')


@pytest.mark.parametrize('fixture', ['toy_features', 'toy_windowed_features', 'toy_segmentor'])
def test_one_file_matches_pytorch_at_every_size(fixture, request):
    model, path = request.getfixturevalue(fixture)
    check_every_size(model, path, segmentor=fixture == 'toy_segmentor')


def check_every_size(model, path, segmentor):
    session = onnx_session(path)
    for size in SIZES:
        result = compare_with_torch(model, session, size, batch=2 if size == (97, 61) else 1)
        assert max(result['max_abs_diff']) < 1e-4, (size, result)
    # the maps follow the run-time size: ceil-halving strides 4..64 for FPN, the image for UperNet
    if segmentor:
        assert result['output_shapes'] == [[1, 4, 333, 517]]  # background and 3 shapes
    else:
        assert [s[2:] for s in result['output_shapes']] == [
            [84, 130], [42, 65], [21, 33], [11, 17], [6, 9]]


@pytest.mark.slow
@pytest.mark.parametrize('config, what', [(TOY_DINO, 'backbone'), (TOY_MASK2FORMER, 'segmentor')],
                         ids=['dino-features', 'mask2former-segmentor'])
def test_query_head_models_export_at_any_size(tmp_path_factory, config, what):
    """DINO's backbone + ChannelMapper (named by running it: ChannelMapper has no num_outs) and the
    whole Mask2Former segmentor, mmcv's deformable attention in the graph, one file each."""
    model, path = exported(tmp_path_factory, config, what)
    session = onnx_session(path)
    for size in SIZES[1:]:
        result = compare_with_torch(model, session, size, batch=1)
        assert max(result['max_abs_diff']) < 1e-4, (size, result)
    if what == 'segmentor':
        assert result['output_shapes'] == [[1, 4, 333, 517]]  # background and 3 shapes
    else:  # S2-S4 and the neck's extra level: strides 8-64
        assert [s[2:] for s in result['output_shapes']] == [[42, 65], [21, 33], [11, 17], [6, 9]]


def test_windowed_backbone_is_windowed(toy_windowed_features):
    model, _ = toy_windowed_features
    windows = [getattr(block.attn, 'window_size', None)
               for block in model.detector.backbone.stages[2].blocks]
    assert (4, 4) in windows


def test_batch_height_and_width_are_graph_inputs(toy_features):
    graph = onnx.load(toy_features[1], load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ['batch', 3, 'height', 'width']
    # every Resize (bias tables, FPN upsampling) takes its target size from the graph, none baked
    constants = {i.name for i in graph.initializer} | {
        out for node in graph.node if node.op_type == 'Constant' for out in node.output}
    resizes = [node for node in graph.node if node.op_type == 'Resize']
    cubic = [node for node in resizes if any(a.s == b'cubic' for a in node.attribute)]
    assert len(cubic) == 5  # one per attention block: coatnet-pico has 3 in S3, 2 in S4
    assert all(len(node.input) == 4 and node.input[3] not in constants for node in resizes)


@pytest.mark.slow
@needs_torch(DYNAMO_ONNX_EXPORT, 'the dynamo ONNX exporter')
def test_dynamo_export_takes_any_batch_and_size(tmp_path_factory):
    """Through torch.export, traced at batch 1: windowed S3 blocks and global ones, UperNet's
    pyramid pooling and resizes; one file for batch 1 and 2 and sizes it never saw."""
    model, path = exported(tmp_path_factory, TOY_SEG, 'segmentor', WINDOWED, exporter='dynamo')
    check_every_size(model, path, segmentor=True)
    graph = onnx.load(path, load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]  # traced at batch 1
    assert dims[1].dim_value == 3


def test_float16_file_runs_in_onnxruntime_near_float32(tmp_path):
    """--fp16: float16 weights and computation, float32 image in and maps out; within 0.5% of the
    largest value of PyTorch's float32 maps (measured: about 0.1%)."""
    out, record = tmp_path / 'fp16.onnx', tmp_path / 'fp16.json'
    run_tool('tools/deployment/pytorch2onnx.py', TOY_DET, '--out', str(out), '--exporter',
             'torchscript', '--fp16', '--shape', '64', '96', '--verify-sizes', '97x61', '224x224',
             '--repeat', '1', '--record', str(record))
    graph = onnx.load(str(out)).graph
    float16 = onnx.TensorProto.FLOAT16
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert sum(init.data_type == float16 for init in graph.initializer) > 0.9 * len(
        [init for init in graph.initializer if init.data_type in (float16, onnx.TensorProto.FLOAT)])
    (entry,) = json.loads(record.read_text())
    assert entry['float16'] and entry['export_seconds'] > 0 and entry['repeat'] == 1
    for result in entry['results']:
        assert result['torch_seconds'] > 0 and result['onnxruntime_seconds'] > 0
        for diff, largest in zip(result['max_abs_diff'], result['max_abs_value']):
            assert 0 < diff < 5e-3 * largest, result


def test_images_below_32_are_refused(toy_features):
    model, path = toy_features
    with pytest.raises(ValueError, match='at least 32'):
        model(torch.zeros(1, 3, 31, 64))
    with pytest.raises(ValueError, match=r'at least 32 .*got shape \(1, 3, 31, 64\)'):
        run_onnx(onnx_session(path), np.zeros((1, 3, 31, 64), np.float32))


def test_adaptive_pool_matrix_bins():
    # 5 positions into 3 bins: [0, 2), [1, 4), [3, 5)
    expected = torch.tensor([[1 / 2, 1 / 2, 0, 0, 0], [0, 1 / 3, 1 / 3, 1 / 3, 0],
                             [0, 0, 0, 1 / 2, 1 / 2]])
    assert torch.allclose(adaptive_pool_matrix(5, 3), expected)


@pytest.mark.parametrize('size', [(7, 9), (13, 3), (1, 2), (6, 6)])
def test_traceable_adaptive_pool_equals_torch(size):
    x = torch.randn(2, 4, *size)
    for bins in (1, 2, 3, 6):
        torch.testing.assert_close(TraceableAdaptiveAvgPool2d(bins)(x),
                                   nn.AdaptiveAvgPool2d(bins)(x))


@pytest.mark.parametrize('what, opset, scope, message', [
    ('neck', 17, None,
     r"--what 'neck' is not supported; choose one of \['backbone', 'segmentor'\]"),
    ('backbone', MIN_OPSET - 1, None, r'--opset 10 is not supported \(too old: ONNX Resize .*'
                                      r'choose an opset from 11 to'),
    ('backbone', max_opset() + 1, None, 'choose an opset from 11'),
    ('segmentor', 17, 'mmdet', "default_scope is 'mmdet'; for this config use --what backbone"),
])
def test_unsupported_options_are_named(what, opset, scope, message):
    with pytest.raises(ValueError, match=message):
        check_export_options(what, opset, scope)


def test_dynamo_exporter_options_are_named():
    with pytest.raises(ValueError, match='--opset 17 is below the 18 the dynamo exporter writes'):
        check_export_options('backbone', 17, exporter='dynamo')
    with pytest.raises(ValueError, match=r"--exporter 'jit' is not supported; choose one of "):
        check_export_options('backbone', 17, exporter='jit')


def test_the_tool_refuses_an_unsupported_option(tmp_path):
    out = tmp_path / 'x.onnx'
    result = run_tool('tools/deployment/pytorch2onnx.py', TOY_SEG, '--out', str(out), '--what',
                      'backbone', check=False)
    assert result.returncode != 0 and not out.exists()
    assert "default_scope is 'mmseg'; for this config use --what segmentor" in result.stderr
    assert 'Traceback' not in result.stderr


def test_mmdeploy_export_says_how_to_install_it_when_missing(tmp_path):
    env = dict(MMCOATNET_MMDEPLOY_SITE=str(tmp_path / 'nowhere'))
    result = run_tool('tools/deployment/mmdeploy_export.py', TOY_DET, '--work-dir', str(tmp_path),
                      check=False, env=env)
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert 'mmdeploy 1.3.1 is not importable' in result.stderr
    assert f'--target {tmp_path / "nowhere"} --no-deps -c requirements-lock.txt mmdeploy==1.3.1' \
        in result.stderr


@pytest.mark.slow
def test_mmdeploy_mask_rcnn_matches_pytorch_at_other_sizes(tmp_path):
    """The whole toy Mask R-CNN through mmdeploy (image to boxes, labels, masks), traced on one
    image
    (160x160 into the network), run by ONNX Runtime on images the test pipeline brings to 160x101,
    103x160 and 96x160, against mmdet in PyTorch with the RPN's NMS across FPN levels as mmdeploy's
    graph runs it. Unpadded inputs, so that both clip boxes to the same edges."""
    record = tmp_path / 'mmdeploy.json'
    run_tool('tools/deployment/mmdeploy_export.py', TOY_DET, '--work-dir', str(tmp_path),
             '--verify-sizes', '97x61', '333x517', '120x200', '--record', str(record),
             '--cfg-options', 'model.data_preprocessor.pad_size_divisor=1')
    results = json.loads(record.read_text())['results']
    assert [r['network_input'] for r in results] == [[160, 101], [103, 160], [96, 160]]
    for result in results:
        same = result['mmdet_rpn_nms_across_levels']
        assert same['pytorch_detections'] == same['backend_detections'] > 0
        assert same['unmatched'] == 0 and same['min_box_iou'] > 0.999, result
        assert same['max_score_diff'] < 1e-4 and same['max_mask_pixel_diff'] < 1e-3, result
        # against mmdet's per-level RPN NMS the proposals, so some boxes, differ
        assert result['mmdet']['pytorch_detections'] == same['backend_detections']
