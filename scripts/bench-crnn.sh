#!/usr/bin/env bash
# CRNN2D throughput, ours and the Python peers in one run (94-frame slices, 2 threads
# everywhere): train step at batch 16 and inference at batch 256, in slices/s.
#   1. the crnn criterion bench: fused CPU kernels and the libtorch-op path;
#   2. PyTorch 2.13 with the same Keras-exact graph (benches/peers/crnn_torch.py), channels-last
#      and the malloc settings that crnn's recycle_large_allocations applies;
#   3. Keras 3 / TensorFlow 2.21 (benches/peers/crnn_keras.py), Keras-2 hard sigmoid.
# The peers need their own Pythons (skipped when absent):
#   python3 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.13.0
#   python3 -m venv .venv-tf && .venv-tf/bin/pip install tensorflow-cpu==2.21.0
#   TORCH_PYTHON=.venv-torch/bin/python TF_PYTHON=.venv-tf/bin/python scripts/bench-crnn.sh
# ISA=avx2 measures an AVX2-only CPU on one with AVX-512: the fused kernels forced to AVX2
# (CRNN_BENCH_ISAS), libtorch and the peers capped with ATEN_CPU_CAPABILITY=avx2,
# ONEDNN_MAX_CPU_ISA=AVX2 and MKL_ENABLE_INSTRUCTIONS=AVX2 (MKL runs libtorch's matmuls, the
# Winograd products among them; TensorFlow's own Eigen kernels are not capped by these).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ROUNDS=${ROUNDS:-2}
if [ "${ISA:-}" = avx2 ]; then
  export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 CRNN_BENCH_ISAS=avx2
  echo "=== AVX2 emulation: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2, fused kernels forced to avx2"
fi
lscpu | grep -E "^Model name" || true
COMMON="--threads 2 --reps 7 --train-steps 10 --infer-bs 256 --infer-batches 2"
TUN="glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736:glibc.malloc.arena_max=1"
cargo bench -p crnn --bench crnn --no-run >/dev/null 2>&1
for r in $(seq 1 "$ROUNDS"); do
  echo "=== round $r: crnn (criterion)"
  cargo bench -p crnn --bench crnn -- --noplot 2>&1 | grep -E "^crnn_|thrpt" || true
  if [ -n "${TORCH_PYTHON:-}" ]; then
    echo "=== round $r: PyTorch peer (channels-last, malloc settings, Keras-exact BN 'native')"
    env GLIBC_TUNABLES=$TUN "$TORCH_PYTHON" benches/peers/crnn_torch.py $COMMON --cl --bn native 2>&1 \
      | grep -E "MEDIAN" || true
  fi
  if [ -n "${TF_PYTHON:-}" ]; then
    echo "=== round $r: Keras 3 / TensorFlow peer"
    "$TF_PYTHON" benches/peers/crnn_keras.py $COMMON 2>&1 | grep -E "MEDIAN" || true
  fi
done
