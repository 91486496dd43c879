#!/usr/bin/env bash
# The model zoo on the default corpus (issue "A model zoo and augmentation"): song 5-fold,
# seed 0, 3 s slices, 6 epochs on the CPU, every run into one folder so that its summary.md
# has one row per model, then `compare` of each against plain CRNN2D.
#   scripts/zoo.sh [OUT]        (default OUT: results-zoo)
# Resumable: run it again after a kill and it continues where it stopped (finished runs are
# read back, an interrupted one resumes from its last epoch). Progress goes to stderr, also
# when it is a log file: `nohup scripts/zoo.sh > zoo.log 2>&1 &`.
# Order: the cheap models first (CRNN1D, RNN, CRNN1D with input BatchNorm), then plain CRNN2D,
# then CRNN2D with crop, specaugment and mixup each, then RNN with input BatchNorm.
# CRNN2DLarger and CRNN2DVGG are GPU-sized: scripts/gpu-check.sh (ZOO=1) runs them where a
# GPU is.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results-zoo}
common=(--split song-kfold --epochs 6 --seeds 0 --slice-frames 94 --resume --no-tsne)
scripts/run.sh "$OUT" "${common[@]}" --model crnn1d,rnn,crnn1d-bn,crnn2d
for aug in crop specaugment mixup; do
  scripts/run.sh "$OUT" "${common[@]}" --model crnn2d --augment "$aug"
done
scripts/run.sh "$OUT" "${common[@]}" --model rnn-bn
base="$OUT/song-kfold/94/seed-0/pooled.json"
for variant in crnn1d rnn crnn1d-bn rnn-bn crnn2d+crop crnn2d+specaugment crnn2d+mixup; do
  other="$OUT/song-kfold/94/$variant/seed-0/pooled.json"
  echo "==> compare crnn2d vs $variant" >&2
  cargo run --release --example compare -- "$base" "$other" --png "$OUT/compare-$variant.png" \
    > "$OUT/compare-$variant.md"
done
