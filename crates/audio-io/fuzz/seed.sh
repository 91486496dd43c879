#!/usr/bin/env bash
# Seeds fuzz/corpus/decode with every test fixture, each behind the first byte that selects its
# own extension in the fuzz target (the order of `--example formats -- --extensions`).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t exts < <(cargo run -q --example formats -- --extensions)
exts+=(bin)
mkdir -p fuzz/corpus/decode
for f in tests/fixtures/*; do
  ext="${f##*.}"
  for i in "${!exts[@]}"; do
    if [ "${exts[$i]}" = "$ext" ]; then
      { printf "\\x$(printf %02x "$i")"; cat "$f"; } > "fuzz/corpus/decode/$(basename "$f")"
    fi
  done
done
ls fuzz/corpus/decode | wc -l
