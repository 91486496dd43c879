"""Recomputes the bootstrap case of `examples/bootstrap_case.rs` with numpy and scikit-learn.

    python3 bootstrap_reference.py data/bootstrap_case.json > data/bootstrap_expected.json

For each resample (the song indices our code drew), the song-level and slice-level weighted F1
with sklearn.metrics.f1_score(average="weighted", labels=range(n), zero_division=0), then the
2.5th / 97.5th percentiles with numpy.percentile (linear). The exact McNemar p-values are
scipy.stats.binomtest(first_only, first_only + second_only, 0.5).pvalue.
"""
import json, sys, warnings

import numpy as np, scipy, sklearn
from scipy.stats import binomtest
from sklearn.metrics import f1_score

warnings.simplefilter("ignore")
case = json.load(open(sys.argv[1]))
n = case["n_classes"]
labels = list(range(n))
songs = case["songs"]


def f1(t, p):
    return float(f1_score(t, p, labels=labels, average="weighted", zero_division=0))


song_values, slice_values = [], []
for draw in case["indices"]:
    st = [songs[i]["label"] for i in draw]
    sp = [songs[i]["predicted"] for i in draw]
    lt = [a for i in draw for a, _ in songs[i]["slices"]]
    lp = [b for i in draw for _, b in songs[i]["slices"]]
    song_values.append(f1(st, sp))
    slice_values.append(f1(lt, lp))
song_t = [s["label"] for s in songs]
song_p = [s["predicted"] for s in songs]
slice_t = [a for s in songs for a, _ in s["slices"]]
slice_p = [b for s in songs for _, b in s["slices"]]
out = {
    "generator": f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, scipy {scipy.__version__}",
    "song_f1": f1(song_t, song_p),
    "slice_f1": f1(slice_t, slice_p),
    "song_values": song_values,
    "slice_values": slice_values,
    "song_ci95": [float(np.percentile(song_values, 2.5)), float(np.percentile(song_values, 97.5))],
    "slice_ci95": [float(np.percentile(slice_values, 2.5)), float(np.percentile(slice_values, 97.5))],
    "mcnemar_p": [1.0 if a + b == 0 else float(binomtest(a, a + b, 0.5).pvalue) for a, b in case["mcnemar"]],
}
json.dump(out, sys.stdout, indent=1)
print()
