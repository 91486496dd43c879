#!/usr/bin/env bash
# The GPU check, one command on a fresh NVIDIA machine (root, package registries reachable):
#   1. scripts/setup.sh installs the CUDA libtorch (it does when nvidia-smi sees a GPU);
#   2. builds, and runs the crnn and melspec tests, whose device tests then run on CUDA too
#      (the run fails if any CUDA test reports that it skipped);
#   3. prints CRNN train-step and inference slices/s on cuda:0 (batch 16 / 256, 94-frame
#      slices, libtorch-op backend) and the epoch time for 92,000 3 s slices at that speed,
#      for each model of the zoo (crnn2d, crnn2d-larger, crnn2d-vgg, crnn1d, rnn);
#   4. with ZOO=1, the GPU-sized models' row of the zoo table: song 5-fold, seed 0, 3 s,
#      6 epochs of crnn2d-larger and crnn2d-vgg on the default corpus (scripts/zoo.sh's
#      layout, resumable; hours, not minutes: give it its own session).
# Budget: under 8 minutes after the wheel download (the CUDA wheels are ~4 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "gpu-check: no NVIDIA GPU visible (nvidia-smi -L); nothing to check" >&2
  exit 1
fi
nvidia-smi -L
T0=$(date +%s)
scripts/setup.sh
echo "==> build" >&2
cargo build --release --locked -p crnn --example throughput
echo "==> CUDA tests (crnn, melspec)" >&2
LOG=$(mktemp)
cargo test --release --locked -p crnn -p melspec 2>&1 | tee "$LOG" | grep -E "cuda|test result" || true
if grep -q "^test result: FAILED" "$LOG" || ! grep -q "^test result" "$LOG"; then
  echo "gpu-check: tests failed (full log: $LOG)" >&2
  exit 1
fi
if grep -q "skipped (no CUDA" "$LOG"; then
  echo "gpu-check: CUDA tests skipped although nvidia-smi sees a GPU: tch::Cuda::is_available() is false (is libtorch_cuda.so linked? see crates/libtorch-rpath)" >&2
  exit 1
fi
echo "==> throughput on cuda:0" >&2
for MODEL in crnn2d crnn2d-larger crnn2d-vgg crnn1d rnn; do
  LINE=$(target/release/examples/throughput --device cuda --reps 10 --model "$MODEL")
  echo "$LINE"
  TRAIN=$(echo "$LINE" | sed -n 's/.*train \([0-9.]*\) slices\/s.*/\1/p')
  if [ -n "$TRAIN" ]; then
    awk -v r="$TRAIN" -v m="$MODEL" 'BEGIN { printf "%s: epoch of 92,000 3 s slices at batch 16: %.1f s (training steps only)\n", m, 92000 / r }'
  fi
done
if [ "${ZOO:-0}" = 1 ]; then
  echo "==> the GPU-sized models of the zoo (song 5-fold, resumable)" >&2
  scripts/run.sh "${ZOO_OUT:-results-zoo}" --split song-kfold --model crnn2d-larger,crnn2d-vgg \
    --device cuda --resume --no-tsne
fi
echo "gpu-check: done in $(( $(date +%s) - T0 )) s" >&2
