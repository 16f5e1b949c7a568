"""The launch scripts (tools/dist_launch.sh behind dist_train.sh and dist_test.sh,
tools/slurm_launch.sh behind the slurm ones) run the project's environment without PYTHON=: copies
of the scripts in a scratch tree, whose Pythons and srun only say how they were called."""
import os
import os.path as osp
import shutil
import stat
import subprocess

import pytest

from helpers import ROOT


def fake(path, name):
    """An executable that prints its name and arguments instead of running anything."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(f'#!/usr/bin/env bash\necho "{name} $*"\n')
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)


@pytest.fixture
def tree(tmp_path):
    os.makedirs(tmp_path / 'tools')
    for script in ('dist_launch.sh', 'slurm_launch.sh'):
        shutil.copy(osp.join(ROOT, 'tools', script), tmp_path / 'tools' / script)
    fake(str(tmp_path / 'bin' / 'python'), 'path-python')
    fake(str(tmp_path / 'bin' / 'srun'), 'srun')
    return tmp_path


def python_used(tree, script, **env):
    """The Python a launcher ran: the fake's name under torchrun (dist_launch.sh execs it), the
    path srun was handed (slurm_launch.sh), as it was named."""
    environment = {k: v for k, v in os.environ.items() if k not in ('PYTHON', 'VENV')}
    environment.update(PATH=f"{tree / 'bin'}:{os.environ['PATH']}", **env)
    args = ['train.py', '2', 'config.py'] if script == 'dist_launch.sh' else \
        ['train.py', 'PARTITION', 'JOB', 'config.py']
    words = subprocess.run(['bash', str(tree / 'tools' / script), *args], env=environment,
                           capture_output=True, text=True, check=True).stdout.split()
    return words[0] if script == 'dist_launch.sh' else words[words.index('-u') - 1]


@pytest.mark.parametrize('script', ['dist_launch.sh', 'slurm_launch.sh'])
def test_the_launchers_take_the_projects_venv_unless_python_names_another(tree, script):
    def expect(name, path):
        return name if script == 'dist_launch.sh' else str(path)

    # no environment made: the python on PATH
    assert python_used(tree, script) == expect('path-python', 'python')
    fake(str(tree / '.venv' / 'bin' / 'python'), 'venv-python')
    fake(str(tree / '.venv-cu126' / 'bin' / 'python'), 'cu126-python')
    fake(str(tree / 'other' / 'python'), 'other-python')
    assert python_used(tree, script) == expect('venv-python', tree / '.venv' / 'bin' / 'python')
    assert python_used(tree, script, VENV='.venv-cu126') == \
        expect('cu126-python', tree / '.venv-cu126' / 'bin' / 'python')
    assert python_used(tree, script, VENV=str(tree / '.venv-cu126')) == \
        expect('cu126-python', tree / '.venv-cu126' / 'bin' / 'python')
    other = tree / 'other' / 'python'
    assert python_used(tree, script, PYTHON=str(other)) == expect('other-python', other)
