#!/usr/bin/env bash
# Times the melspec bench and its librosa peer on the same 600 s signal, one after the other,
# and prints both. Needs a Python with librosa (PYTHON=..., default python3):
#   python3 -m venv .venv-librosa && .venv-librosa/bin/pip install librosa==0.11.0
#   PYTHON=.venv-librosa/bin/python scripts/bench-melspec.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
scripts/setup.sh
cargo bench --bench melspec -- --noplot 2>&1 | grep -E "^melspec|thrpt|time:" || true
echo "--- librosa peer (same signal), one BLAS thread and default threads:"
OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$PY" benches/librosa_melspec_timing.py --seconds 600 --reps 5
"$PY" benches/librosa_melspec_timing.py --seconds 600 --reps 5
