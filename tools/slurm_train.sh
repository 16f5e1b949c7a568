#!/usr/bin/env bash
# Train with slurm:  [GPUS=16 GPUS_PER_NODE=8] tools/slurm_train.sh PARTITION JOB CONFIG WORK_DIR [train.py args]
exec bash "$(dirname "$0")/slurm_launch.sh" train.py "$1" "$2" "$3" --work-dir="$4" "${@:5}"
