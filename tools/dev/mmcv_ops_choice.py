"""Which ops tools/install.sh compiles mmcv with, from MMCOATNET_MMCV_OPS and the machine's facts.

    python tools/dev/mmcv_ops_choice.py auto|cpu|cuda            prints cpu or cuda
    python tools/dev/mmcv_ops_choice.py auto --facts '{"nvidia_driver": true, ...}'

auto: CUDA ops where torch sees a GPU, CPU ops where the machine has no NVIDIA driver. Where it has
one (``/dev/nvidiactl`` or ``nvidia-smi``) but torch sees no GPU it can use, the choice stops the
install (exit 1) with the reason and the fix: CPU ops there would leave a GPU machine without mmcv's
GPU ops, which nothing would say until a recipe fails on the GPU. An explicit ``cpu`` or ``cuda`` is
kept (``cuda`` builds for TORCH_CUDA_ARCH_LIST without a GPU; a driver torch cannot use is named).
Messages go to stderr; ``--facts`` replaces what would be read from the machine (the tests).
"""
import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys

OLD_DRIVER_FIX = ('MMCOATNET_TORCH_INDEX=cu126 make install (torch for CUDA 12.6: Linux driver '
                  '525.60.13 or newer), or update the NVIDIA driver (580 or newer for CUDA 13)')
CPU_ON_PURPOSE = 'for CPU ops on purpose: MMCOATNET_MMCV_OPS=cpu make install'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('setting', choices=['auto', 'cpu', 'cuda'], help='MMCOATNET_MMCV_OPS')
    parser.add_argument('--facts', type=json.loads, help='the facts as JSON, instead of reading '
                        'the machine (keys: those of gather_facts)')
    return parser.parse_args(argv)


def driver_cuda_version():
    """The CUDA version the driver supports (cuDriverGetVersion: 12040 for 12.4), or None."""
    try:
        libcuda = ctypes.CDLL('libcuda.so.1')
    except OSError:
        return None
    version = ctypes.c_int()
    return version.value if libcuda.cuDriverGetVersion(ctypes.byref(version)) == 0 else None


def gather_facts() -> dict:
    import torch
    facts = dict(torch=torch.__version__, torch_cuda=torch.version.cuda,
                 gpu=torch.cuda.is_available(),
                 nvidia_driver=os.path.exists('/dev/nvidiactl') or bool(shutil.which('nvidia-smi')),
                 cuda_visible_devices=os.environ.get('CUDA_VISIBLE_DEVICES'))
    if facts['nvidia_driver'] and not facts['gpu']:
        facts['driver_cuda'] = driver_cuda_version()
        if shutil.which('nvidia-smi'):
            try:
                listed = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True,
                                        timeout=60)
                facts['gpus_listed'] = sum(line.startswith('GPU ')
                                           for line in listed.stdout.splitlines())
            except (OSError, subprocess.TimeoutExpired):
                pass
        if torch.version.cuda:
            try:
                torch.cuda.init()
            except Exception as error:  # torch's own reason, to show
                facts['cuda_init_error'] = str(error).strip().splitlines()[0]
    return facts


def why_no_gpu(facts: dict):
    """(reason, fix) for a machine with an NVIDIA driver whose GPU torch cannot use."""
    torch_cuda = facts.get('torch_cuda')
    if not torch_cuda:
        return (f'torch {facts.get("torch")} is a CPU-only build',
                'a CUDA build of torch: unset MMCOATNET_TORCH_INDEX (PyPI\'s default is CUDA '
                '13.0) or set it to cu126 or cu128')
    hidden = facts.get('cuda_visible_devices')
    if hidden is not None and hidden.strip() in ('', '-1'):
        return f'CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU', 'unset CUDA_VISIBLE_DEVICES'
    driver = facts.get('driver_cuda')
    torch_major = int(str(torch_cuda).split('.')[0])
    if driver and driver // 1000 < torch_major:
        return (f'the driver supports CUDA {driver // 1000}.{driver % 1000 // 10}, torch '
                f'{facts.get("torch")} needs CUDA {torch_cuda}', OLD_DRIVER_FIX)
    if facts.get('gpus_listed') == 0:
        return ('nvidia-smi lists no GPU here (a login or build node?)',
                'run make install on a GPU node, or build the CUDA ops here for the GPUs that '
                'will run it: MMCOATNET_MMCV_OPS=cuda TORCH_CUDA_ARCH_LIST=8.0 make install '
                '(8.0: A100; 9.0: H100)')
    error = facts.get('cuda_init_error') or 'torch.cuda.is_available() is False'
    return f'torch (CUDA {torch_cuda}) cannot use it: {error}', (
        f'if the driver is older than CUDA {torch_cuda} needs: {OLD_DRIVER_FIX}')


def decide(setting: str, facts: dict):
    """(ops, message, stop): the ops to build ('cpu' or 'cuda'), what to tell the user, and
    whether the install must stop instead (then ops is None)."""
    if setting == 'cpu':
        return 'cpu', None, False
    gpu = facts.get('gpu')
    stranded = facts.get('nvidia_driver') and not gpu
    if setting == 'cuda':
        if stranded:
            reason, fix = why_no_gpu(facts)
            return 'cuda', (f'install: MMCOATNET_MMCV_OPS=cuda: building without a GPU torch can '
                            f'use: {reason}. Fix that for training here: {fix}'), False
        return 'cuda', None, False
    if gpu:
        return 'cuda', 'install: MMCOATNET_MMCV_OPS=auto: cuda ops (torch sees a GPU)', False
    if not stranded:
        return 'cpu', 'install: MMCOATNET_MMCV_OPS=auto: cpu ops (no NVIDIA driver here)', False
    reason, fix = why_no_gpu(facts)
    return None, (f'install: stopped: this machine has an NVIDIA driver, but torch sees no GPU it '
                  f'can use: {reason}. CPU-only mmcv here would fail on the GPU later. Fix: {fix}; '
                  f'{CPU_ON_PURPOSE}'), True


def main(argv=None) -> int:
    args = parse_args(argv)
    ops, message, stop = decide(args.setting, args.facts if args.facts is not None
                                else gather_facts())
    if message:
        print(message, file=sys.stderr)
    if stop:
        return 1
    print(ops)
    return 0


if __name__ == '__main__':
    sys.exit(main())
