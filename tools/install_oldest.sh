#!/usr/bin/env bash
# Creates .venv-oldest/ with the oldest supported stack alone, as an OpenMMLab user's environment
# holds it before mmcoatnet is added: every package at the version in requirements-oldest.txt
# (torch 2.1.2, numpy < 2, mmcv 2.1.0 built from source with CPU ops, mmdet 3.3.0, mmseg 1.2.2,
# mmpretrain 1.2.0). `make test-oldest` then adds mmcoatnet the way the README says and runs the
# core tests in it. Idempotent, as tools/install.sh: a stamp records a finished install.
#   VENV=.venv-oldest  PYTHON=python3  MMCOATNET_WHEEL_CACHE (as tools/install.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv-oldest}
PY=${PYTHON:-python3}
LOCK=requirements-oldest.txt
STAMP="$VENV/.mmcoatnet-oldest-installed"
want=$(cat tools/install_oldest.sh "$LOCK" | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "install_oldest: $VENV is up to date"
    exit 0
fi

step() {  # step NAME CMD...: runs CMD, stops the install naming NAME if it fails
    local name=$1; shift
    echo "==> install_oldest: $name"
    if ! "$@"; then
        echo "install_oldest: step '$name' failed (command: $*)" >&2
        exit 1
    fi
}

[ -x "$VENV/bin/python" ] || step "create virtual environment $VENV" "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --disable-pip-version-check -c "$LOCK")

# mmcv 2.1.0's setup.py imports pkg_resources, which setuptools >= 81 lacks: build tools first, and
# mmcv only ever built without build isolation (which would take the newest setuptools)
step "build tools (setuptools<81, wheel, ninja)" "${PIP[@]}" "setuptools<81" wheel ninja
# PyPI's only torch 2.1.2 for x86_64 is the CUDA 12.1 build: about 2.6 GB with its nvidia-*-cu12
# wheels (without them it cannot import); it runs on CPUs
step "torch==2.1.2, torchvision==0.16.2, numpy<2" "${PIP[@]}" torch==2.1.2 torchvision==0.16.2
step "mmengine==0.10.7" "${PIP[@]}" mmengine==0.10.7

torch_key=$("$VPY" -c \
    "import torch; print(torch.__version__, torch.version.git_version, torch.version.cuda)" \
    | sha256sum | cut -c1-16)
wheels="${MMCOATNET_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmcoatnet/wheels}/torch-$torch_key"
if ! ls "$wheels"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    build_dir=$(mktemp -d)
    started=$SECONDS
    step "mmcv==2.1.0 (built from source with CPU ops against torch 2.1.2)" \
        env PATH="$(cd "$VENV" && pwd)/bin:$PATH" MMCV_WITH_OPS=1 FORCE_CUDA=0 \
        CUDA_VISIBLE_DEVICES= MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$VPY" -m pip wheel \
        --disable-pip-version-check --no-cache-dir --no-build-isolation --no-deps \
        -w "$build_dir" mmcv==2.1.0
    echo "install_oldest: mmcv built in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
    mkdir -p "$wheels" && mv "$build_dir"/mmcv-2.1.0-*.whl "$wheels"/ && rm -rf "$build_dir"
fi
step "mmcv==2.1.0 (wheel for torch build $torch_key)" \
    "${PIP[@]}" --no-deps --force-reinstall "$(ls "$wheels"/mmcv-2.1.0-*.whl | head -1)"
step "mmdet, mmsegmentation, mmpretrain (with ftfy, regex that mmseg imports), test tools" \
    "${PIP[@]}" mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0 ftfy regex safetensors \
    pytest onnx onnxruntime torch==2.1.2 mmcv==2.1.0
step "import check" "$VPY" -c \
    "import torchvision.ops, mmcv.ops, mmdet, mmseg, mmpretrain; torchvision.ops.nms"
step "dependency check" "$VPY" -m pip check

echo "$want" > "$STAMP"
echo "install_oldest: done ($VENV)"
