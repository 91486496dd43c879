#!/usr/bin/env bash
# The collectives of data-parallel training, ours and torch.distributed's in one run: 2 ranks
# over loopback, Gloo, 1 thread each (crnn's benches/collectives.rs, then
# benches/peers/collectives_torch.py under torchrun). The peer needs a Python with torch
# (skipped when absent):
#   python3 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.13.0
#   TORCH_PYTHON=.venv-torch/bin/python scripts/bench-collectives.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
lscpu | grep -E "^Model name" || true
ROUNDS=${ROUNDS:-2}
for r in $(seq 1 "$ROUNDS"); do
  echo "=== round $r: crnn (criterion)"
  cargo bench -p crnn --bench collectives -- --noplot 2>&1 | grep -E "^collectives|time:" || true
  if [ -n "${TORCH_PYTHON:-}" ]; then
    echo "=== round $r: torch.distributed"
    "$TORCH_PYTHON" -m torch.distributed.run --nproc-per-node=2 benches/peers/collectives_torch.py 2>&1 \
      | grep -E "^torch.distributed" || true
  fi
done
