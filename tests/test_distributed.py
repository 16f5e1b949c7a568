"""Multi-process training on CPU with real processes (gloo), as tools/dist_train.sh starts them."""
import glob
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from helpers import ROOT, logged_runs, run_tool, scalars, small_det_config, small_seg_config

# tests/ on the path of the started processes, for the dist_helpers module
ENV = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1',
           PYTHONPATH=osp.join(ROOT, 'tests'))


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def dist_train(config, work_dir, *args, procs=2, timeout=900, check=True):
    env = dict(ENV, PORT=free_port())
    result = subprocess.run(['bash', 'tools/dist_train.sh', config, str(procs), '--work-dir',
                             str(work_dir), '--cfg-options', 'env_cfg.dist_cfg.backend=gloo',
                             *args],
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


def assert_ranks_agree(work_dir, frozen=()):
    """Both ranks end with the same parameters and, SyncBN being synchronised, the same BatchNorm
    running statistics, which training moved (except in the `frozen` prefixes)."""
    rank0 = torch.load(osp.join(work_dir, 'params_rank0.pth'))
    rank1 = torch.load(osp.join(work_dir, 'params_rank1.pth'))
    initial = torch.load(osp.join(work_dir, 'initial_rank0.pth'))
    assert set(rank0) == set(rank1)
    params = [k for k in rank0 if 'running' not in k and 'num_batches' not in k]
    assert params and all(torch.equal(rank0[k], rank1[k]) for k in params)
    # the model's norms (the backbone's, and UperNet's heads') are BatchNorm layers, made the CPU
    # SyncBN by the DDP wrapper
    with open(osp.join(work_dir, 'params_norms_rank0.json')) as f:
        norms = json.load(f)
    assert any(name.startswith('backbone.') for name in norms), norms
    assert set(norms.values()) == {'DeviceAgnosticSyncBN'}, norms
    stats = [f'{name}.{buffer}' for name in norms for buffer in ('running_mean', 'running_var')]
    # each rank normalised a different half of the batch: only synchronised statistics are equal
    unequal = [k for k in stats if not torch.equal(rank0[k], rank1[k])]
    assert not unequal, f'BatchNorm statistics differ across ranks: {unequal}'
    for name in norms:
        count = f'{name}.num_batches_tracked'
        assert torch.equal(rank0[count], rank1[count]), count
    moved = [k for k in stats if not k.startswith(frozen)]
    assert moved and all(not torch.equal(rank0[k], initial[k]) for k in moved), \
        [k for k in moved if torch.equal(rank0[k], initial[k])]


@pytest.mark.slow
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


@pytest.mark.slow
def test_two_process_upernet_trains(tmp_path, toy_data):
    config = with_rank_params_hook(small_seg_config(tmp_path, toy_data, iters=3))
    dist_train(config, tmp_path / 'dist')
    assert_ranks_agree(tmp_path / 'dist')


@pytest.mark.slow
def test_without_sync_bn_the_ranks_statistics_differ(tmp_path, toy_data):
    # the control of assert_ranks_agree: left per-process BN (sync_bn off), the backbone's running
    # statistics differ across ranks, each rank seeing other images, while DDP keeps the weights
    # equal; so the equal statistics above come from the synchronisation
    config = with_rank_params_hook(small_seg_config(tmp_path, toy_data, iters=3))
    work_dir = tmp_path / 'dist'
    dist_train(config, work_dir, 'sync_bn=None')
    rank0 = torch.load(work_dir / 'params_rank0.pth')
    rank1 = torch.load(work_dir / 'params_rank1.pth')
    with open(work_dir / 'params_norms_rank0.json') as f:
        norms = {k: v for k, v in json.load(f).items() if k.startswith('backbone.')}
    assert norms and set(norms.values()) == {'BatchNorm2d'}, norms
    params = [k for k in rank0 if 'running' not in k and 'num_batches' not in k]
    assert all(torch.equal(rank0[k], rank1[k]) for k in params)
    stats = [f'{name}.running_mean' for name in norms]
    assert all(not torch.equal(rank0[k], rank1[k]) for k in stats)


@pytest.mark.slow
def test_frozen_stages_and_checkpointing_under_ddp(tmp_path, toy_data):
    config = with_rank_params_hook(small_det_config(tmp_path, toy_data, epochs=1))
    work_dir = tmp_path / 'dist'
    dist_train(config, work_dir, 'model.backbone.frozen_stages=1', 'model.backbone.with_cp=True')
    assert_ranks_agree(work_dir, frozen=('backbone.stem.', 'backbone.stages.0.'))
    initial = torch.load(work_dir / 'initial_rank0.pth')
    trained = torch.load(work_dir / 'params_rank0.pth')
    frozen = [k for k in trained if k.startswith(('backbone.stem.', 'backbone.stages.0.'))]
    learned = [k for k in trained if k.startswith('backbone.stages.1.') and 'num_batches' not in k]
    assert frozen and all(torch.equal(trained[k], initial[k]) for k in frozen)
    assert any(not torch.equal(trained[k], initial[k]) for k in learned)


@pytest.mark.slow
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


@pytest.mark.slow
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
        while not glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json')) and \
                time.time() < deadline:
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
    assert 'failed' in output.lower() and ('SIGKILL' in output or 'exitcode' in output), \
        output[-3000:]


def worker_pids(launcher_pid):
    """{rank: pid} of the training processes torchrun started (its children, RANK in their env)."""
    pids = subprocess.run(['pgrep', '-P', str(launcher_pid)], capture_output=True,
                          text=True).stdout.split()
    workers = {}
    for pid in map(int, pids):
        try:
            with open(f'/proc/{pid}/environ', 'rb') as f:
                env = dict(item.split(b'=', 1) for item in f.read().split(b'\0') if b'=' in item)
        except OSError:
            continue
        if b'RANK' in env:
            workers[int(env[b'RANK'])] = pid
    return workers


def has_exited(pid):
    """Gone, or a zombie its parent has not reaped yet."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] in ('Z', 'X')
    except OSError:
        return True


# torchrun gives the processes left, on a failure, 30 s to end after SIGTERM before SIGKILL
# (torch.distributed.elastic's _shutdown default); a stopped process cannot end before that
TORCHRUN_GRACE_S = 30


@pytest.mark.slow
def test_a_stopped_peer_ends_the_run_after_the_configured_timeout(tmp_path, toy_data):
    timeout = 20
    config = small_det_config(tmp_path, toy_data, epochs=50, workers=0)
    work_dir = tmp_path / 'dist'
    log = open(tmp_path / 'launcher.log', 'w+')
    launcher = subprocess.Popen(
        ['bash', 'tools/dist_train.sh', config, '2', '--work-dir', str(work_dir), '--cfg-options',
         'env_cfg.dist_cfg.backend=gloo', f'env_cfg.dist_cfg.timeout={timeout}'],
        cwd=ROOT, env=dict(ENV, PORT=free_port()), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    workers = {}
    try:
        deadline = time.time() + 300
        while sum(map(len, logged_runs(work_dir))) < 2 and launcher.poll() is None \
                and time.time() < deadline:
            time.sleep(0.2)
        assert launcher.poll() is None, 'training ended before a process could be stopped'
        workers = worker_pids(launcher.pid)
        assert sorted(workers) == [0, 1], workers
        # rank 1 hangs without dying: no socket closes, so only the timeout can end rank 0's wait
        os.kill(workers[1], signal.SIGSTOP)
        stopped_at = time.monotonic()
        rank0_exit = None
        limit = timeout + TORCHRUN_GRACE_S + 60
        while launcher.poll() is None and time.monotonic() - stopped_at < limit:
            if rank0_exit is None and has_exited(workers[0]):
                rank0_exit = time.monotonic() - stopped_at
            time.sleep(0.1)
        launcher_exit = time.monotonic() - stopped_at
        assert launcher.poll() is not None, \
            f'the launcher still ran {launcher_exit:.0f} s after the stop'
    finally:
        # nothing stopped is left behind: the launcher's group and each worker's own session
        for pgid in [launcher.pid] + list(workers.values()):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        launcher.wait()
    log.seek(0)
    output = log.read()
    assert launcher.returncode != 0, output[-3000:]
    assert rank0_exit is not None
    print(f'after the stop: rank 0 exited in {rank0_exit:.1f} s, '
          f'the launcher in {launcher_exit:.1f} s')
    # rank 0 fails when its pending collective has waited `timeout`: not much before (that wait may
    # have begun shortly before the stop, rank 0 waiting for rank 1 to reach it), not much later
    # (it reaches its next collective within an iteration, then exits)
    assert timeout - 5 < rank0_exit < timeout + 15, (rank0_exit, output[-3000:])
    assert timeout - 5 < launcher_exit < timeout + TORCHRUN_GRACE_S + 20, \
        (launcher_exit, output[-3000:])
    assert f'{timeout * 1000}ms' in output, output[-3000:]  # gloo's message names the timeout
