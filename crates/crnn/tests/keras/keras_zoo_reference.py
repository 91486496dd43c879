"""CRNN1D and RNN of the paper's code (src/models.py) written out in numpy float64 with Keras
2.1.1's semantics, the reference of tests/zoo.rs (keras_zoo_reference.json). numpy only.

Weights follow a closed formula on Keras's own layouts, so Rust rebuilds them exactly:
    w[j] = sin(0.37 j + id) / sqrt(fan_in)   (j: the flat index in Keras's layout)
    bias[j] = 0.1 sin(0.37 j + id)
with id the variable's number below and fan_in its input width. Input (batch, mels, frames)
x[b, m, t] = 2 sin(0.3 (100 b + 10 m + t)).

Keras 2.1.1, written out:
  Conv1D(f, 5), padding valid: y[t, o] = sum_{k, i} x[t + k, i] W[k, i, o] + b[o]
  MaxPooling1D(2): max over t = 2s, 2s + 1 (a last odd step dropped)
  GRU (reset_after=False, implementation 1): z, r = hs(x W + b + h U); hh = tanh(x W_h + b_h + (r h) U_h);
      h = z h + (1 - z) hh
  LSTM: i, f, o = hs(x W + b + h U); c = f c + i tanh(x W_c + b_c + h U_c); h = o tanh(c)
      (gate order i, f, c, o)
  hs(x) = clip(0.2 x + 0.5, 0, 1)
Run: python keras_zoo_reference.py > keras_zoo_reference.json
"""
import json

import numpy as np


def weights(shape, ident, fan_in):
    j = np.arange(int(np.prod(shape)), dtype=np.float64)
    return (np.sin(0.37 * j + ident) / np.sqrt(fan_in)).reshape(shape)


def bias(n, ident):
    return 0.1 * np.sin(0.37 * np.arange(n, dtype=np.float64) + ident)


hs = lambda v: np.clip(0.2 * v + 0.5, 0.0, 1.0)


def gru(x, W, U, b, seq):
    n = U.shape[0]
    h = np.zeros((x.shape[0], n))
    out = []
    for t in range(x.shape[1]):
        xt = x[:, t] @ W + b
        z = hs(xt[:, :n] + h @ U[:, :n])
        r = hs(xt[:, n:2 * n] + h @ U[:, n:2 * n])
        hh = np.tanh(xt[:, 2 * n:] + (r * h) @ U[:, 2 * n:])
        h = z * h + (1 - z) * hh
        out.append(h)
    return np.stack(out, 1) if seq else h


def lstm(x, W, U, b, seq):
    n = U.shape[0]
    h = np.zeros((x.shape[0], n))
    c = np.zeros_like(h)
    out = []
    for t in range(x.shape[1]):
        z = x[:, t] @ W + b + h @ U
        i, f, o = hs(z[:, :n]), hs(z[:, n:2 * n]), hs(z[:, 3 * n:])
        c = f * c + i * np.tanh(z[:, 2 * n:3 * n])
        h = o * np.tanh(c)
        out.append(h)
    return np.stack(out, 1) if seq else h


def conv1d(x, W, b):
    k = W.shape[0]
    steps = x.shape[1] - k + 1
    return np.stack([np.einsum("bki,kio->bo", x[:, t:t + k], W) for t in range(steps)], 1) + b


def pool1d(x):
    steps = x.shape[1] // 2
    return np.maximum(x[:, 0:2 * steps:2], x[:, 1:2 * steps:2])


def inputs(batch, mels, frames):
    b, m, t = np.meshgrid(np.arange(batch), np.arange(mels), np.arange(frames), indexing="ij")
    return 2.0 * np.sin(0.3 * (100 * b + 10 * m + t))


def softmax(v):
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def crnn1d(batch, mels, frames, classes):
    h = inputs(batch, mels, frames).transpose(0, 2, 1)  # Permute + Reshape: (B, T, M)
    ident = 0
    for f in [64, 128, 128]:
        W = weights((5, h.shape[2], f), ident, 5 * h.shape[2])
        h = pool1d(np.maximum(conv1d(h, W, bias(f, ident + 1)), 0.0))
        ident += 2
    for seq in [True, False]:
        W = weights((h.shape[-1], 3 * 64), ident, h.shape[-1])
        U = weights((64, 3 * 64), ident + 1, 64)
        h = gru(h, W, U, bias(3 * 64, ident + 2), seq)
        ident += 3
    logits = h @ weights((64, classes), ident, 64) + bias(classes, ident + 1)
    return h, logits


def rnn(batch, mels, frames, classes):
    h = inputs(batch, mels, frames).transpose(0, 2, 1)
    ident = 0
    for seq in [True, False]:
        W = weights((h.shape[-1], 4 * 64), ident, h.shape[-1])
        U = weights((64, 4 * 64), ident + 1, 64)
        h = lstm(h, W, U, bias(4 * 64, ident + 2), seq)
        ident += 3
    logits = h @ weights((64, classes), ident, 64) + bias(classes, ident + 1)
    return h, logits


out = {}
for name, fn, shape in [("crnn1d", crnn1d, (2, 8, 50, 3)), ("rnn", rnn, (2, 8, 6, 3))]:
    emb, logits = fn(*shape)
    out[name] = {
        "shape": list(shape),
        "embedding": emb.reshape(-1).tolist(),
        "probabilities": softmax(logits).reshape(-1).tolist(),
    }
print(json.dumps(out))
