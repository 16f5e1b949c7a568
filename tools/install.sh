#!/usr/bin/env bash
# Creates .venv/ and installs the locked stack: every package at the version in
# requirements-lock.txt. Idempotent: a stamp records a finished install of exactly this script,
# these requirements and the settings below, so a second run returns at once.
#
# Settings (environment variables, all optional):
#   VENV=.venv               the virtual environment to create or complete
#   PYTHON=python3           the interpreter that creates it
#   MMCOATNET_MMCV_OPS=auto  the ops mmcv 2.1.0 is compiled with: cpu, cuda (CPU and CUDA ops), or
#                            auto = cuda when torch sees a GPU, cpu without an NVIDIA driver; with a
#                            driver whose GPU torch cannot use, auto stops with the reason and the fix
#                            (tools/dev/mmcv_ops_choice.py). cuda needs no GPU to build: the result
#                            imports and runs its CPU ops on any machine.
#   TORCH_CUDA_ARCH_LIST     cuda: the GPU architectures to compile for, e.g. "8.0" or
#                            "8.0;8.6;9.0+PTX". Default: the visible GPUs' compute capabilities
#                            (the highest +PTX); with no GPU visible, 8.0+PTX (Ampere and newer).
#   MMCOATNET_TORCH_INDEX    torch from PyTorch's own index instead of PyPI's default build (which
#                            is CUDA 13.0: Turing and newer, NVIDIA driver >= 580): a variant, cu126
#                            or cu128 (or cu130), or an index URL that ends in the variant, e.g.
#                            https://download.pytorch.org/whl/cu126. Into VENV as the default: to
#                            switch an existing VENV to another variant, make clean-venv first.
#   MMCOATNET_CUDA_HOME      cuda: the CUDA toolkit to build with. Default: with a CUDA 13 torch, a
#                            toolkit assembled from PyPI's wheels in $VENV/cuda; with a CUDA 12 torch
#                            (PyPI has no CUDA 12 nvcc), the one torch finds (CUDA_HOME, nvcc on PATH,
#                            /usr/local/cuda). Its major version must be torch's.
#   MMCOATNET_WHEEL_CACHE    where built mmcv wheels are kept (~/.cache/mmcoatnet/wheels)
#   MAX_JOBS                 parallel compile jobs of the mmcv build (default: all cores)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
STAMP="$VENV/.mmcoatnet-installed"
# The settings a VENV was last installed with are its defaults, so that a plain `make install` (which
# every make target runs first) keeps its torch variant and mmcv ops: one environment whichever
# route made it. A setting given (MMCOATNET_TORCH_INDEX= for PyPI's torch) replaces the saved one.
SETTINGS="$VENV/.mmcoatnet-settings"
saved_ops='' saved_arch='' saved_index='' saved_cuda=''
[ -f "$SETTINGS" ] && source "$SETTINGS"
ops=${MMCOATNET_MMCV_OPS:-${saved_ops:-auto}}
torch_index=${MMCOATNET_TORCH_INDEX-$saved_index}
TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$saved_arch}
MMCOATNET_CUDA_HOME=${MMCOATNET_CUDA_HOME:-$saved_cuda}
requested=$(printf 'saved_ops=%q saved_arch=%q saved_index=%q saved_cuda=%q' "$ops" \
            "$TORCH_CUDA_ARCH_LIST" "$torch_index" "$MMCOATNET_CUDA_HOME")
case $ops in
    auto|cpu|cuda) ;;
    *) echo "install: MMCOATNET_MMCV_OPS is '$ops'; it takes auto, cpu or cuda" >&2; exit 2 ;;
esac
want=$({ cat tools/install.sh tools/dev/check_mmcv_ops.py tools/dev/mmcv_ops_choice.py \
             requirements-lock.txt pyproject.toml
         echo "ops=$ops arch=${TORCH_CUDA_ARCH_LIST:-} index=$torch_index cuda=${MMCOATNET_CUDA_HOME:-}"
       } | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "install: $VENV is up to date"
    exit 0
fi
[ -f "$SETTINGS" ] && echo "install: MMCOATNET_MMCV_OPS=$ops" \
    "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MMCOATNET_TORCH_INDEX=$torch_index" \
    "(what is not set comes from $SETTINGS, the settings $VENV was installed with)"

step() {  # step NAME CMD...: runs CMD, stops the install naming NAME if it fails
    local name=$1; shift
    echo "==> install: $name"
    if ! "$@"; then
        echo "install: step '$name' failed (command: $*)" >&2
        exit 1
    fi
}
fail() { echo "install: $*" >&2; exit 1; }

[ -x "$VENV/bin/python" ] || step "create virtual environment $VENV" "$PY" -m venv "$VENV"
venv_abs=$(cd "$VENV" && pwd)
VPY="$venv_abs/bin/python"

# Every step is held to the lock file, so nothing floats to whatever is newest on the day.
# `===` is an exact string match: it takes PyPI's default build (CUDA 13.0, runs on CPUs), never a
# local 2.13.0+cpu build, next to which PyPI's torchvision cannot import.
lock=requirements-lock.txt
torch_reqs=("torch===2.13.0" torchvision==0.28.0)
torch_from=()
if [ -n "$torch_index" ]; then
    # PyPI's torch is one build; PyTorch's index has one per CUDA version, each with a local
    # version (2.13.0+cu126) that `===2.13.0` does not match, and with CUDA 12 runtime wheels
    # (nvidia-*-cu12) in place of the lock's CUDA 13 ones. The lock is applied without its torch,
    # triton, cuda-* and nvidia-* pins, which that torch build fixes itself; the rest holds.
    case $torch_index in
        */*) torch_url=${torch_index%/}; variant=${torch_url##*/} ;;
        *) variant=$torch_index; torch_url=https://download.pytorch.org/whl/$variant ;;
    esac
    [[ $variant =~ ^[a-z]+[0-9.]*$ ]] ||
        fail "MMCOATNET_TORCH_INDEX=$torch_index: its last part '$variant' is no variant (cu126, cu128)"
    lock="$venv_abs/.mmcoatnet-lock-$variant.txt"
    { grep -Ev '^(torch|triton|cuda-[a-z-]+|nvidia-[a-z0-9-]+)[=<>~!]' requirements-lock.txt
      echo "torch==2.13.0+$variant"; } > "$lock"
    torch_reqs=("torch==2.13.0+$variant" "torchvision==0.28.0+$variant")
    # an extra index, not a replacement: the exact +variant pin can only come from it
    torch_from=(--extra-index-url "$torch_url")
fi
PIP=("$VPY" -m pip install --disable-pip-version-check -c "$lock")

step "build tools (setuptools<81, wheel, ninja)" "${PIP[@]}" "setuptools<81" wheel ninja
step "${torch_reqs[*]}${torch_index:+ from $torch_url}" \
    "${PIP[@]}" "${torch_from[@]}" "${torch_reqs[@]}" "setuptools<81"
step "mmengine==0.10.7" "${PIP[@]}" mmengine==0.10.7 "setuptools<81"

# --- which mmcv ops to compile, and for which GPUs
# torch_cuda: torch's CUDA version ('' for a CPU-only torch); gpu: 1 where torch sees a GPU, else 0
IFS=, read -r torch_cuda gpu <<< "$("$VPY" -c \
    "import torch; print(torch.version.cuda or '', int(torch.cuda.is_available()), sep=',')")"
# auto: cuda where torch sees a GPU, cpu where there is no NVIDIA driver; a driver whose GPU torch
# cannot use stops the install with the reason and the fix (CPU ops there would fail on the GPU later)
ops=$("$VPY" tools/dev/mmcv_ops_choice.py "$ops") || exit 1
if [ "$ops" = cuda ]; then
    [ -n "$torch_cuda" ] || fail "MMCOATNET_MMCV_OPS=cuda needs a CUDA build of torch, not $("$VPY" -c 'import torch; print(torch.__version__)')"
    cuda_major=${torch_cuda%%.*}
    arch_list=${TORCH_CUDA_ARCH_LIST:-}
    if [ -z "$arch_list" ] && [ "$gpu" = 1 ]; then
        arch_list=$("$VPY" -c "
import sys, torch
caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
built = sorted(int(a[3:]) for a in torch.cuda.get_arch_list() if a.startswith('sm_'))
low = [f'{a}.{b}' for a, b in caps if 10 * a + b < built[0]]
if low:
    sys.exit(f'install: GPU compute capability {low[0]} is older than this torch build supports '
             f'(sm_{built[0]} and newer, CUDA {torch.version.cuda}): set MMCOATNET_TORCH_INDEX=cu126')
print(';'.join(f'{a}.{b}' for a, b in caps) + '+PTX')") || exit 1
    fi
    arch_list=${arch_list:-8.0+PTX}
    arch_list=$(echo "$arch_list" | tr ', ' ';;' | sed 's/;;*/;/g; s/^;//; s/;$//')
    # torch's oldest architecture: mmcv ops for an older GPU would build, but torch would not run
    # there (CUDA 13 builds start at Turing, 7.5; PyTorch's cu128 builds too since torch 2.11)
    torch_low=$("$VPY" -c "import torch; print(min([int(a[3:]) for a in torch.cuda.get_arch_list() if a.startswith('sm_')] or [0]))")
    for arch in ${arch_list//;/ }; do
        [[ $arch =~ ^([0-9]+)\.([0-9]+)a?(\+PTX)?$ ]] || fail "TORCH_CUDA_ARCH_LIST: '$arch' is no architecture"
        (( BASH_REMATCH[1] * 10 + BASH_REMATCH[2] >= torch_low )) || fail \
            "TORCH_CUDA_ARCH_LIST: torch (CUDA $torch_cuda) has no code for $arch, its oldest is sm_$torch_low: MMCOATNET_TORCH_INDEX=cu126 (Maxwell to Hopper)"
    done
    echo "install: mmcv CUDA ops for TORCH_CUDA_ARCH_LIST=$arch_list (torch built with CUDA $torch_cuda)"

    # --- the CUDA toolkit to compile with
    if [ -n "${MMCOATNET_CUDA_HOME:-}" ]; then
        cuda_home=$MMCOATNET_CUDA_HOME
    elif [ "$cuda_major" -ge 13 ]; then
        # PyPI's CUDA 13 wheels hold a whole toolkit under site-packages/nvidia/cu13/ (bin/nvcc,
        # nvvm/, include/ with CCCL in include/cccl, lib/): its release is the one torch runs on.
        tk=$("$VPY" -c "import importlib.metadata as m; print(m.version('cuda-toolkit'))" 2>/dev/null ||
             echo "$torch_cuda.*")
        step "CUDA $torch_cuda compiler and headers (cuda-toolkit[nvcc,cccl,...]==$tk)" "${PIP[@]}" \
            "cuda-toolkit[nvcc,cccl,cudart,cublas,cusolver,cusparse]==$tk" "${torch_reqs[@]}"
        cuda_home="$venv_abs/cuda"
        assemble_cuda_home() {  # torch's extension builder wants bin/nvcc, include/, lib64/libcudart.so
            local src
            src=$("$VPY" -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu$cuda_major'))")
            [ -x "$src/bin/nvcc" ] || { echo "no nvcc in $src" >&2; return 1; }
            rm -rf "$cuda_home" && mkdir -p "$cuda_home/lib64" &&
                ln -s "$src/bin" "$src/include" "$src/nvvm" "$cuda_home/" &&
                ln -s "$src"/lib/* "$cuda_home/lib64/" &&
                ln -s "libcudart.so.$cuda_major" "$cuda_home/lib64/libcudart.so"
        }
        step "CUDA_HOME $cuda_home (links into site-packages/nvidia/cu$cuda_major)" assemble_cuda_home
    else
        # nvidia-cuda-nvcc-cu12 (12.x on PyPI) holds ptxas but no nvcc: a CUDA 12 toolkit comes from
        # NVIDIA (or the distribution), found as torch finds it
        cuda_home=$("$VPY" -c "from torch.utils.cpp_extension import CUDA_HOME; print(CUDA_HOME or '')" 2>/dev/null)
        [ -n "$cuda_home" ] || fail "torch is built with CUDA $torch_cuda and PyPI has no CUDA 12 nvcc:" \
            "install NVIDIA's CUDA $torch_cuda toolkit and set CUDA_HOME (or MMCOATNET_CUDA_HOME)"
    fi
    nvcc_version=$("$cuda_home/bin/nvcc" --version | sed -n 's/.*release [0-9.]*, V\([0-9.]*\).*/\1/p')
    [ "${nvcc_version%%.*}" = "$cuda_major" ] ||
        fail "$cuda_home/bin/nvcc is CUDA ${nvcc_version:-unknown}; torch is built with CUDA $torch_cuda"
fi

# No mmcv 2.1.0 wheel exists for this torch: it is built from source. The built wheel is kept in a
# cache keyed by the exact torch build (version, commit, CUDA) and, for CUDA ops, by the nvcc
# release and the architectures; never in pip's own cache, which would hand a wheel built against
# one torch build to another. CPU-op wheels keep the directory they always had.
torch_key=$("$VPY" -c \
    "import torch; print(torch.__version__, torch.version.git_version, torch.version.cuda)" \
    | sha256sum | cut -c1-16)
wheels="${MMCOATNET_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmcoatnet/wheels}/torch-$torch_key"
# ninja from the venv, for parallel compiles (torch's extension builder looks for it on PATH)
build_env=(PATH="$venv_abs/bin:$PATH" MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}")
if [ "$ops" = cuda ]; then
    wheels="$wheels-cuda$nvcc_version-sm$(echo "$arch_list" | sed 's/\.//g; s/+PTX/ptx/g; s/;/-/g')"
    build_env+=(FORCE_CUDA=1 CUDA_HOME="$cuda_home" TORCH_CUDA_ARCH_LIST="$arch_list")
    what="CPU and CUDA ops for $arch_list, CUDA $nvcc_version; the longest step, timed below"
else
    # mmcv's setup.py compiles CUDA ops whenever torch sees a GPU: hide it
    build_env+=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
    what="CPU ops; the longest step, timed below"
fi
if ! ls "$wheels"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    build_dir=$(mktemp -d)
    started=$SECONDS
    step "mmcv==2.1.0 (built from source with $what)" \
        env "${build_env[@]}" "$VPY" -m pip wheel \
        --disable-pip-version-check --no-cache-dir --no-build-isolation --no-deps \
        -w "$build_dir" mmcv==2.1.0
    echo "install: mmcv built in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
    mkdir -p "$wheels" && mv "$build_dir"/mmcv-2.1.0-*.whl "$wheels"/ && rm -rf "$build_dir"
fi
step "mmcv==2.1.0 ($ops ops, wheel $wheels)" \
    "${PIP[@]}" --no-deps --force-reinstall "$(ls "$wheels"/mmcv-2.1.0-*.whl | head -1)"
step "mmdet, mmsegmentation, mmpretrain (with ftfy, regex that mmseg imports), test tools" \
    "${PIP[@]}" mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0 ftfy regex \
    safetensors pytest pytest-xdist ruff timm "setuptools<81" "${torch_reqs[@]}" mmcv==2.1.0
step "mmcoatnet (editable)" "${PIP[@]}" --no-build-isolation --no-deps -e .
step "deployment extra (onnx, onnxruntime, onnxscript: tools/deployment/)" "${PIP[@]}" --no-build-isolation -e ".[deploy]"
# mmdeploy pins protobuf<=3.20.2, which onnx excludes: it gets a directory of its own, which
# tools/deployment/mmdeploy_export.py puts on sys.path (pip check does not see it)
step "mmdeploy==1.3.1 into $VENV/mmdeploy-site" "${PIP[@]}" --no-deps --upgrade \
    --target "$VENV/mmdeploy-site" mmdeploy==1.3.1 aenum multiprocess dill
step "import check" "$VPY" -c \
    "import torchvision.ops, mmcv.ops, mmdet, mmseg, mmpretrain, mmcoatnet; torchvision.ops.nms"
# mmcv's ops (nms, roi_align): on CPU tensors always, on CUDA tensors too where a GPU is visible;
# the same check as every other stack's install (tools/dev/check_mmcv_ops.py)
step "mmcv ops check ($ops)" "$VPY" tools/dev/check_mmcv_ops.py "$ops"
step "dependency check" "$VPY" -m pip check

echo "$want" > "$STAMP"
echo "$requested" > "$SETTINGS"
echo "install: done ($VENV, mmcv with $ops ops)"
