"""Draw a trained model's predictions on a few validation images, as PNG files.

    python tools/draw_predictions.py CONFIG CHECKPOINT [--out DIR] [--num 6] [--score-thr 0.5]
                                     [--cfg-options K=V ...]

Uses the libraries' own inference APIs (mmdet: init_detector / inference_detector; mmseg:
init_model / inference_model) and visualizers, chosen by the config's default_scope. Left of each
picture: the ground truth; right: the prediction.
"""
import argparse
import os
import os.path as osp

import mmcv
from mmengine.config import Config

import mmcoatnet  # noqa: F401  (registers CoAtNet, safe checkpoint loading)
from mmcoatnet.utils.cli import add_cfg_options_argument, load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', default=None,
                        help='output folder (default: next to the checkpoint)')
    parser.add_argument('--num', type=int, default=6, help='how many validation images')
    parser.add_argument('--score-thr', type=float, default=0.5)
    parser.add_argument('--device', default='cpu')
    add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def validation_items(cfg: Config, num: int):
    """(image path, ground-truth sample or None) for the first `num` validation images."""
    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope(cfg.default_scope)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    for index in range(min(num, len(dataset))):
        sample = dataset[index]['data_samples']
        yield sample.img_path, sample


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    cfg.model.backbone.init_cfg = None  # every weight comes from the trained checkpoint
    out = args.out or osp.join(osp.dirname(args.checkpoint), 'predictions')
    os.makedirs(out, exist_ok=True)
    if cfg.default_scope == 'mmdet':
        from mmdet.apis import inference_detector, init_detector
        from mmdet.registry import VISUALIZERS
        model = init_detector(cfg, args.checkpoint, device=args.device)
        infer = inference_detector
    else:
        from mmseg.apis import inference_model, init_model
        from mmseg.registry import VISUALIZERS
        model = init_model(cfg, args.checkpoint, device=args.device)
        infer = inference_model
    visualizer = VISUALIZERS.build(dict(cfg.visualizer, name='draw_predictions', vis_backends=None))
    visualizer.dataset_meta = model.dataset_meta
    written = []
    for img_path, gt_sample in validation_items(cfg, args.num):
        result = infer(model, img_path)
        if gt_sample is not None and cfg.default_scope == 'mmdet':
            gt = gt_sample.gt_instances
            gt.bboxes = getattr(gt.bboxes, 'tensor', gt.bboxes)  # box type -> plain tensor
            result.gt_instances = gt
        elif gt_sample is not None:
            result.gt_sem_seg = gt_sample.gt_sem_seg
        image = mmcv.imread(img_path, channel_order='rgb')
        path = osp.join(out, osp.splitext(osp.basename(img_path))[0] + '.png')
        kwargs = dict(pred_score_thr=args.score_thr) if cfg.default_scope == 'mmdet' else {}
        visualizer.add_datasample(osp.basename(img_path), image, data_sample=result,
                                  draw_gt=True, show=False, out_file=path, **kwargs)
        written.append(path)
    names = ', '.join(sorted(map(osp.basename, written)))
    print(f'drew {len(written)} predictions into {out}/ ({names})')


if __name__ == '__main__':
    main()
