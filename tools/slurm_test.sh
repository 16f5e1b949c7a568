#!/usr/bin/env bash
# Test with slurm:  [GPUS=8] tools/slurm_test.sh PARTITION JOB CONFIG CHECKPOINT [test.py args]
exec bash "$(dirname "$0")/slurm_launch.sh" test.py "$1" "$2" "$3" "$4" "${@:5}"
