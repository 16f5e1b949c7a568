"""make gpu-check (tools/analysis_tools/gpu_check.py) and the install's GPU decision
(tools/dev/mmcv_ops_choice.py), on a machine without a GPU: every GPU branch that is a decision
runs here on recorded or synthetic inputs (the verdicts, the GPU code in a compiled file, the
budget, the kernel and recipe verdicts, the docs' figures); the tool runs whole with --device cpu
--quick, refuses --device cuda, and names what the budget left out."""
import glob
import importlib.util
import json
import os.path as osp
import struct
import subprocess
import sys

import pytest
import torch

from mmcoatnet.analysis import gpu_check as gc
from mmcoatnet.analysis.gpu_check import FAIL, INFO, PASS, SKIP

from helpers import ROOT, run_tool

TOOL = 'tools/analysis_tools/gpu_check.py'


def load(relpath):
    spec = importlib.util.spec_from_file_location('t_' + osp.basename(relpath)[:-3],
                                                  osp.join(ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------ GPU code in a binary

def fatbin(*entries):
    """A fatbinary container as nvcc embeds it: (kind, sm, payload) entries (kind 1 PTX, 2 ELF)."""
    body = b''
    for kind, sm, payload in entries:
        header = struct.pack('<HHIQIIHHI', kind, 0x0101, 64, len(payload), 0, 0, 0, 0, sm)
        body += header.ljust(64, b'\0') + payload
    return struct.pack('<IHHQ', gc.FATBIN_MAGIC, 1, 16, len(body)) + body


def test_the_images_of_fatbinary_containers_are_read_from_a_files_bytes():
    data = (b'\x7fELF host code' + fatbin((2, 80, b'cubin' * 10), (1, 90, b'.target sm_90'))
            + b'junk' + struct.pack('<IHH', gc.FATBIN_MAGIC, 7, 16)  # not a header: version 7
            + fatbin((2, 120, b'x' * 33)) + b'tail')
    assert gc.fatbin_images(data) == [('elf', 80), ('ptx', 90), ('elf', 120)]
    assert gc.describe_images(gc.fatbin_images(data)) == 'compute_90 PTX (1), sm_120 (1), sm_80 (1)'


def test_the_installed_mmcv_ext_holds_cuda_code_exactly_when_built_with_cuda_ops():
    """A CPU-only build (this stack's) holds none; a CUDA build holds machine code."""
    from mmcv.ops import get_compiling_cuda_version
    spec = importlib.util.find_spec('mmcv._ext')
    with open(spec.origin, 'rb') as f:
        images = gc.fatbin_images(f.read())
    if get_compiling_cuda_version() == 'not available':
        assert images == [] and gc.describe_images(images) == 'no CUDA code'
    else:
        assert any(kind == 'elf' for kind, _ in images), images


def test_a_real_cuda_library_lists_the_architectures_torch_was_built_for():
    """torch's own CUDA libraries hold fatbinaries as mmcv's CUDA build does: read them."""
    libraries = glob.glob(osp.join(osp.dirname(torch.__file__), 'lib', 'libtorch_cuda_linalg.so'))
    # every stack this suite runs on has PyPI's CUDA build of torch, which runs on CPUs
    assert libraries and torch.version.cuda, 'this test needs a CUDA build of torch'
    with open(libraries[0], 'rb') as f:
        images = gc.fatbin_images(f.read())
    built = {sm for kind, sm in gc.torch_arch_images(torch.cuda.get_arch_list())}
    machine_code = {sm for kind, sm in images if kind == 'elf'}
    assert machine_code and machine_code <= built, (machine_code, built)


def test_cuobjdump_listings_are_read_too():
    listing = ('\nELF file    1: _ext.1.sm_80.cubin\nELF file    2: _ext.2.sm_90a.cubin\n'
               'PTX file    1: _ext.1.sm_90.ptx\nsomething else sm_75\n')
    assert gc.listing_images(listing) == [('elf', 80), ('elf', 90), ('ptx', 90)]


@pytest.mark.parametrize('images, capability, runs', [
    ([('elf', 80)], (8, 0), 'sm_80 machine code'),
    ([('elf', 80)], (8, 6), 'sm_80 machine code (binary-compatible)'),
    ([('elf', 80)], (9, 0), None),  # an sm_80-only mmcv on an H100: no kernel image
    ([('elf', 90)], (8, 0), None),
    ([('elf', 80), ('ptx', 80)], (9, 0), 'compute_80 PTX (compiled by the driver at load)'),
    ([], (8, 0), None),
])
def test_which_code_a_gpu_runs(images, capability, runs):
    assert gc.code_for(images, capability) == runs


# -------------------------------------------------------------------------- environment verdicts

CPU_FACTS = dict(torch='2.13.0+cu130', torch_cuda='13.0', cuda_available=False,
                 torch_arch_list=['sm_75', 'sm_80', 'sm_86', 'sm_90', 'sm_100', 'sm_120'],
                 nvidia_driver=False, mmcv='2.1.0', mmcv_cuda='not available', mmcv_ext_images=[],
                 in_project_venv=True, mmdet='3.3.0', mmseg='1.2.2', mmpretrain='1.2.0')
H100 = dict(name='NVIDIA H100 80GB HBM3', capability=[9, 0], total_bytes=85 << 30)


def gpu_facts(**changes):
    facts = dict(CPU_FACTS, cuda_available=True, nvidia_driver=True, driver='580.65.06',
                 driver_cuda=13000, gpus=[H100], mmcv_cuda='13.0',
                 mmcv_ext_images=[['elf', 80], ['elf', 90]])
    facts.update(changes)
    return facts


def failures(rows):
    return {row['name']: row.get('fix') for row in rows if row['verdict'] == FAIL}


def test_this_cpu_machine_passes_and_names_mmcvs_ext_as_holding_no_cuda_code():
    rows = gc.environment_items(CPU_FACTS, 'cpu', 'cpu')
    assert not failures(rows)
    assert next(r for r in rows if r['name'] == 'mmcv _ext GPU code')['value'] == 'no CUDA code'


def test_a_working_gpu_machine_passes():
    rows = gc.environment_items(gpu_facts(), 'cuda', 'auto')
    assert not failures(rows)
    assert {r['name']: r['verdict'] for r in rows}['mmcv _ext code for GPU 0 (sm_90)'] == PASS


def test_mmcv_without_cuda_ops_fails_with_the_make_install_that_builds_them():
    rows = gc.environment_items(gpu_facts(mmcv_cuda='not available', mmcv_ext_images=[]),
                                'cuda', 'auto')
    assert failures(rows)['mmcv CUDA ops'] == \
        'MMCOATNET_MMCV_OPS=cuda TORCH_CUDA_ARCH_LIST=9.0 make install'
    assert 'mmcv _ext code for GPU 0 (sm_90)' in failures(rows)


def test_an_mmcv_built_for_sm_80_only_fails_on_an_h100():
    rows = gc.environment_items(gpu_facts(mmcv_ext_images=[['elf', 80]]), 'cuda', 'cuda')
    assert list(failures(rows)) == ['mmcv _ext code for GPU 0 (sm_90)']


def test_the_fix_keeps_the_torch_variant_of_the_environment():
    rows = gc.environment_items(gpu_facts(torch='2.13.0+cu126', torch_cuda='12.6',
                                          mmcv_cuda='not available'), 'cuda', 'cuda')
    assert failures(rows)['mmcv CUDA ops'] == (
        'MMCOATNET_TORCH_INDEX=cu126 MMCOATNET_MMCV_OPS=cuda TORCH_CUDA_ARCH_LIST=9.0 make install')


def test_outside_the_projects_venv_the_fix_builds_mmcv_in_that_environment():
    rows = gc.environment_items(gpu_facts(mmcv_cuda='not available', in_project_venv=False),
                                'cuda', 'cuda')
    fix = failures(rows)['mmcv CUDA ops']
    assert 'make install' not in fix and 'FORCE_CUDA=1' in fix and 'mmcv==2.1.0' in fix


def test_a_driver_older_than_torchs_cuda_fails_with_the_cu126_route():
    facts = dict(CPU_FACTS, nvidia_driver=True, driver='550.54.14', driver_cuda=12040,
                 cuda_init_error='The NVIDIA driver on your system is too old')
    rows = gc.environment_items(facts, 'cpu', 'auto')
    fixes = failures(rows)
    assert set(fixes) == {'NVIDIA driver', 'GPU visible to torch'}
    assert all(fix.startswith('MMCOATNET_TORCH_INDEX=cu126 make install') for fix in
               fixes.values())
    # asked for the CPU: the same facts are recorded, nothing fails
    assert not failures(gc.environment_items(facts, 'cpu', 'cpu'))


def test_a_gpu_older_than_torchs_build_fails_with_the_cu126_route():
    v100 = dict(name='Tesla V100-SXM2-16GB', capability=[7, 0], total_bytes=16 << 30)
    rows = gc.environment_items(gpu_facts(gpus=[v100], mmcv_ext_images=[['elf', 70]]), 'cuda',
                                'cuda')
    fix = failures(rows)['GPU 0: Tesla V100-SXM2-16GB, compute capability 7.0']
    assert fix.startswith('MMCOATNET_TORCH_INDEX=cu126 make install')


# ---------------------------------------------------------------------- budget, schedule, verdicts

class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_budget_admits_a_check_only_within_what_is_left_less_what_later_checks_reserve():
    clock = Clock()
    budget = gc.Budget(600, clock)
    assert budget.allows(500) and not budget.allows(500, reserved_s=200)
    clock.now += 550
    assert budget.remaining() == 50 and not budget.allows(60) and budget.allows(50)
    order = ('environment', 'ops', 'parity', 'kernels', 'distributed', 'recipes')
    estimates = gc.SECTION_ESTIMATES_S[('cuda', False)]
    assert gc.reserved_after('parity', 'cuda', False, order) == \
        estimates['kernels'] + estimates['distributed']
    assert gc.reserved_after('recipes', 'cuda', False, order) == 0


def test_the_default_budget_fits_every_section_and_recipe_on_an_h100_as_estimated():
    tool = load(TOOL)
    fixed = sum(gc.SECTION_ESTIMATES_S[('cuda', False)].values())
    recipes = tool.default_recipes(torch.device('cuda'), quick=False)
    assert len(recipes) == len(glob.glob(osp.join(ROOT, 'docs', 'results',
                                                  'train_memory_simulated_cuda_fp32_*.json')))
    runs = 2 * len(recipes)  # float32 and AMP
    assert fixed + runs * gc.RECIPE_RUN_S['cuda'] <= tool.parse_args([]).budget_s


def test_a_section_skipped_for_time_is_never_a_pass():
    ran = gc.item('a', PASS, 1)
    assert gc.section_verdict([ran, gc.skipped('b', 'no time', for_time=True)]) == gc.INCOMPLETE
    assert gc.section_verdict([ran, gc.skipped('b', 'not on a CPU')]) == PASS
    assert gc.section_verdict([gc.skipped('b', 'no time', for_time=True)]) == SKIP
    assert gc.section_verdict([ran, gc.item('c', FAIL, 2)]) == FAIL


def test_the_gpu_hours_of_a_schedule_from_a_measured_step():
    images = 36 * 118287  # COCO 3x: estimates.training_images
    assert gc.measured_gpu_hours(0.5, 2, images) == pytest.approx(images / 2 * 0.5 / 3600)
    assert gc.measured_gpu_hours(0.5, 2, None) is None


@pytest.mark.parametrize('row, card, verdict', [
    (dict(measured=dict(losses=[1.0, 0.9], peak_reserved_bytes=5 << 30),
          simulated_needed_bytes=7 << 30), 80 << 30, PASS),
    (dict(measured=dict(losses=[1.0, 0.9], peak_reserved_bytes=8 << 30),
          simulated_needed_bytes=7 << 30), 80 << 30, FAIL),  # the simulation was low
    (dict(measured=dict(losses=[1.0, float('nan')])), 80 << 30, FAIL),
    (dict(out_of_memory=True, simulated_needed_bytes=20 << 30), 16 << 30, INFO),  # as estimated
    (dict(out_of_memory=True, simulated_needed_bytes=10 << 30), 16 << 30, FAIL),
    (dict(error='RuntimeError: nms_impl: implementation for device cuda:0 not found'), None, FAIL),
])
def test_recipe_verdicts(row, card, verdict):
    assert gc.recipe_verdict(row, card)[0] == verdict


def test_the_default_kernel_must_be_the_fastest_that_fits():
    tool = load(TOOL)
    from mmcoatnet.models.kernels import KernelContext
    context = KernelContext('cuda', True, None, False, 1, (50, 84), 12)
    row = tool.default_kernel_row('chunked-sdpa', {'chunked-sdpa': 0.0105, 'chunked': 0.02,
                                                   'flex': 0.0100}, context)
    assert row['verdict'] == PASS  # within the tolerance of the fastest
    row = tool.default_kernel_row('chunked-sdpa', {'chunked-sdpa': 0.02, 'flex': 0.01}, context)
    assert row['verdict'] == FAIL and 'attention_impl=flex' in row['fix']
    row = tool.default_kernel_row('chunked-sdpa', {'chunked': 0.01}, context)
    assert row['verdict'] == FAIL and row['fastest'] == 'chunked'
    # CUDA's default, FlexAttention, slower than SDPA: the option that leaves it
    row = tool.default_kernel_row('flex', {'flex': 0.02, 'chunked-sdpa': 0.01}, context)
    assert row['fix'].startswith('--cfg-options model.backbone.attention_impl=sdpa,')
    row = tool.default_kernel_row('flex', {'flex': 0.02, 'dense': 0.01}, context)
    assert ('model.backbone.attention_impl=sdpa model.backbone.attention_max_bias_bytes='
            f'{context.bias_bytes},') in row['fix']
    row = tool.default_kernel_row('flex', {'chunked-sdpa': 0.01}, context)  # FlexAttention failed
    assert row['verdict'] == FAIL and 'attention_impl=sdpa until fixed' in row['fix']


def report_with(rows, device='cuda'):
    section = dict(verdict=gc.section_verdict(rows), seconds=1.0, items=rows)
    sections = {name: dict(verdict=SKIP, seconds=0, items=[gc.skipped(name, 'not run')])
                for name in gc.SECTIONS}
    sections['recipes'] = section
    return dict(device=device, device_name='NVIDIA H100 80GB HBM3', device_total_bytes=85 << 30,
                torch='2.13.0+cu130', date='2026-12-07', budget_s=600, seconds=10, quick=False,
                sections=sections)


def test_the_docs_read_the_measured_recipe_figures_keyed_as_the_simulations():
    measured = dict(seconds=0.42, losses=[2.0, 1.9], peak_allocated_bytes=5 << 30,
                    peak_reserved_bytes=6 << 30)
    rows = [gc.item('maskrcnn_coatnet0_ms-3x_coco fp32', PASS, '', recipe='maskrcnn_coatnet0_ms-'
                    '3x_coco', precision='fp32', batch=2, shape=[800, 1333], measured=measured,
                    simulated_total_bytes=6 << 30, simulated_needed_bytes=8 << 30,
                    allocated_vs_simulated=5 / 6, reserved_vs_needed=6 / 8, gpu_hours=70.0),
            gc.skipped('maskrcnn_coatnet0_ms-3x_coco amp', 'no time', True)]
    figures = gc.measured_recipe_figures(report_with(rows))
    assert list(figures) == [('maskrcnn_coatnet0_ms-3x_coco', 'fp32')]
    row = figures[('maskrcnn_coatnet0_ms-3x_coco', 'fp32')]
    assert row['card'] == 'NVIDIA H100 80GB HBM3' and row['variant'] == 'default'
    assert row['peak_reserved_bytes'] == 6 << 30 and row['step_seconds'] == 0.42
    assert gc.measured_recipe_figures(report_with(rows, device='cpu')) == {}
    # every simulation file the docs read is named by a (recipe, precision) key of this form
    for path in glob.glob(osp.join(ROOT, 'docs', 'results', 'train_memory_simulated_cuda_*.json')):
        precision, recipe = osp.basename(path)[len('train_memory_simulated_cuda_'):-5].split('_', 1)
        assert precision in ('fp32', 'amp') and osp.exists(osp.join(ROOT, 'configs',
                                                                    recipe + '.py'))


def test_a_gpu_recipe_row_feeds_the_docs_figures():
    """The tool's row of a recipe trained on a GPU (recorded figures), through to what the docs
    read: the ratios to the simulation, the schedule's GPU-hours, the keys."""
    from mmcoatnet.utils.cli import load_config
    tool = load(TOOL)
    recipe = 'maskrcnn_coatnet0_ms-3x_coco'
    simulation = json.load(open(tool.simulation_file(recipe, 'fp32')))
    row = dict(recipe=recipe, precision='fp32', config=f'configs/{recipe}.py',
               batch=simulation['batch'], shape=simulation['shape'],
               simulated_total_bytes=simulation['peak_bytes']['default']['total'],
               simulated_needed_bytes=simulation['needed_bytes']['default'],
               measured=dict(seconds=0.5, losses=[3.0, 2.9], peak_allocated_bytes=6 << 30,
                             peak_reserved_bytes=7 << 30))
    cfg = load_config(osp.join(ROOT, row['config']))
    checked = tool.recipe_row(row, cfg, card_bytes=85 << 30)
    assert checked['verdict'] == PASS, checked
    assert checked['gpu_hours'] == pytest.approx(36 * 118287 / 2 * 0.5 / 3600)
    assert checked['allocated_vs_simulated'] == pytest.approx(
        (6 << 30) / simulation['peak_bytes']['default']['total'])
    assert 'GPU-hours on this card' in checked['value']
    figures = gc.measured_recipe_figures(report_with([checked]))
    assert figures[(recipe, 'fp32')]['gpu_hours'] == checked['gpu_hours']
    assert figures[(recipe, 'fp32')]['simulated_needed_bytes'] == \
        simulation['needed_bytes']['default']


def test_the_markdown_names_the_first_failure_and_its_fix():
    rows = [gc.item('x fp32', FAIL, 'out of memory', fix='train with --amp')]
    text = gc.markdown(report_with(rows))
    assert 'First failure: recipes: x fp32: out of memory. Fix: train with --amp' in text


def test_a_check_that_crashes_fails_its_section_and_the_report_goes_on(monkeypatch, capsys):
    tool = load(TOOL)

    def crash(run):
        raise RuntimeError('CUDA error: an illegal memory access was encountered')

    runners = {name: (lambda run, name=name: [gc.item(name, PASS, 'ran')])
               for name in tool.SECTION_RUNNERS}
    monkeypatch.setattr(tool, 'SECTION_RUNNERS', dict(runners, kernels=crash))
    run = tool.Run(tool.parse_args(['--device', 'cpu', '--quick']), torch.device('cpu'),
                   CPU_FACTS)
    sections = tool.run_sections(run)
    assert {name: s['verdict'] for name, s in sections.items()} == dict(
        environment=PASS, ops=PASS, parity=PASS, kernels=FAIL, recipes=PASS, distributed=PASS)
    row = sections['kernels']['items'][0]
    assert 'illegal memory access' in row['value'] and 'Traceback' in row['traceback']


# ---------------------------------------------------------------------------------- the tool runs

def test_device_cuda_refuses_at_once_without_a_gpu(tmp_path):
    assert not torch.cuda.is_available(), 'this test runs where no GPU is visible (CI, CPUs)'
    result = run_tool(TOOL, '--device', 'cuda', '--out-dir', str(tmp_path), check=False,
                      timeout=120)
    assert result.returncode == 1
    assert 'no GPU is visible to torch' in result.stderr
    assert not list(tmp_path.iterdir())  # refused before any check ran


def test_an_unknown_recipe_is_refused(tmp_path):
    result = run_tool(TOOL, '--device', 'cpu', '--recipes', 'maskrcnn_coatnet9', '--out-dir',
                      str(tmp_path), check=False, timeout=120)
    assert result.returncode == 1 and "no config 'maskrcnn_coatnet9'" in result.stderr


@pytest.mark.slow
def test_what_the_budget_leaves_out_is_named_skipped_never_passed(tmp_path):
    run_tool(TOOL, '--device', 'cpu', '--quick', '--budget-s', '1', '--out-dir', str(tmp_path),
             timeout=300)
    report = json.load(open(tmp_path / 'gpu_check_cpu.json'))
    assert gc.verdicts(report) == dict(environment=PASS, ops=SKIP, parity=SKIP, kernels=SKIP,
                                       recipes=SKIP, distributed=SKIP)
    for name in ('ops', 'parity', 'kernels'):
        assert [row['for_time'] for row in report['sections'][name]['items']] == [True], name
    recipes = {row['name']: row for row in report['sections']['recipes']['items']}
    assert recipes['maskrcnn_coatnet-pico_toy fp32']['for_time']
    assert not recipes['maskrcnn_coatnet-pico_toy amp']['for_time']  # not on a CPU: named so


@pytest.mark.slow
def test_the_cpu_quick_mode_runs_every_section_a_cpu_can(tmp_path):
    run_tool(TOOL, '--device', 'cpu', '--quick', '--out-dir', str(tmp_path), timeout=600)
    report = json.load(open(tmp_path / 'gpu_check_cpu.json'))
    assert report['torch'] == torch.__version__ and report['date'] and report['device'] == 'cpu'
    assert gc.verdicts(report) == dict(environment=PASS, ops=PASS, parity=PASS, kernels=PASS,
                                       recipes=PASS, distributed=SKIP)
    assert report['skipped_sections'] == ['distributed']
    assert 'needs two GPUs' in report['sections']['distributed']['items'][0]['reason']
    rows = {row['name']: row for name in gc.SECTIONS for row in report['sections'][name]['items']}
    assert rows['mmcv _ext GPU code']['value'] == 'no CUDA code'
    assert 'multi_scale_deformable_attn_pytorch' in \
        rows['MultiScaleDeformableAttention (4 levels, 4 points)']['ran']
    # what a CPU cannot run is named, not passed: TF32, FlexAttention's backward, AMP training
    assert rows['224x224 tf32']['verdict'] == SKIP
    assert rows['flex (32x40, forward + backward)']['verdict'] == SKIP
    assert rows['maskrcnn_coatnet-pico_toy amp']['verdict'] == SKIP
    # the query heads' toys train too: DINO, and Mask2Former with its deformable pixel decoder
    assert rows['dino_coatnet-pico_toy fp32']['verdict'] == PASS
    assert rows['mask2former_coatnet-pico_toy fp32']['verdict'] == PASS
    assert 'chunked-sdpa' in rows['256x320 float32']['kernels']  # the chunked path was checked
    default = next(row for row in report['sections']['kernels']['items']
                   if row['name'].startswith('default kernel'))
    assert default['default'] == 'chunked'
    assert (tmp_path / 'gpu_check_cpu.md').exists()


@pytest.mark.slow
def test_the_distributed_check_runs_its_processes_and_compares_them_with_gloo(tmp_path):
    """The GPU section's own code (tool's --ddp-worker under torchrun, with with_cp), on CPUs."""
    tool = load(TOOL)
    row = tool.ddp_comparison('cpu', str(tmp_path))
    assert row['verdict'] == PASS, row


# -------------------------------------------------------------------- the install's GPU decision

CHOICE = 'tools/dev/mmcv_ops_choice.py'
STRANDED = dict(torch='2.13.0+cu130', torch_cuda='13.0', gpu=False, nvidia_driver=True)


def test_auto_takes_the_gpu_or_the_cpu_where_the_machine_is_clear():
    choice = load(CHOICE)
    assert choice.decide('auto', dict(STRANDED, gpu=True))[0] == 'cuda'
    assert choice.decide('auto', dict(STRANDED, nvidia_driver=False))[0] == 'cpu'


@pytest.mark.parametrize('facts, reason, fix', [
    (dict(driver_cuda=12040), 'the driver supports CUDA 12.4', 'MMCOATNET_TORCH_INDEX=cu126'),
    (dict(cuda_visible_devices=''), 'hides every GPU', 'unset CUDA_VISIBLE_DEVICES'),
    (dict(gpus_listed=0), 'lists no GPU', 'MMCOATNET_MMCV_OPS=cuda TORCH_CUDA_ARCH_LIST=8.0'),
    (dict(torch='2.13.0+cpu', torch_cuda=None), 'CPU-only build', 'cu126 or cu128'),
    (dict(cuda_init_error='CUDA unknown error'), 'CUDA unknown error', 'cu126'),
])
def test_auto_stops_where_a_driver_has_no_gpu_torch_can_use(facts, reason, fix):
    ops, message, stop = load(CHOICE).decide('auto', dict(STRANDED, **facts))
    assert stop and ops is None
    assert reason in message and fix in message and 'MMCOATNET_MMCV_OPS=cpu make install' in message


def test_an_explicit_setting_is_kept_and_a_stranded_driver_named():
    choice = load(CHOICE)
    assert choice.decide('cpu', STRANDED) == ('cpu', None, False)
    ops, message, stop = choice.decide('cuda', dict(STRANDED, driver_cuda=12040))
    assert (ops, stop) == ('cuda', False) and 'MMCOATNET_TORCH_INDEX=cu126' in message


def test_the_choice_on_the_command_line_prints_the_ops_or_stops(tmp_path):
    def choose(setting, facts):
        return subprocess.run([sys.executable, osp.join(ROOT, CHOICE), setting, '--facts',
                               json.dumps(facts)], capture_output=True, text=True, timeout=60)

    stopped = choose('auto', dict(STRANDED, driver_cuda=12040))
    assert stopped.returncode == 1 and stopped.stdout == '' and 'stopped' in stopped.stderr
    kept = choose('cpu', STRANDED)
    assert kept.returncode == 0 and kept.stdout.strip() == 'cpu'
    # tools/install.sh takes the choice from it and stops when it does
    script = open(osp.join(ROOT, 'tools', 'install.sh')).read()
    assert 'ops=$("$VPY" tools/dev/mmcv_ops_choice.py "$ops") || exit 1' in script
    assert 'tools/dev/mmcv_ops_choice.py \\\n' in script.split('| sha256sum')[0]  # in the stamp


def install_settings(venv, **env):
    """The settings tools/install.sh goes on with for ``venv`` (stopped right after: the venv's
    Python cannot be created from a PYTHON that does not exist)."""
    result = subprocess.run(['bash', osp.join(ROOT, 'tools', 'install.sh')], capture_output=True,
                            text=True, timeout=60, env=dict(
                                PATH='/usr/bin:/bin', HOME=str(venv), VENV=str(venv),
                                PYTHON=str(venv / 'no-python'), **env))
    assert result.returncode != 0
    line = next(line for line in result.stdout.splitlines()
                if line.startswith('install: MMCOATNET_MMCV_OPS='))
    return dict(word.split('=', 1) for word in line.split(' (')[0].split()[1:])


def test_a_venv_keeps_the_settings_it_was_installed_with(tmp_path):
    """After MMCOATNET_TORCH_INDEX=cu126 make install, every make target's own make install keeps
    cu126 (and the mmcv ops) without the variables: one environment for every command."""
    (tmp_path / '.mmcoatnet-settings').write_text(
        "saved_ops=cuda saved_arch=8.0 saved_index=cu126 saved_cuda=''\n")
    assert install_settings(tmp_path) == dict(
        MMCOATNET_MMCV_OPS='cuda', TORCH_CUDA_ARCH_LIST='8.0', MMCOATNET_TORCH_INDEX='cu126')
    assert install_settings(tmp_path, MMCOATNET_MMCV_OPS='cpu', TORCH_CUDA_ARCH_LIST='9.0')[
        'MMCOATNET_MMCV_OPS'] == 'cpu'
    assert install_settings(tmp_path, MMCOATNET_TORCH_INDEX='')['MMCOATNET_TORCH_INDEX'] == ''
