#!/usr/bin/env bash
# torchrun for one of the tools:  tools/dist_launch.sh TOOL GPUS [TOOL args]
# (tools/dist_train.sh and tools/dist_test.sh are the entry points; their usage is mmdet's.)
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on every node.
TOOL=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
# The project's environment (make install's .venv, or $VENV) unless PYTHON names a Python;
# without either, the python on PATH
VENV=${VENV:-.venv}
case "$VENV" in /*) ;; *) VENV="$(cd "$(dirname "$0")/.." && pwd)/$VENV" ;; esac
if [ -z "${PYTHON:-}" ] && [ -x "$VENV/bin/python" ]; then PYTHON="$VENV/bin/python"; fi
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/$TOOL" "${@:3}" --launcher pytorch
