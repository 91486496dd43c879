#!/usr/bin/env bash
# Regenerates the librosa golden vectors the melspec tests read (and the real-clip references
# the root package's tests read). Needs a Python with librosa==0.11.0 soundfile numpy scipy:
#   python3 -m venv .venv-librosa && .venv-librosa/bin/pip install librosa==0.11.0 soundfile
#   PYTHON=.venv-librosa/bin/python tools/make_melspec_golden.sh
# Synthetic cases are 1.5 s (the 3 s default only makes the files bigger); stft_power and the
# f64 "truth" files are not kept; the filterbank is kept in sparse form (its 2,020 non-zeros
# and each row's [start, end) band), which the test expands back to the dense matrix.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fx=crates/audio-io/tests/fixtures
# An .m4a and an .opus, decoded by the ffmpeg recipe of audio-io's parity references (librosa
# cannot be their decoder; crates/audio-io/tests/fixtures/make_reference.py says why; needs
# ffmpeg on PATH).
"$PY" - "$fx" "$tmp" <<'PY'
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
from make_reference import ffmpeg_load
for f in ("amen_aac.m4a", "guitar_mono.opus"):
    y, _ = ffmpeg_load(f"{sys.argv[1]}/{f}", 16000)
    np.save(f"{sys.argv[2]}/{f}.ffmpeg-16k.npy", y)
PY
"$PY" tools/melref.py --out "$tmp/g" --duration 1.5 --no-stft \
  "$fx/guitar_16k_mono_32kbps.mp3" "$fx/fanfare.ogg" --decoded "$tmp/amen_aac.m4a.ffmpeg-16k.npy" "$tmp/guitar_mono.opus.ffmpeg-16k.npy"
# HTK scale, no norm, other sizes: a second filterbank for the generality check.
"$PY" - "$tmp/g" <<'PY'
import sys, numpy as np, librosa
d = sys.argv[1]
fb = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=40, fmin=20.0, fmax=8000.0, htk=True, norm=None)
np.save(f"{d}/mel_filterbank_htk_22050_1024_40.npy", fb)
PY
"$PY" - "$tmp/g" <<'PY'
import sys, numpy as np
d = sys.argv[1]
for name in ["mel_filterbank", "mel_filterbank_htk_22050_1024_40"]:
    fb = np.load(f"{d}/{name}.npy")
    bands = np.zeros((fb.shape[0], 2), dtype=np.int64)
    vals = []
    for i, row in enumerate(fb):
        nz = np.nonzero(row)[0]
        s, e = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 0)
        bands[i] = (s, e)
        vals.append(row[s:e])
    np.save(f"{d}/{name}.bands.npy", bands)
    np.save(f"{d}/{name}.values.npy", np.concatenate(vals).astype(np.float32))
    np.save(f"{d}/{name}.shape.npy", np.array(fb.shape, dtype=np.int64))
PY
out=crates/melspec/tests/golden
rm -rf "$out" && mkdir -p "$out/inputs" "$out/pad-reflect" "$out/pad-constant"
cp "$tmp/g"/{params.json,window.npy,mel_edges_hz.npy} "$out/"
cp "$tmp/g"/mel_filterbank*.{bands,values,shape}.npy "$out/"
for c in chirp sines noise silence impulse short tiny; do
  cp "$tmp/g/pad-reflect/$c.input.npy" "$out/inputs/"
  for p in reflect constant; do
    cp "$tmp/g/pad-$p/$c".mel_{power,db}.npy "$out/pad-$p/"
  done
done
# Real clips (decoded by librosa.load, or by ffmpeg for 2 and 3): the root package's tests
# decode them with audio-io.
root=tests/golden
rm -rf "$root" && mkdir -p "$root"
for k in 0 1 2 3; do
  cp "$tmp/g/pad-reflect/file_$k.mel_db.npy" "$root/file_$k.reflect.mel_db.npy"
  cp "$tmp/g/pad-constant/file_$k.mel_db.npy" "$root/file_$k.constant.mel_db.npy"
done
cp "$tmp/g/params.json" "$root/params.json"
du -sh "$out" "$root"
