#!/usr/bin/env python3
"""The librosa peer of `prepare`: decode + log-mel of every track of a corpus folder.

    python benches/librosa_prepare_timing.py data/corpus-small [--jobs 1]

Per track: librosa.load(path, sr=16000) (soxr_hq) then melspectrogram (paper settings, reflect
padding) and power_to_db(ref=1.0, top_db=80), as the feature store computes them. Prints
tracks/s and audio-seconds/s. --jobs N runs N processes (joblib-free: multiprocessing.Pool).
"""
import argparse, glob, os, time
from multiprocessing import Pool

import librosa


def one(path):
    y, sr = librosa.load(path, sr=16000)
    S = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=2048, hop_length=512, n_mels=128, pad_mode="reflect")
    librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=80.0)
    return len(y) / 16000.0


ap = argparse.ArgumentParser()
ap.add_argument("root")
ap.add_argument("--jobs", type=int, default=1)
a = ap.parse_args()
files = sorted(p for p in glob.glob(os.path.join(a.root, "*", "*", "**", "*"), recursive=True)
               if p.lower().endswith((".mp3", ".ogg", ".flac", ".wav")))
t = time.perf_counter()
if a.jobs > 1:
    with Pool(a.jobs) as pool:
        secs = sum(pool.map(one, files))
else:
    secs = sum(one(f) for f in files)
dt = time.perf_counter() - t
print(f"librosa {librosa.__version__}, {a.jobs} process(es): {len(files)} tracks, {secs / 60:.1f} min of audio "
      f"in {dt:.1f} s = {len(files) / dt:.2f} tracks/s, {secs / dt:.0f} audio-s/s")
