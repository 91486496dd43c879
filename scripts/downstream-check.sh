#!/usr/bin/env bash
# A crate outside this workspace that depends on crnn builds and runs with no
# LD_LIBRARY_PATH: tools/downstream-check is copied to a temporary folder (so no
# .cargo/config.toml of this repository applies), its path dependencies pointed at this
# checkout, built with LIBTORCH set as a user sets it, and run with a clean library path.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
scripts/setup.sh
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cp -r tools/downstream-check/. "$TMP/"
sed -i "s|path = \"../../crates/|path = \"$REPO/crates/|" "$TMP/Cargo.toml"
cp Cargo.lock "$TMP/Cargo.lock"
cd "$TMP"
env LIBTORCH="$REPO/.libtorch/torch" CARGO_TARGET_DIR="$REPO/target" \
  cargo build --quiet
env -u LD_LIBRARY_PATH -u LIBTORCH "$REPO/target/debug/downstream-check"
