#!/usr/bin/env bash
# Creates .venv/ and installs the pinned stack. Idempotent: a stamp records a finished install
# of exactly this script and requirements, so a second run returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
STAMP="$VENV/.mmcoatnet-installed"
want=$(cat tools/install.sh requirements.txt setup.py | sha256sum | cut -d' ' -f1)

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
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)

step "build tools (setuptools<81, wheel, ninja)" "${PIP[@]}" "setuptools<81" wheel ninja
step "torch==2.13.0" "${PIP[@]}" torch==2.13.0
step "mmengine==0.10.7" "${PIP[@]}" mmengine==0.10.7 "setuptools<81"
# No mmcv 2.1.0 wheel exists for this torch: build it with its CPU ops; pip caches the built wheel.
step "mmcv==2.1.0 (built from source with CPU ops)" \
    env MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="$(nproc)" "${PIP[@]}" --no-build-isolation mmcv==2.1.0
step "mmdet==3.3.0, mmsegmentation==1.2.2 (with ftfy, regex that mmseg imports), test tools" \
    "${PIP[@]}" mmdet==3.3.0 mmsegmentation==1.2.2 ftfy regex pytest "setuptools<81" torch==2.13.0 mmcv==2.1.0 \
    -r requirements.txt
step "mmcoatnet (editable)" "${PIP[@]}" --no-build-isolation --no-deps -e .
step "import check" "$VENV/bin/python" -c "import mmcv.ops, mmdet, mmseg, mmcoatnet"

echo "$want" > "$STAMP"
echo "install: done ($VENV)"
