#!/usr/bin/env bash
# srun for one of the tools:  [GPUS=16 GPUS_PER_NODE=8] tools/slurm_launch.sh TOOL PARTITION JOB [TOOL args]
# (tools/slurm_train.sh and tools/slurm_test.sh are the entry points; their usage is mmdet's.)
set -x
TOOL=$1
PARTITION=$2
JOB_NAME=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
# The project's environment (make install's .venv, or $VENV) unless PYTHON names a Python;
# without either, the python on PATH
VENV=${VENV:-.venv}
case "$VENV" in /*) ;; *) VENV="$(cd "$(dirname "$0")/.." && pwd)/$VENV" ;; esac
if [ -z "${PYTHON:-}" ] && [ -x "$VENV/bin/python" ]; then PYTHON="$VENV/bin/python"; fi
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$(dirname "$0")/$TOOL" "${@:4}" --launcher="slurm"
