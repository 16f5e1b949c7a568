#!/usr/bin/env bash
# The demo: toy data -> train on CPU -> evaluate -> draw predictions. `make demo` runs `det`,
# `make demo-seg` runs `seg`. Everything lands under work_dirs/demo_<task>/.
set -euo pipefail
cd "$(dirname "$0")/.."
task=${1:-det}
PY=${PYTHON:-.venv/bin/python}
case "$task" in
    det) config=configs/toy/mask-rcnn_coatnet-pico_fpn_toy.py; data=data/toy_coco/annotations/instances_val.json ;;
    seg) config=configs/toy/upernet_coatnet-pico_toy.py; data=data/toy_ade/annotations/validation ;;
    *) echo "usage: tools/demo.sh det|seg" >&2; exit 2 ;;
esac
work_dir=work_dirs/demo_$task
start=$(date +%s)

[ -e "$data" ] || "$PY" tools/make_toy_data.py --out data
"$PY" tools/train.py "$config" --work-dir "$work_dir"
checkpoint=$(cat "$work_dir/last_checkpoint")
"$PY" tools/test.py "$config" "$checkpoint" --work-dir "$work_dir/test"
"$PY" tools/draw_predictions.py "$config" "$checkpoint" --out "$work_dir/predictions" --num 6

echo
echo "demo ($task) finished in $(( $(date +%s) - start )) s"
echo "  checkpoint:  $checkpoint"
echo "  metrics:     the last 'Epoch(test)' / 'Iter(test)' line above, and $work_dir/test/"
echo "  predictions: $work_dir/predictions/*.png (left: ground truth, right: prediction)"
