#!/usr/bin/env bash
# Test on GPUS processes per node with torchrun:  tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args]
exec bash "$(dirname "$0")/dist_launch.sh" test.py "$3" "$1" "$2" "${@:4}"
