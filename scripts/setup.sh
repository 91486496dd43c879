#!/usr/bin/env bash
# One-time (idempotent) machine setup behind both README commands.
#
# Installs only what is missing:
#   1. Debian packages the crates link or use: cmake (builds libopus for audio-io's Opus
#      decoder), libhdf5-dev (feature store), libsoxr-dev
#      (librosa-equal resampling), hdf5-tools (h5dump, used by a layout test), fontconfig and a
#      font for plot text, pkg-config.
#   2. rustfmt and clippy (the test command runs them).
#   3. libtorch 2.13.0 (what tch 0.26.0 wants) from the PyPI `torch` wheel into ./.libtorch,
#      which .cargo/config.toml points LIBTORCH at. CPU-only set by default (~0.54 GB download);
#      the full CUDA set when `nvidia-smi` sees a GPU. Crates that link tch embed its lib folder
#      as an rpath, so nothing needs LD_LIBRARY_PATH.
# A second run does nothing and takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

# ---- 1. Debian packages -------------------------------------------------------------------
APT_PACKAGES=(pkg-config cmake libhdf5-dev libsoxr-dev hdf5-tools libfontconfig1-dev fonts-dejavu-core
  python3 python3-pip ca-certificates)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# python3/pip may come from elsewhere (pyenv): only ask apt for them when there is no usable pip.
if python3 -m pip --version >/dev/null 2>&1; then
  filtered=()
  for p in "${missing[@]}"; do
    case "$p" in python3|python3-pip) ;; *) filtered+=("$p") ;; esac
  done
  missing=("${filtered[@]}")
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The default corpus is downloaded with `apt-get download`, which needs package lists; a fresh
# Debian image has none.
if ! ls /var/lib/apt/lists/*Packages* >/dev/null 2>&1; then
  log "fetching apt package lists (apt-get update)"
  $SUDO apt-get update -qq
fi

# ---- 2. Rust components -------------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$c"; then
      log "adding rustup component $c"
      rustup component add "$c"
    fi
  done
fi

# ---- 3. libtorch from PyPI ----------------------------------------------------------------
TORCH_VERSION=2.13.0
DEST=.libtorch
MODE=cpu
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  MODE=full
fi
# The full set also carries the CUDA C runtime and CCCL headers (a few MB) that crnn's
# ProcessGroupNCCL shim compiles against; "-nccl" makes older full installs redo it.
STAMP="$DEST/.installed-torch-$TORCH_VERSION-$MODE"
if [ "$MODE" = full ]; then STAMP="$STAMP-nccl"; fi
if [ ! -f "$STAMP" ]; then
  log "installing libtorch $TORCH_VERSION ($MODE) from the PyPI torch wheel into $DEST"
  rm -rf "$DEST"
  PY=$(command -v python3 || command -v python)
  if [ "$MODE" = full ]; then
    "$PY" -m pip install --quiet --no-cache-dir --disable-pip-version-check --target "$DEST" \
      "torch==$TORCH_VERSION" nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85
  else
    # libtorch_cpu.so needs libcudart/libcupti at load time even without a GPU; the two small
    # runtime wheels below are the exact pins torch 2.13.0 asks for.
    "$PY" -m pip install --quiet --no-cache-dir --disable-pip-version-check --no-deps \
      --target "$DEST" "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
    # CUDA-only libraries: without them torch-sys does not link libtorch_cuda at all.
    rm -f "$DEST"/torch/lib/{libtorch_cuda.so,libtorch_cuda_linalg.so,libc10_cuda.so,libtorch_nvshmem.so,libcaffe2_nvrtc.so,libtorch_python.so}
  fi
  test -f "$DEST/torch/lib/libtorch_cpu.so"
  touch "$STAMP"
  log "libtorch ready"
fi
