#!/usr/bin/env bash
# The main job: installs what is missing (scripts/setup.sh), fetches the default real-music corpus on first use, builds the feature store,
# trains and evaluates the paper's CRNN and writes the report into results/ (or $1).
# Extra arguments go to the experiment example, e.g. `scripts/run.sh results --paper-grid`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
OUT=${1:-results}
shift || true
cargo run --release --example experiment -- --out "$OUT" "$@"
