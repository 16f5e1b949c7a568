#!/usr/bin/env bash
# Creates .venv/ and installs the locked stack: every package at the version in
# requirements-lock.txt. Idempotent: a stamp records a finished install of exactly this script and
# these requirements, so a second run returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
STAMP="$VENV/.mmcoatnet-installed"
want=$(cat tools/install.sh requirements-lock.txt pyproject.toml | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "install: $VENV is up to date"
    exit 0
fi

step() {  # step NAME CMD...: runs CMD, stops the install naming NAME if it fails
    local name=$1; shift
    echo "==> install: $name"
    if ! "$@"; then
        echo "install: step '$name' failed (command: $*)" >&2
        exit 1
    fi
}

[ -x "$VENV/bin/python" ] || step "create virtual environment $VENV" "$PY" -m venv "$VENV"
# Every step is held to the lock file, so nothing floats to whatever is newest on the day.
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -c requirements-lock.txt)

step "build tools (setuptools<81, wheel, ninja)" "${PIP[@]}" "setuptools<81" wheel ninja
# `===` is an exact string match: it takes PyPI's default build (CUDA-enabled, runs on CPUs), never
# a local 2.13.0+cpu build, next to which PyPI's torchvision cannot import.
step "torch===2.13.0, torchvision==0.28.0" "${PIP[@]}" "torch===2.13.0" torchvision==0.28.0 "setuptools<81"
step "mmengine==0.10.7" "${PIP[@]}" mmengine==0.10.7 "setuptools<81"

# No mmcv 2.1.0 wheel exists for this torch: it is built from source with its CPU ops. The built
# wheel is kept in a cache keyed by the exact torch build (version, commit, CUDA), never in pip's
# own cache, which would hand a wheel built against one torch build to another.
torch_key=$("$VENV/bin/python" -c \
    "import torch; print(torch.__version__, torch.version.git_version, torch.version.cuda)" \
    | sha256sum | cut -c1-16)
wheels="${MMCOATNET_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmcoatnet/wheels}/torch-$torch_key"
if ! ls "$wheels"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    build_dir=$(mktemp -d)
    step "mmcv==2.1.0 (built from source with CPU ops; about 20 minutes on 2 cores)" \
        env MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="$(nproc)" "$VENV/bin/python" -m pip wheel \
        --disable-pip-version-check --no-cache-dir --no-build-isolation --no-deps \
        -w "$build_dir" mmcv==2.1.0
    mkdir -p "$wheels" && mv "$build_dir"/mmcv-2.1.0-*.whl "$wheels"/ && rm -rf "$build_dir"
fi
step "mmcv==2.1.0 (wheel for torch build $torch_key)" \
    "${PIP[@]}" --no-deps --force-reinstall "$(ls "$wheels"/mmcv-2.1.0-*.whl | head -1)"
step "mmdet, mmsegmentation, mmpretrain (with ftfy, regex that mmseg imports), test tools" \
    "${PIP[@]}" mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0 ftfy regex safetensors \
    pytest pytest-xdist ruff timm "setuptools<81" "torch===2.13.0" torchvision==0.28.0 mmcv==2.1.0
step "mmcoatnet (editable)" "${PIP[@]}" --no-build-isolation --no-deps -e .
step "deployment extra (onnx, onnxruntime: tools/deployment/)" "${PIP[@]}" --no-build-isolation -e ".[deploy]"
# mmdeploy pins protobuf<=3.20.2, which onnx excludes: it gets a directory of its own, which
# tools/deployment/mmdeploy_export.py puts on sys.path (pip check does not see it)
step "mmdeploy==1.3.1 into $VENV/mmdeploy-site" "${PIP[@]}" --no-deps --upgrade \
    --target "$VENV/mmdeploy-site" mmdeploy==1.3.1 aenum multiprocess dill
step "import check" "$VENV/bin/python" -c \
    "import torchvision.ops, mmcv.ops, mmdet, mmseg, mmpretrain, mmcoatnet; torchvision.ops.nms"
step "dependency check" "$VENV/bin/python" -m pip check

echo "$want" > "$STAMP"
echo "install: done ($VENV)"
