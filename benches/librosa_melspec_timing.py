#!/usr/bin/env python3
"""The librosa peer of benches/melspec.rs: melspectrogram + power_to_db on the same signal.

    OPENBLAS_NUM_THREADS=1 python benches/librosa_melspec_timing.py [--seconds 600] [--reps 5]

Same signal as the Rust bench (benches/signal.rs: splitmix64 noise in [-0.1, 0.1)), paper settings (sr 16 kHz,
n_fft 2048, hop 512, 128 Slaney mels, reflect padding, ref 1.0, top_db 80). The mel basis is
built once before timing (librosa caches it too). Prints the best of --reps runs in us per
audio-second. Run with OPENBLAS_NUM_THREADS=1 for the per-core number the README compares.
"""
import argparse, time
import numpy as np
import librosa

ap = argparse.ArgumentParser()
ap.add_argument("--seconds", type=int, default=600)
ap.add_argument("--reps", type=int, default=5)
a = ap.parse_args()

n = a.seconds * 16000
# The Rust bench's signal (benches/signal.rs): splitmix64 of the index -> uniform [-0.1, 0.1).
with np.errstate(over="ignore"):
    z = np.arange(n, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
y = (((z >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24)) - np.float32(0.5)) * np.float32(0.2)
librosa.filters.mel(sr=16000, n_fft=2048, n_mels=128)
best = float("inf")
for _ in range(a.reps):
    t = time.perf_counter()
    S = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=2048, hop_length=512, n_mels=128, pad_mode="reflect")
    D = librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=80.0)
    best = min(best, time.perf_counter() - t)
print(f"librosa {librosa.__version__}: {best * 1e3:.1f} ms for {a.seconds} s = {best * 1e6 / a.seconds:.1f} us per audio-second")
