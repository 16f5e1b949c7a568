#!/usr/bin/env bash
# Creates .venv-oldest/ with the oldest supported stack alone, as an OpenMMLab user's environment
# holds it before mmcoatnet is added: every package at the version in requirements-oldest.txt
# (torch 2.1.2, numpy < 2, mmcv 2.1.0 built from source with CPU ops, mmdet 3.3.0, mmseg 1.2.2,
# mmpretrain 1.2.0). `make test-oldest` then adds mmcoatnet the way the README says and runs the
# core tests in it. Idempotent, as tools/install.sh: a stamp records a finished install.
#   VENV=.venv-oldest  PYTHON=python3  MMCOATNET_WHEEL_CACHE  MAX_JOBS (as tools/install.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=install_oldest
VENV=${VENV:-.venv-oldest}
LOCK=requirements-oldest.txt
STAMP="$VENV/.mmcoatnet-oldest-installed"
want=$(cat tools/install_oldest.sh tools/install_common.sh tools/dev/check_mmcv_ops.py "$LOCK" |
       sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "$NAME: $VENV is up to date"
    exit 0
fi
source tools/install_common.sh  # step, the venv, PIP, install_cached_mmcv (shared with install_newest.sh)

# mmcv 2.1.0's setup.py imports pkg_resources, which setuptools >= 81 lacks: build tools first, and
# mmcv only ever built without build isolation (which would take the newest setuptools)
step "build tools (setuptools<81, wheel, ninja)" "${PIP[@]}" "setuptools<81" wheel ninja
# PyPI's only torch 2.1.2 for x86_64 is the CUDA 12.1 build: about 2.6 GB with its nvidia-*-cu12
# wheels (without them it cannot import); it runs on CPUs
step "torch==2.1.2, torchvision==0.16.2, numpy<2" "${PIP[@]}" torch==2.1.2 torchvision==0.16.2
step "mmengine==0.10.7" "${PIP[@]}" mmengine==0.10.7
install_cached_mmcv mmcv 2.1.0
step "mmdet, mmsegmentation, mmpretrain (with ftfy, regex that mmseg imports), test tools" \
    "${PIP[@]}" mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0 ftfy regex safetensors \
    pytest onnx onnxruntime torch==2.1.2 mmcv==2.1.0
step "import check" "$VPY" -c \
    "import torchvision.ops, mmcv.ops, mmdet, mmseg, mmpretrain; torchvision.ops.nms"
step "mmcv ops check (cpu)" "$VPY" tools/dev/check_mmcv_ops.py cpu
step "dependency check" "$VPY" -m pip check

echo "$want" > "$STAMP"
echo "$NAME: done ($VENV)"
