#!/usr/bin/env bash
# The test command: installs what is missing (scripts/setup.sh), then runs formatting, lints,
# every test of the workspace (CPU libtorch; CUDA tests too when a GPU is visible) and the docs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
step() { printf '\n==> %s\n' "$*" >&2; }
step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo test"
cargo test --workspace --locked
step "a crate outside the workspace links crnn (no LD_LIBRARY_PATH)"
scripts/downstream-check.sh
step "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
step "all checks passed"
