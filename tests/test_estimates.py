"""mmcoatnet/analysis/estimates.py: the figures the measuring tools derive and write into their
results files (the card a simulated step fits, the GPU-hours of a schedule), and the results files
under docs/results/ holding exactly what those functions derive from what the files recorded, so
that tools/dev/docs_tables.py has nothing left to compute."""
import glob
import json
import os.path as osp

import pytest
from mmengine.config import Config

from mmcoatnet.analysis.estimates import (
    ASSUMED_TFLOPS,
    CARD_SIZES_GB,
    PROTOCOL_GPUS,
    card_fit,
    gpu_hours,
    training_images,
)

from helpers import ROOT

RESULTS = osp.join(ROOT, 'docs', 'results')
CUDA_SIMULATIONS = sorted(glob.glob(osp.join(RESULTS, 'train_memory_simulated_cuda_*.json')))


def test_card_fit_adds_the_margin_and_names_every_card_that_holds_it():
    fit = card_fit(10 * 10 ** 9, fraction=0.2, fixed_bytes=10 ** 9)
    assert fit['needed_bytes'] == 13 * 10 ** 9
    assert fit['smallest_card_gb'] == 16 and fit['cards_gb'] == list(CARD_SIZES_GB)
    assert card_fit(16 * 10 ** 9 - 10 ** 9, 0, 10 ** 9)['cards_gb'][0] == 16  # the edge holds
    assert card_fit(16 * 10 ** 9 + 1, 0, 0)['smallest_card_gb'] == 24
    too_big = card_fit(80 * 10 ** 9, 0.2, 0)
    assert too_big['smallest_card_gb'] is None and too_big['cards_gb'] == []


def test_gpu_hours_are_images_times_six_times_the_forward_macs_at_the_assumed_throughput():
    estimate = gpu_hours(10 ** 11, 3 * 10 ** 6, 'a schedule')
    hours = 3e6 * 6 * 1e11 / (ASSUMED_TFLOPS * 1e12 * 3600)
    assert estimate['gpu_hours'] == pytest.approx(hours)
    assert estimate['hours_on_gpus'] == pytest.approx(hours / PROTOCOL_GPUS)
    assert estimate['assumed_tflops'] == ASSUMED_TFLOPS and estimate['schedule'] == 'a schedule'
    assert 'estimate at an assumed throughput' in estimate['note']


def config(**fields):
    return Config({'train_dataloader': dict(batch_size=2, dataset=dict()), **fields})


def test_training_images_come_from_the_schedule_and_the_known_training_sets():
    coco = config(train_cfg=dict(max_epochs=36), train_dataloader=dict(
        batch_size=2, dataset=dict(ann_file='annotations/instances_train2017.json')))
    assert training_images(coco)[0] == 36 * 118287
    wrapped = config(train_cfg=dict(max_epochs=12), train_dataloader=dict(
        batch_size=2, dataset=dict(type='RepeatDataset', times=3, dataset=dict(
            ann_file='annotations/instances_train2017.json'))))
    assert training_images(wrapped)[0] == 12 * 118287
    assert training_images(config(train_cfg=dict(max_iters=160000)))[0] == 160000 * 8 * 2
    unknown = config(train_cfg=dict(max_epochs=12), train_dataloader=dict(
        batch_size=2, dataset=dict(ann_file='annotations/instances_train.json')))
    assert training_images(unknown) is None


def test_the_query_head_recipes_schedules_are_their_protocols_epochs_or_iterations():
    def images(config):
        return training_images(Config.fromfile(osp.join(ROOT, 'configs', config)))

    # DINO: 12 epochs of COCO train2017; Mask2Former: iterations of 8 GPUs x 2 images, COCO too
    assert images('dino-4scale_coatnet0_12e_coco.py') == (
        12 * 118287, '12 epochs x 118287 images (instances_train2017.json)')
    assert images('mask2former_coatnet0_lsj-50e_coco.py') == (
        368750 * 16, '368750 iterations x 8 GPUs x 2 images')
    assert images('mask2former_coatnet0_ade20k.py')[0] == 160000 * 16


@pytest.mark.parametrize('path', CUDA_SIMULATIONS, ids=osp.basename)
def test_every_simulation_file_holds_the_card_figures_card_fit_derives_from_its_peaks(path):
    with open(path) as f:
        result = json.load(f)
    margin = result['margin']
    for variant, peak in result['peak_bytes'].items():
        fit = card_fit(peak['total'], margin['fraction'], margin['fixed_bytes'])
        for key, value in fit.items():
            assert result[key][variant] == value, (key, variant)


def test_every_gpu_hours_estimate_in_flops_json_is_what_gpu_hours_derives_from_its_count():
    with open(osp.join(RESULTS, 'flops.json')) as f:
        entries = json.load(f)
    estimated = [e for e in entries if 'gpu_hours_estimate' in e]
    # every recipe at its training input, and the six calibration models
    assert len(estimated) >= 17 + 6
    for entry in estimated:
        recorded = entry['gpu_hours_estimate']
        derived = gpu_hours(entry['macs'], recorded['training_images'], recorded['schedule'],
                            recorded['assumed_tflops'], recorded['gpus'])
        assert recorded == derived, entry['config']
