"""The five models of the paper's code (ZainNasrullah/music-artist-classification-crnn,
src/models.py) rebuilt in Keras 3 as the code writes them, with the one change Keras 3 needs
to reproduce Keras 2.1.1: GRU(reset_after=False) (Keras 2.1.1's only GRU). Prints
count_params() and the trainable count of each model for 128 mels x {32, 94, 313, 911}
frames and 20 classes as JSON, the reference of tests/zoo.rs (keras_param_counts.json).
A model that cannot take a shape (CRNN1D on 32 frames) is recorded as the error Keras raised.

Run (any Keras 3 backend; this file was run with jax):
    python -m venv .venv-keras && .venv-keras/bin/pip install keras jax
    KERAS_BACKEND=jax .venv-keras/bin/python keras_param_counts.py > keras_param_counts.json
"""
import json

import keras
from keras import layers


def conv2d_model(n_mels, frames, classes, blocks, out_dropout):
    """CRNN2D / CRNN2DLarger / CRNN2DVGG: blocks = [([filters...], (pool_f, pool_t)), ...]."""
    m = keras.Sequential()
    m.add(keras.Input((n_mels, frames, 1)))
    m.add(layers.BatchNormalization(axis=1))
    for filters, pool in blocks:
        for f in filters:
            m.add(layers.Conv2D(f, (3, 3), padding="same"))
            m.add(layers.Activation("elu"))
            m.add(layers.BatchNormalization(axis=3))
        m.add(layers.MaxPooling2D(pool_size=pool, strides=pool))
        m.add(layers.Dropout(0.1))
    m.add(layers.Permute((2, 1, 3)))
    s = m.output_shape
    m.add(layers.Reshape((s[1], s[2] * s[3])))
    m.add(layers.GRU(32, return_sequences=True, reset_after=False))
    m.add(layers.GRU(32, return_sequences=False, reset_after=False))
    m.add(layers.Dropout(out_dropout))
    m.add(layers.Dense(classes))
    m.add(layers.Activation("softmax"))
    return m


def crnn2d(n, t, c):
    return conv2d_model(n, t, c, [([64], (2, 2)), ([128], (4, 2)), ([128], (4, 2)), ([128], (4, 2))], 0.3)


def crnn2d_larger(n, t, c):
    return conv2d_model(n, t, c, [([64], (2, 2)), ([128], (2, 2)), ([256], (2, 2)), ([512], (4, 1)), ([512], (4, 1))], 0.3)


def crnn2d_vgg(n, t, c):
    blocks = [([64, 64], (2, 2))]
    for f, pool in zip([128, 256, 512, 512], [(2, 2), (2, 2), (4, 1), (4, 1)]):
        blocks.append(([f, f] + ([f] if f != 128 else []), pool))
    return conv2d_model(n, t, c, blocks, 0.2)


def to_time(m, n_mels, frames):
    m.add(keras.Input((n_mels, frames, 1)))
    m.add(layers.Permute((2, 1, 3)))
    s = m.output_shape
    m.add(layers.Reshape((s[1], s[2] * s[3])))


def crnn1d(n, t, c):
    m = keras.Sequential()
    to_time(m, n, t)
    for f in [64, 128, 128]:
        m.add(layers.Conv1D(f, 5))
        m.add(layers.Activation("relu"))
        m.add(layers.MaxPooling1D(pool_size=2, strides=2))
    m.add(layers.GRU(64, return_sequences=True, reset_after=False))
    m.add(layers.GRU(64, return_sequences=False, reset_after=False))
    m.add(layers.Dense(c))
    m.add(layers.Activation("softmax"))
    return m


def rnn(n, t, c):
    m = keras.Sequential()
    to_time(m, n, t)
    m.add(layers.LSTM(64, return_sequences=True))
    m.add(layers.LSTM(64, return_sequences=False))
    m.add(layers.Dense(c))
    m.add(layers.Activation("softmax"))
    return m


MODELS = {
    "crnn2d": crnn2d,
    "crnn2d-larger": crnn2d_larger,
    "crnn2d-vgg": crnn2d_vgg,
    "crnn1d": crnn1d,
    "rnn": rnn,
}

out = {"keras": keras.__version__, "n_mels": 128, "classes": 20, "models": {}}
for name, build in MODELS.items():
    per = {}
    for frames in [32, 94, 313, 911]:
        try:
            m = build(128, frames, 20)
            trainable = sum(int(w.numpy().size) for w in m.trainable_weights)
            per[str(frames)] = {"total": int(m.count_params()), "trainable": trainable}
        except Exception as e:  # a shape the model cannot take
            per[str(frames)] = {"refused": type(e).__name__}
    out["models"][name] = per
print(json.dumps(out, indent=1))
