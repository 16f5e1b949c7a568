# What tools/install_oldest.sh and tools/install_newest.sh share (sourced, not run): the named
# steps, the environment, and mmcv built from source with CPU ops into the wheel cache that
# tools/install.sh also keeps, keyed by the exact torch build. Each script's stamp hashes this file.
#   Before sourcing: NAME (the script's name in messages), VENV, PYTHON (optional), LOCK.
#   After: VPY (the venv's python), PIP (pip install held to LOCK).

step() {  # step NAME CMD...: runs CMD, stops the install naming NAME if it fails
    local name=$1; shift
    echo "==> $NAME: $name"
    if ! "$@"; then
        echo "$NAME: step '$name' failed (command: $*)" >&2
        exit 1
    fi
}

[ -x "$VENV/bin/python" ] || step "create virtual environment $VENV" "${PYTHON:-python3}" -m venv "$VENV"
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --disable-pip-version-check -c "$LOCK")

# The directory of wheels built against this venv's torch build (version, commit, CUDA): a wheel
# built against one torch build is never handed to another (pip's own cache would).
torch_wheel_cache() {
    local key
    key=$("$VPY" -c \
        "import torch; print(torch.__version__, torch.version.git_version, torch.version.cuda)" \
        | sha256sum | cut -c1-16)
    echo "${MMCOATNET_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmcoatnet/wheels}/torch-$key"
}

# install_cached_mmcv DIST VERSION: mmcv's distribution DIST (mmcv, onedl-mmcv) at VERSION, built
# from source with CPU ops against the installed torch once, then installed from the cache. Built
# without build isolation: the build must see this torch (onedl-mmcv, built in isolation, finds
# no torch and silently leaves its ops out) and this venv's setuptools (mmcv 2.1.0 imports
# pkg_resources, which setuptools >= 81 lacks).
install_cached_mmcv() {
    local dist=$1 version=$2 wheels stem build_dir started
    wheels=$(torch_wheel_cache)
    stem="${dist//-/_}-$version"
    if ! ls "$wheels/$stem"-*.whl >/dev/null 2>&1; then
        build_dir=$(mktemp -d)
        started=$SECONDS
        # ninja from the venv, for parallel compiles; FORCE_CUDA=0 and no visible GPU: CPU ops
        step "$dist==$version (built from source with CPU ops; the longest step, timed below)" \
            env PATH="$(cd "$VENV" && pwd)/bin:$PATH" MMCV_WITH_OPS=1 FORCE_CUDA=0 \
            CUDA_VISIBLE_DEVICES= MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$VPY" -m pip wheel \
            --disable-pip-version-check --no-cache-dir --no-build-isolation --no-deps \
            -w "$build_dir" "$dist==$version"
        echo "$NAME: $dist built in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
        mkdir -p "$wheels" && mv "$build_dir/$stem"-*.whl "$wheels"/ && rm -rf "$build_dir"
    fi
    step "$dist==$version (wheel $wheels)" \
        "${PIP[@]}" --no-deps --force-reinstall "$(ls "$wheels/$stem"-*.whl | head -1)"
}
