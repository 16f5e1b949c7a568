"""Make the built-in toy datasets, deterministically from a seed; nothing is downloaded.

    python tools/make_toy_data.py [--out data] [--seed 0] [--num-train 300] [--num-val 60] [--size
    160]
                                  [--cls-train 300] [--cls-val 60] [--cls-size 64]
                                  [--only coco|ade|cls] [--layout toy|real]

Writes
  <out>/toy_coco/{train,val}/*.jpg, <out>/toy_coco/annotations/instances_{train,val}.json
      instance segmentation in COCO format: circles, squares and triangles of random colours on
      textured backgrounds, occluding one another (masks are the visible parts, as polygons);
  <out>/toy_ade/images/{training,validation}/*.jpg,
  <out>/toy_ade/annotations/{training,validation}/*.png
      semantic segmentation in ADE20K's folder layout: 0 = unlabelled (ignored with
      reduce_zero_label), 1 = background, 2-4 = the three shape classes;
  <out>/toy_cls/{train,val}/{circle,square,triangle}/*.png
      image classification in mmpretrain's CustomDataset layout (classes are the folder names):
      one shape of a random colour on a textured background, --cls-train / --cls-val images per
      class, --cls-size pixels square. Drawn from its own random stream, so adding it left the
      detection and segmentation sets of a seed unchanged.

--layout real writes the same scenes as the real datasets are laid out, so the shipped recipes run
on them unchanged (their data_root is data/coco/ and data/ade/ADEChallengeData2016):
  <out>/coco/{train2017,val2017}/<12-digit id>.jpg,
  <out>/coco/annotations/instances_{train,val}2017.json
      with COCO's 80 categories, named and numbered as COCO's; the shapes are 'sports ball',
      'book' and 'kite' (ids 37, 84, 38);
  <out>/ade/ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_{train,val}_<8
  digits>
      label values in ADE20K's range: 0 unlabelled, the background 'wall' (1), the shapes
      'clock', 'painting' and 'flag' (149, 23, 150).
"""
import argparse
import json
import os
import os.path as osp

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('background',) + CLASSES
# COCO 2017's 80 categories and their ids (1-90 with gaps), as instances_*2017.json lists them
COCO_CATEGORIES = (
    (1, 'person'), (2, 'bicycle'), (3, 'car'), (4, 'motorcycle'), (5, 'airplane'), (6, 'bus'),
    (7, 'train'), (8, 'truck'), (9, 'boat'), (10, 'traffic light'), (11, 'fire hydrant'),
    (13, 'stop sign'), (14, 'parking meter'), (15, 'bench'), (16, 'bird'), (17, 'cat'), (18, 'dog'),
    (19, 'horse'), (20, 'sheep'), (21, 'cow'), (22, 'elephant'), (23, 'bear'), (24, 'zebra'),
    (25, 'giraffe'), (27, 'backpack'), (28, 'umbrella'), (31, 'handbag'), (32, 'tie'),
    (33, 'suitcase'), (34, 'frisbee'), (35, 'skis'), (36, 'snowboard'), (37, 'sports ball'),
    (38, 'kite'), (39, 'baseball bat'), (40, 'baseball glove'), (41, 'skateboard'),
    (42, 'surfboard'), (43, 'tennis racket'), (44, 'bottle'), (46, 'wine glass'), (47, 'cup'),
    (48, 'fork'), (49, 'knife'), (50, 'spoon'), (51, 'bowl'), (52, 'banana'), (53, 'apple'),
    (54, 'sandwich'), (55, 'orange'), (56, 'broccoli'), (57, 'carrot'), (58, 'hot dog'),
    (59, 'pizza'), (60, 'donut'), (61, 'cake'), (62, 'chair'), (63, 'couch'), (64, 'potted plant'),
    (65, 'bed'), (67, 'dining table'), (70, 'toilet'), (72, 'tv'), (73, 'laptop'), (74, 'mouse'),
    (75, 'remote'), (76, 'keyboard'), (77, 'cell phone'), (78, 'microwave'), (79, 'oven'),
    (80, 'toaster'), (81, 'sink'), (82, 'refrigerator'), (84, 'book'), (85, 'clock'), (86, 'vase'),
    (87, 'scissors'), (88, 'teddy bear'), (89, 'hair drier'), (90, 'toothbrush'))
# folder and file names, and the category id (COCO) or label value (ADE20K) of each toy class
LAYOUTS = dict(
    toy=dict(coco_dir='toy_coco', coco_split='{split}', coco_file='{index:05d}.jpg',
             coco_ids=(1, 2, 3), coco_first_id=dict(train=0, val=0),
             ade_dir='toy_ade', ade_file='toy_{split}_{index:05d}', ade_values=(1, 2, 3, 4)),
    real=dict(coco_dir='coco', coco_split='{split}2017', coco_file='{image_id:012d}.jpg',
              coco_ids=(37, 84, 38), coco_first_id=dict(train=1, val=1_000_001),
              ade_dir=osp.join('ade', 'ADEChallengeData2016'),
              ade_file='ADE_{short}_{number:08d}', ade_values=(1, 149, 23, 150)))


def textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour gradient plus blurred noise, so the background is not a flat colour."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(40, 200, 3)
    slope = rng.uniform(-60, 60, (2, 3))
    image = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
    noise = cv2.GaussianBlur(rng.normal(0, 25, (size, size, 3)).astype(np.float32), (0, 0), 2)
    return np.clip(image + noise, 0, 255)


def draw_shape(rng: np.random.Generator, size: int, label: int,
               radius_range=(0.08, 0.2)) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    radius = int(rng.uniform(*radius_range) * size)
    cx, cy = (int(v) for v in rng.uniform(radius, size - radius, 2))
    if CLASSES[label] == 'circle':
        cv2.circle(mask, (cx, cy), radius, 1, -1)
    elif CLASSES[label] == 'square':
        angle = rng.uniform(0, 90)
        box = cv2.boxPoints(((cx, cy), (2 * radius * 0.85, 2 * radius * 0.85), angle))
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    else:
        start = rng.uniform(0, 2 * np.pi)
        angles = start + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def make_scene(rng: np.random.Generator, size: int):
    """An image and its objects [(label, visible mask)], later shapes occluding earlier ones."""
    image = textured_background(rng, size)
    labels, masks = [], []
    for _ in range(rng.integers(1, 5)):
        label = int(rng.integers(len(CLASSES)))
        mask = draw_shape(rng, size, label)
        colour = rng.uniform(0, 255, 3)
        shade = rng.normal(0, 12, (size, size, 1))
        image[mask] = np.clip(colour + shade[mask], 0, 255)
        masks = [m & ~mask for m in masks]
        labels.append(label)
        masks.append(mask)
    objects = [(label, mask) for label, mask in zip(labels, masks) if mask.sum() >= 40]
    return image.astype(np.uint8), objects


def make_object_image(rng: np.random.Generator, size: int, label: int) -> np.ndarray:
    """One shape of class ``label``, large enough to read at 64x64, on a textured background."""
    image = textured_background(rng, size)
    mask = draw_shape(rng, size, label, radius_range=(0.25, 0.45))
    under = image[mask].mean(0)
    colour = rng.uniform(0, 255, 3)
    while np.abs(colour - under).mean() < 60:  # the outline must be visible: a class is its shape
        colour = rng.uniform(0, 255, 3)
    shade = rng.normal(0, 12, (size, size, 1))
    image[mask] = np.clip(colour + shade[mask], 0, 255)
    return image.astype(np.uint8)


def polygons(mask: np.ndarray):
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.flatten().astype(float).tolist() for c in contours if len(c) >= 3]


def write_coco(root: str, split: str, count: int, rng: np.random.Generator, size: int,
               layout: dict = LAYOUTS['toy']):
    folder = layout['coco_split'].format(split=split)
    os.makedirs(osp.join(root, folder), exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        image, objects = make_scene(rng, size)
        image_id = layout['coco_first_id'][split] + index
        name = layout['coco_file'].format(index=index, image_id=image_id)
        cv2.imwrite(osp.join(root, folder, name), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append(dict(id=image_id, file_name=name, height=size, width=size))
        for label, mask in objects:
            segmentation = polygons(mask)
            if not segmentation:
                continue
            ys, xs = np.nonzero(mask)
            x0, y0 = float(xs.min()), float(ys.min())
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id,
                category_id=layout['coco_ids'][label], iscrowd=0,
                segmentation=segmentation, area=float(mask.sum()),
                bbox=[x0, y0, float(xs.max()) + 1 - x0, float(ys.max()) + 1 - y0]))
    if layout is LAYOUTS['real']:
        categories = [dict(id=i, name=name, supercategory='') for i, name in COCO_CATEGORIES]
    else:
        categories = [dict(id=i + 1, name=name) for i, name in enumerate(CLASSES)]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    with open(osp.join(root, 'annotations', f'instances_{folder}.json'), 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return len(images), len(annotations)


def write_ade(root: str, split: str, count: int, rng: np.random.Generator, size: int,
              layout: dict = LAYOUTS['toy']):
    image_dir, ann_dir = osp.join(root, 'images', split), osp.join(root, 'annotations', split)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    values = layout['ade_values']  # background, then the shapes
    for index in range(count):
        image, objects = make_scene(rng, size)
        label_map = np.full((size, size), values[0], np.uint8)
        for label, mask in objects:
            label_map[mask] = values[label + 1]
        name = layout['ade_file'].format(split=split, index=index, number=index + 1,
                                         short='train' if split == 'training' else 'val')
        cv2.imwrite(osp.join(image_dir, name + '.jpg'), image[..., ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(osp.join(ann_dir, name + '.png'), label_map)
    return count


def write_cls(root: str, split: str, per_class: int, rng: np.random.Generator, size: int):
    for name in CLASSES:
        os.makedirs(osp.join(root, split, name), exist_ok=True)
    # classes interleaved, so a partial prefix of the stream is still balanced
    for index in range(per_class):
        for label, name in enumerate(CLASSES):
            image = make_object_image(rng, size, label)
            cv2.imwrite(osp.join(root, split, name, f'{index:05d}.png'), image[..., ::-1])
    return per_class * len(CLASSES)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=300)
    parser.add_argument('--num-val', type=int, default=60)
    parser.add_argument('--size', type=int, default=160)
    parser.add_argument('--cls-train', type=int, default=300,
                        help='classification: training images per class')
    parser.add_argument('--cls-val', type=int, default=60,
                        help='classification: validation images per class')
    parser.add_argument('--cls-size', type=int, default=64, help='classification image side')
    parser.add_argument('--only', choices=['coco', 'ade', 'cls'], help='make one of the datasets')
    parser.add_argument('--layout', choices=sorted(LAYOUTS), default='toy',
                        help="'real': COCO 2017's and ADE20K's own folders, names and classes")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    layout = LAYOUTS[args.layout]
    rng = np.random.default_rng(args.seed)
    if args.only in (None, 'coco'):
        root = osp.join(args.out, layout['coco_dir'])
        for split, count in (('train', args.num_train), ('val', args.num_val)):
            n_img, n_ann = write_coco(root, split, count, rng, args.size, layout)
            print(f'{root}: {split} {n_img} images, {n_ann} instances')
    if args.only in (None, 'ade'):
        root = osp.join(args.out, layout['ade_dir'])
        for split, count in (('training', args.num_train), ('validation', args.num_val)):
            print(f'{root}: {split} {write_ade(root, split, count, rng, args.size, layout)} images')
    if args.only in (None, 'cls') and args.layout == 'toy':
        # a stream of its own: the detection and segmentation sets stay as they were for a seed
        cls_rng = np.random.default_rng([args.seed, 1])
        root = osp.join(args.out, 'toy_cls')
        for split, count in (('train', args.cls_train), ('val', args.cls_val)):
            print(f'{root}: {split} {write_cls(root, split, count, cls_rng, args.cls_size)} images')


if __name__ == '__main__':
    main()
