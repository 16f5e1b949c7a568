#!/usr/bin/env bash
# Creates .venv-newest/ with the newest stack: OneDL's maintained fork of OpenMMLab (onedl-mmengine,
# onedl-mmcv built from source with CPU ops, onedl-mmdetection, onedl-mmsegmentation,
# onedl-mmpretrain; they import as mmengine, mmcv, mmdet, mmseg, mmpretrain) on torch 2.8.0, the
# fork's recommended torch, with numpy 2. Every package at the version in requirements-newest.txt.
# `make test-newest` then adds mmcoatnet the way the README says and runs the core tests and the
# three toy trainings in it. Shaped as tools/install_oldest.sh (tools/install_common.sh: the steps,
# the cached mmcv build); idempotent: a stamp records a finished install.
#   VENV=.venv-newest  PYTHON=python3  MMCOATNET_WHEEL_CACHE  MAX_JOBS (as tools/install.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=install_newest
VENV=${VENV:-.venv-newest}
LOCK=requirements-newest.txt
STAMP="$VENV/.mmcoatnet-newest-installed"
want=$(cat tools/install_newest.sh tools/install_common.sh tools/dev/check_mmcv_ops.py "$LOCK" |
       sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "$NAME: $VENV is up to date"
    exit 0
fi
source tools/install_common.sh

# onedl-mmcv builds with setuptools >= 80 (its build-system table) and packaging >= 24.2
step "build tools (setuptools>=80, wheel, ninja, packaging>=24.2)" "${PIP[@]}" "setuptools>=80" wheel ninja \
    "packaging>=24.2"
# PyPI's torch 2.8.0 for x86_64 is its CUDA 12.8 build (about 3 GB with its nvidia-*-cu12 wheels);
# it runs on CPUs
step "torch==2.8.0, torchvision==0.23.0" "${PIP[@]}" torch==2.8.0 torchvision==0.23.0
step "onedl-mmengine==0.10.12" "${PIP[@]}" onedl-mmengine==0.10.12
# PyPI has onedl-mmcv's source only; the fork's prebuilt wheels (CUDA builds) are on its own index
install_cached_mmcv onedl-mmcv 2.3.6
# the fork's packages keep onedl-mmcv out of their requirements (their `mminstall` extra), as
# OpenMMLab's do: it is pinned here so that nothing else is fetched beside the built one
step "onedl-mmdetection, onedl-mmsegmentation, onedl-mmpretrain, test tools" \
    "${PIP[@]}" onedl-mmdetection==3.5.1 onedl-mmsegmentation==1.4.2 onedl-mmpretrain==1.3.6 \
    ftfy regex safetensors pytest onnx onnxruntime torch==2.8.0 onedl-mmcv==2.3.6
step "import check" "$VPY" -c \
    "import torchvision.ops, mmcv.ops, mmdet, mmseg, mmpretrain; torchvision.ops.nms"
step "mmcv ops check (cpu)" "$VPY" tools/dev/check_mmcv_ops.py cpu
step "dependency check" "$VPY" -m pip check

echo "$want" > "$STAMP"
echo "$NAME: done ($VENV)"
