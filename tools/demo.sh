#!/usr/bin/env bash
# The demo: toy data -> train on CPU -> evaluate -> draw predictions. `make demo` runs `det`,
# `make demo-seg` runs `seg`. Everything lands under work_dirs/demo_<task>/. `make demo-transfer`
# runs `transfer`: pre-train on the toy classification set (mmpretrain), fine-tune the toy Mask
# R-CNN and UperNet from it and from scratch with the same budget, and compare (work_dirs/demo_transfer/).
set -euo pipefail
cd "$(dirname "$0")/.."
task=${1:-det}
PY=${PYTHON:-.venv/bin/python}
transfer() {
    local out=work_dirs/demo_transfer start=$(date +%s)
    [ -e data/toy_cls/val ] || "$PY" tools/make_toy_data.py --out data --only cls
    [ -e data/toy_coco/annotations/instances_val.json ] && [ -e data/toy_ade/annotations/validation ] \
        || "$PY" tools/make_toy_data.py --out data
    "$PY" tools/train.py configs/toy/coatnet-pico_toy-cls.py --work-dir "$out/pretrain"
    local pretrained="$out/pretrain/coatnet-pico_toy-cls.pth"
    cp "$(cat "$out/pretrain/last_checkpoint")" "$pretrained"
    local det=configs/toy/transfer/maskrcnn_coatnet-pico_toy-finetune.py
    local seg=configs/toy/transfer/upernet_coatnet-pico_toy-finetune.py
    for name in det seg; do
        local config=$det; [ "$name" = seg ] && config=$seg
        "$PY" tools/train.py "$config" --work-dir "$out/${name}_pretrained" \
            --cfg-options "model.backbone.init_cfg.checkpoint=$pretrained"
        "$PY" tools/train.py "$config" --work-dir "$out/${name}_scratch" \
            --cfg-options model.backbone.init_cfg=None
    done
    echo
    "$PY" tools/analysis_tools/transfer_report.py "$out" --out "$out/transfer.json"
    echo "demo (transfer) finished in $(( $(date +%s) - start )) s; runs and transfer.json under $out/"
}

case "$task" in
    transfer) transfer; exit 0 ;;
    det) config=configs/toy/maskrcnn_coatnet-pico_toy.py; data=data/toy_coco/annotations/instances_val.json ;;
    seg) config=configs/toy/upernet_coatnet-pico_toy.py; data=data/toy_ade/annotations/validation ;;
    *) echo "usage: tools/demo.sh det|seg|transfer" >&2; exit 2 ;;
esac
work_dir=work_dirs/demo_$task
start=$(date +%s)

[ -e "$data" ] || "$PY" tools/make_toy_data.py --out data
"$PY" tools/train.py "$config" --work-dir "$work_dir"
checkpoint=$(cat "$work_dir/last_checkpoint")
"$PY" tools/test.py "$config" "$checkpoint" --work-dir "$work_dir/test"
"$PY" tools/draw_predictions.py "$config" "$checkpoint" --out "$work_dir/predictions" --num 6

# the figures docs/results/demo_<task>.json holds, when copied there (tools/dev/docs_tables.py)
"$PY" - "$work_dir" "$config" "$task" "$(( $(date +%s) - start ))" <<'EOF'
import glob, json, sys
from mmcoatnet.utils.results import write_json
work_dir, config, task, seconds = sys.argv[1:]
with open(sorted(glob.glob(f'{work_dir}/test/*/*.json'))[-1]) as f:
    metrics = json.load(f)
keys = {'det': ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50'), 'seg': ('mIoU', 'aAcc')}
write_json(f'{work_dir}/demo_{task}.json', dict(
    target={'det': 'demo', 'seg': 'demo-seg'}[task], config=config, seconds=int(seconds),
    metrics={key: metrics[key] for key in keys[task]}))
EOF

echo
echo "demo ($task) finished in $(( $(date +%s) - start )) s"
echo "  checkpoint:  $checkpoint"
echo "  metrics:     the last 'Epoch(test)' / 'Iter(test)' line above, $work_dir/demo_$task.json"
echo "  predictions: $work_dir/predictions/*.png (left: ground truth, right: prediction)"
