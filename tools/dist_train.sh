#!/usr/bin/env bash
# Train on GPUS processes per node with torchrun:  tools/dist_train.sh CONFIG GPUS [train.py args]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on every node.
exec bash "$(dirname "$0")/dist_launch.sh" train.py "$2" "$1" "${@:3}"
