"""What the measuring tools derive from what they measured, one function per figure, so that the
figure is written into the results file beside what it comes from and the docs only format it:

- :func:`card_fit`: the card a simulated training step fits (``train_memory.py --simulate cuda``);
- :func:`gpu_hours`: the GPU-hours of a config's training from its forward MACs (``get_flops.py``),
  with :func:`training_images` reading the schedule from the config.

Both are estimates, not measurements: the margin of the first and the throughput of the second are
assumptions, named in what they return. Standard library only.
"""
import os.path as osp
from typing import Optional, Sequence, Tuple

from .flops import FLOPS_PER_MAC

# What a real CUDA run holds beyond its tensors' peak (the simulated figure), added before
# comparing with a card: the caching allocator's rounding and fragmentation (reserved over
# allocated), as a fraction of the peak, and a fixed part for the CUDA context (about 300-400 MB
# with lazy module loading, pytorch/pytorch#107667 and #109888) and cuBLAS / cuDNN workspaces.
CUDA_MARGIN_FRACTION = 0.20
CUDA_MARGIN_FIXED_BYTES = 1 << 30
# cards as sold, in decimal GB: each holds a little more than this (a 16 GB V100 reports 15.8 GiB)
CARD_SIZES_GB = (16, 24, 40, 80)

# Sustained training throughput per GPU that the GPU-hours assume: a rough guess, not calibrated
# against any GPU run (no GPU has been available to this project; docs/recipes.md#gpu-hours)
ASSUMED_TFLOPS = 30
# a training step costs the forward and a backward of twice the forward: 3x the forward MACs
TRAINING_MACS_PER_FORWARD_MAC = 3
# the GPUs the protocols train on (8 GPUs x 2 images): an iteration's images, and the wall time
PROTOCOL_GPUS = 8
# images of the training sets the protocols read, by annotation file (an epoch's images)
TRAIN_SET_IMAGES = {'instances_train2017.json': 118287}  # COCO train2017

GPU_HOURS_NOTE = ('an estimate at an assumed throughput, not a measurement: training images x '
                  '{factor} x forward MACs / ({tflops} TFLOP/s x 3600 s); the throughput is a '
                  'rough guess, not calibrated against any GPU run')


def card_fit(peak_bytes: int, fraction: float = CUDA_MARGIN_FRACTION,
             fixed_bytes: int = CUDA_MARGIN_FIXED_BYTES,
             card_sizes_gb: Sequence[int] = CARD_SIZES_GB) -> dict:
    """What a GPU needs for a simulated peak of ``peak_bytes``, with the margin (``fraction`` of the
    peak and ``fixed_bytes``), and which cards hold that: ``needed_bytes``, ``smallest_card_gb``
    (None above the largest) and ``cards_gb`` (every card size that holds it, decimal GB)."""
    needed = int(peak_bytes * (1 + fraction)) + fixed_bytes
    cards = [size for size in card_sizes_gb if needed <= size * 10 ** 9]
    return dict(needed_bytes=needed, smallest_card_gb=cards[0] if cards else None, cards_gb=cards)


def _train_dataset(cfg):
    dataset = cfg['train_dataloader']['dataset']
    while 'ann_file' not in dataset and isinstance(dataset.get('dataset'), dict):
        dataset = dataset['dataset']  # RepeatDataset, ClassBalancedDataset, ...
    return dataset


def training_images(cfg) -> Optional[Tuple[int, str]]:
    """The images a config's schedule trains on, and how they were counted: epochs x the training
    set's images (an annotation file of :data:`TRAIN_SET_IMAGES`), or iterations x
    :data:`PROTOCOL_GPUS` x the dataloader's batch. None when the schedule or the set is unknown."""
    loop, batch = cfg.get('train_cfg') or {}, cfg['train_dataloader']['batch_size']
    if 'max_iters' in loop:
        images = loop['max_iters'] * PROTOCOL_GPUS * batch
        return images, (f"{loop['max_iters']} iterations x {PROTOCOL_GPUS} GPUs x {batch} "
                        'images')
    if 'max_epochs' in loop:
        ann_file = osp.basename(_train_dataset(cfg).get('ann_file') or '')
        if ann_file in TRAIN_SET_IMAGES:
            epoch = TRAIN_SET_IMAGES[ann_file]
            return loop['max_epochs'] * epoch, (f"{loop['max_epochs']} epochs x {epoch} images "
                                                f'({ann_file})')
    return None


def gpu_hours(macs: int, images: int, schedule: str = '', tflops: float = ASSUMED_TFLOPS,
              gpus: int = PROTOCOL_GPUS) -> dict:
    """GPU-hours of training on ``images`` images with ``macs`` forward MACs an image, at the
    assumed sustained throughput ``tflops``, and the hours on ``gpus`` GPUs; ``note`` says it is an
    estimate and how it is made."""
    factor = TRAINING_MACS_PER_FORWARD_MAC * FLOPS_PER_MAC
    hours = images * factor * macs / (tflops * 1e12 * 3600)
    return dict(note=GPU_HOURS_NOTE.format(factor=factor, tflops=tflops),
                assumed_tflops=tflops, training_flops_per_mac=factor, training_images=images,
                schedule=schedule, gpu_hours=hours, gpus=gpus, hours_on_gpus=hours / gpus)
