"""Multi-process training on CPU with real processes (gloo), as tools/dist_train.sh starts them."""
import glob
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from test_tools import ROOT, run_tool, scalars, small_det_config, small_seg_config, toy_data  # noqa: F401

# tests/ on the path of the started processes, for the dist_helpers module
ENV = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', PYTHONPATH=osp.join(ROOT, 'tests'))


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def dist_train(config, work_dir, *args, procs=2, timeout=900, check=True):
    env = dict(ENV, PORT=free_port())
    result = subprocess.run(['bash', 'tools/dist_train.sh', config, str(procs), '--work-dir',
                             str(work_dir), '--cfg-options', 'env_cfg.dist_cfg.backend=gloo', *args],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def with_rank_params_hook(config_path):
    with open(config_path, 'a') as f:
        f.write("\ncustom_imports = dict(imports=['mmcoatnet', 'dist_helpers'], "
                "allow_failed_imports=False)\n"
                "custom_hooks = [dict(type='RandomStateHook'), dict(type='SaveRankParamsHook')]\n")
    return config_path


def assert_ranks_agree(work_dir):
    rank0 = torch.load(osp.join(work_dir, 'params_rank0.pth'))
    rank1 = torch.load(osp.join(work_dir, 'params_rank1.pth'))
    params = [k for k in rank0 if 'running' not in k and 'num_batches' not in k]
    assert params and all(torch.equal(rank0[k], rank1[k]) for k in params)


def test_two_process_mask_rcnn_trains_and_its_checkpoint_resumes_in_one(tmp_path, toy_data):
    config = with_rank_params_hook(small_det_config(tmp_path, toy_data, epochs=2))
    work_dir = tmp_path / 'dist'
    dist_train(config, work_dir)
    assert_ranks_agree(work_dir)
    records = scalars(str(work_dir))
    assert records and all(torch.isfinite(torch.tensor(r['loss'])) for r in records)
    # the checkpoint of the 2-process run resumes in a single process
    continued = small_det_config(tmp_path, toy_data, epochs=3)
    run_tool('tools/train.py', continued, '--work-dir', str(work_dir), '--resume',
             str(work_dir / 'epoch_2.pth'))
    assert (work_dir / 'epoch_3.pth').is_file()


def test_two_process_upernet_trains(tmp_path, toy_data):
    config = with_rank_params_hook(small_seg_config(tmp_path, toy_data, iters=3))
    dist_train(config, tmp_path / 'dist')
    assert_ranks_agree(tmp_path / 'dist')


def test_frozen_stages_and_checkpointing_under_ddp(tmp_path, toy_data):
    config = with_rank_params_hook(small_det_config(tmp_path, toy_data, epochs=1))
    work_dir = tmp_path / 'dist'
    dist_train(config, work_dir, 'model.backbone.frozen_stages=1', 'model.backbone.with_cp=True')
    assert_ranks_agree(work_dir)
    initial = torch.load(work_dir / 'initial_rank0.pth')
    trained = torch.load(work_dir / 'params_rank0.pth')
    frozen = [k for k in trained if k.startswith(('backbone.stem.', 'backbone.stages.0.'))]
    learned = [k for k in trained if k.startswith('backbone.stages.1.') and 'num_batches' not in k]
    assert frozen and all(torch.equal(trained[k], initial[k]) for k in frozen)
    assert any(not torch.equal(trained[k], initial[k]) for k in learned)


def test_syncbn_two_processes_equal_one_process_with_double_batch(tmp_path):
    script = osp.join(ROOT, 'tests', 'dist_syncbn_check.py')
    env = dict(ENV, PYTHONPATH=ROOT)  # the check script imports mmcoatnet
    single = subprocess.run([sys.executable, script, str(tmp_path / 'one')], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    double = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
                             '--master_port', free_port(), script, str(tmp_path / 'two')],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, double.stderr[-3000:]
    one = torch.load(tmp_path / 'one_rank0.pt')
    for rank in (0, 1):
        two = torch.load(tmp_path / f'two_rank{rank}.pt')
        torch.testing.assert_close(two['loss'], one['loss'], rtol=1e-5, atol=1e-6)
        assert set(two['grads']) == set(one['grads'])
        for name, grad in one['grads'].items():
            torch.testing.assert_close(two['grads'][name], grad, rtol=1e-4, atol=1e-6, msg=name)
        for name, stat in one['stats'].items():
            torch.testing.assert_close(two['stats'][name], stat, rtol=1e-4, atol=1e-6, msg=name)


def test_killing_one_process_makes_the_other_exit_with_an_error(tmp_path, toy_data):
    config = small_det_config(tmp_path, toy_data, epochs=50)
    work_dir = tmp_path / 'dist'
    env = dict(ENV, PORT=free_port())
    launcher = subprocess.Popen(
        ['bash', 'tools/dist_train.sh', config, '2', '--work-dir', str(work_dir), '--cfg-options',
         'env_cfg.dist_cfg.backend=gloo', 'env_cfg.dist_cfg.timeout=60'],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        deadline = time.time() + 300
        while not glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json')) and time.time() < deadline:
            time.sleep(0.2)
        assert launcher.poll() is None, 'training ended before a process could be killed'
        workers = subprocess.run(['pgrep', '-f', f'train.py {config}'], capture_output=True,
                                 text=True).stdout.split()
        workers = [int(p) for p in workers if int(p) != launcher.pid]
        assert len(workers) >= 2, workers
        os.kill(max(workers), signal.SIGKILL)
        killed_at = time.time()
        output, _ = launcher.communicate(timeout=120)
        assert time.time() - killed_at < 120
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode != 0
    assert 'failed' in output.lower() and ('SIGKILL' in output or 'exitcode' in output), output[-3000:]
