#!/usr/bin/env bash
# The main job: installs what is missing (scripts/setup.sh), fetches the default real-music corpus on first use, builds the feature store,
# trains and evaluates the paper's CRNN and writes the report into results/ (or $1).
# Usage: scripts/run.sh [OUT] [experiment flags...], e.g. `scripts/run.sh --paper-grid`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
OUT=results
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then OUT=$1; shift; fi
cargo run --release --example experiment -- --out "$OUT" "$@"
