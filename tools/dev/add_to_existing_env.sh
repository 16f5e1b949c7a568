#!/usr/bin/env bash
# Adds mmcoatnet to an environment that already holds torch, mmcv and mmdet, with the README's one
# command, and fails if that changed any of them (it must not replace the user's torch or the mmcv
# built for it, nor add OpenMMLab's packages beside OneDL's fork of them, which import under the
# same names).   tools/dev/add_to_existing_env.sh VENV
set -euo pipefail
cd "$(dirname "$0")/../.."
VPY="$1/bin/python"
stack() {
    "$VPY" -m pip list --disable-pip-version-check --format=freeze 2>/dev/null |
        grep -Ei '^(torch|torchvision|numpy|(onedl-)?(mmcv|mmengine|mmsegmentation|mmpretrain)|mmdet|onedl-mmdetection)=='
}
before=$(stack)
[ -n "$before" ] || { echo "add_to_existing_env: no torch or OpenMMLab stack in $1" >&2; exit 1; }
"$VPY" -m pip uninstall --disable-pip-version-check -y mmcoatnet >/dev/null 2>&1 || true
# the README's command (docs/install.md, "Into an existing environment")
"$VPY" -m pip install --disable-pip-version-check -e .
after=$(stack)
if [ "$before" != "$after" ]; then
    echo "add_to_existing_env: installing mmcoatnet changed the stack:" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    exit 1
fi
"$VPY" -m pip check --disable-pip-version-check
"$VPY" -c "import mmcoatnet, torch; print('mmcoatnet', mmcoatnet.__version__, 'added; torch',
torch.__version__, 'and the rest of the stack unchanged')"
