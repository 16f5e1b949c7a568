"""The published anchors of the DINO and Mask2Former recipes, read from the metafiles that mmdet and
mmseg ship inside their installed packages, into docs/results/published_results.json.

    python tools/dev/published_from_metafiles.py [--check]

Each row of ANCHORS names a model of a library's metafile; its figures are read, never typed. The
rows this tool owns (``source`` starting with 'metafile:') are replaced; the others (the READMEs'
Swin and ConvNeXt results) are kept. --check compares instead of writing and exits 1 on a
difference (tests/test_docs.py runs it).
"""
import argparse
import json
import os.path as osp
import sys

import yaml
from mmengine.utils import get_installed_path

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RESULTS = osp.join(ROOT, 'docs', 'results', 'published_results.json')
METAFILES = {'mmdet': ('configs/dino/metafile.yml', 'configs/mask2former/metafile.yml'),
             'mmseg': ('configs/mask2former/metafile.yaml',)}
# the metafiles' metric names -> published_results.json's keys
METRICS = {'box AP': 'box_ap', 'mask AP': 'mask_ap', 'mIoU': 'miou'}
# (library, model name in its metafile, protocol, backbone, size class, what differs from the
# recipes' protocol, or None)
ANCHORS = [
    ('mmdet', 'dino-4scale_r50_8xb2-12e_coco', 'dino_12e', 'R-50', 'T', None),
    ('mmdet', 'dino-5scale_swin-l_8xb2-12e_coco', 'dino_12e', 'Swin-L', 'L',
     '5 scales, ImageNet-22k pre-training at 384'),
    ('mmdet', 'dino-5scale_swin-l_8xb2-36e_coco', 'dino_36e', 'Swin-L', 'L',
     '5 scales, 36 epochs, ImageNet-22k pre-training at 384'),
    ('mmseg', 'mask2former_swin-t_8xb2-160k_ade20k-512x512', 'mask2former_ade20k', 'Swin-T', 'T',
     None),
    ('mmseg', 'mask2former_swin-s_8xb2-160k_ade20k-512x512', 'mask2former_ade20k', 'Swin-S', 'S',
     None),
    ('mmseg', 'mask2former_swin-b-in1k-384x384-pre_8xb2-160k_ade20k-640x640',
     'mask2former_ade20k', 'Swin-B', 'B', '640x640 crops, ImageNet-1k pre-training at 384'),
    ('mmdet', 'mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco', 'mask2former_coco', 'Swin-T', 'T',
     None),
    ('mmdet', 'mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco', 'mask2former_coco', 'Swin-S', 'S',
     None),
]


def metafile_models(library: str) -> dict:
    """name -> (model entry, metafile path relative to the package) of a library's metafiles."""
    package = get_installed_path({'mmseg': 'mmseg', 'mmdet': 'mmdet'}[library])
    models = {}
    for relative in METAFILES[library]:
        with open(osp.join(package, '.mim', relative)) as f:
            for model in yaml.safe_load(f)['Models']:
                models[model['Name']] = (model, relative)
    return models


def anchor_rows() -> list:
    """published_results.json's rows of ANCHORS, their figures from the metafiles."""
    models = {library: metafile_models(library) for library in METAFILES}
    rows = []
    for library, name, protocol, backbone, size_class, differs in ANCHORS:
        model, relative = models[library][name]
        row = dict(protocol=protocol, backbone=backbone, **{'class': size_class})
        results = model['Results']  # mmseg's metafiles give one result as a mapping
        for result in [results] if isinstance(results, dict) else results:
            for metric, value in result['Metrics'].items():
                if metric in METRICS:
                    row[METRICS[metric]] = value
        row.update(params_m=None, gflops=None, source=f'metafile:{library}:{relative}:{name}')
        if differs:
            row['differs'] = differs
        rows.append(row)
    return rows


def updated(report: dict) -> dict:
    import mmdet
    import mmseg
    kept = [r for r in report['results'] if not r['source'].startswith('metafile:')]
    report = dict(report, results=kept + anchor_rows())
    report['sources'] = dict(report['sources'], **{
        'metafile': f'the metafiles installed with mmdet {mmdet.__version__} and mmseg '
                    f'{mmseg.__version__} (<package>/.mim/<path>), read by '
                    'tools/dev/published_from_metafiles.py; they give no params or FLOPs'})
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--check', action='store_true', help='compare, write nothing')
    args = parser.parse_args()
    with open(RESULTS) as f:
        report = json.load(f)
    new = updated(report)
    if args.check:
        if new != report:
            print(f'{RESULTS} differs from the installed metafiles: run '
                  'python tools/dev/published_from_metafiles.py', file=sys.stderr)
            return 1
        return 0
    with open(RESULTS, 'w') as f:
        json.dump(new, f, indent=1)
        f.write('\n')
    print(f'{len(ANCHORS)} rows from the metafiles in {RESULTS}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
