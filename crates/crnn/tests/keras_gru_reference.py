"""Keras 2.1.1 GRU (reset_after=False, hard_sigmoid, gate order z, r, h, one bias) in numpy,
the reference for tests/layers.rs. Weights and inputs follow closed formulas so Rust rebuilds
them exactly. Run: python keras_gru_reference.py  (numpy only; float64).

Keras 2.1.1 recurrent.py GRUCell.call, implementation=1, written out:
    x_z = x W_z + b_z ; x_r = x W_r + b_r ; x_h = x W_h + b_h
    z = hard_sigmoid(x_z + h U_z) ; r = hard_sigmoid(x_r + h U_r)
    hh = tanh(x_h + (r * h) U_h)
    h = z * h + (1 - z) * hh
with hard_sigmoid(x) = clip(0.2 x + 0.5, 0, 1).
"""
import numpy as np

B, T, I, U = 2, 5, 4, 3
x = np.array([[[np.sin(0.3 * (b * 100 + t * 10 + i)) * 2.0 for i in range(I)] for t in range(T)] for b in range(B)])
W = np.array([[np.cos(0.7 * (r * 9 + c)) * 0.8 for c in range(3 * U)] for r in range(I)])
Uk = np.array([[np.sin(1.1 * (r * 9 + c) + 0.5) * 0.9 for c in range(3 * U)] for r in range(U)])
bias = np.array([0.05 * c - 0.2 for c in range(3 * U)])
hs = lambda v: np.clip(0.2 * v + 0.5, 0.0, 1.0)
h = np.zeros((B, U))
seq = []
for t in range(T):
    xt = x[:, t, :] @ W + bias
    z = hs(xt[:, :U] + h @ Uk[:, :U])
    r = hs(xt[:, U:2 * U] + h @ Uk[:, U:2 * U])
    hh = np.tanh(xt[:, 2 * U:] + (r * h) @ Uk[:, 2 * U:])
    h = z * h + (1 - z) * hh
    seq.append(h.copy())
np.set_printoptions(precision=17)
print(repr(np.stack(seq, 1).reshape(-1)))
