//! Keras 2.1.1 layers written with tch ops: BatchNormalization and GRU (reset before the
//! recurrent product, hard sigmoid), and the Keras initialisers.

use tch::{TchError, Tensor, nn, nn::Init};

/// Keras `glorot_uniform` for a kernel with these fans.
pub fn glorot_uniform(fan_in: usize, fan_out: usize) -> Init {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    Init::Uniform {
        lo: -limit,
        up: limit,
    }
}

/// Keras 2's `hard_sigmoid`: `clip(0.2 x + 0.5, 0, 1)` (Keras 3's is `relu6(x + 3) / 6`).
/// Panics where [`f_hard_sigmoid`] returns an error.
pub fn hard_sigmoid(x: &Tensor) -> Tensor {
    (x * 0.2 + 0.5).clamp(0.0, 1.0)
}

/// [`hard_sigmoid`] with libtorch's errors returned.
pub fn f_hard_sigmoid(x: &Tensor) -> Result<Tensor, TchError> {
    x.f_mul_scalar(0.2)?.f_add_scalar(0.5)?.f_clamp(0.0, 1.0)
}

/// Keras BatchNormalization over dimension 1 of its input (channels, or mel bins for the
/// input normalisation). Training uses batch statistics and updates the moving averages with
/// the **biased** batch variance, `moving = m * moving + (1 - m) * batch`; inference uses the
/// moving statistics. One pass: `native_batch_norm` returns the batch mean and
/// `1 / sqrt(var + eps)`, from which the biased variance follows without a second reduction.
#[derive(Debug)]
pub struct KerasBatchNorm {
    /// Scale (Keras `gamma`), initialised to 1.
    pub gamma: Tensor,
    /// Offset (Keras `beta`), initialised to 0.
    pub beta: Tensor,
    /// Moving mean, not trained, initialised to 0.
    pub moving_mean: Tensor,
    /// Moving variance, not trained, initialised to 1.
    pub moving_variance: Tensor,
    momentum: f64,
    epsilon: f64,
}

impl KerasBatchNorm {
    /// `channels` statistics under `path`.
    pub fn new(path: nn::Path<'_>, channels: usize, momentum: f64, epsilon: f64) -> Self {
        let c = channels as i64;
        Self {
            gamma: path.var("gamma", &[c], Init::Const(1.0)),
            beta: path.var("beta", &[c], Init::Const(0.0)),
            moving_mean: path.zeros_no_train("moving_mean", &[c]),
            moving_variance: path.ones_no_train("moving_variance", &[c]),
            momentum,
            epsilon,
        }
    }

    /// Epsilon added to the variance.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Momentum of the moving averages (Keras convention).
    pub fn momentum(&self) -> f64 {
        self.momentum
    }

    /// Keras's moving-average update from a batch's mean and biased variance:
    /// `moving = momentum * moving + (1 - momentum) * batch`, without gradient. Panics where
    /// [`f_update_moving`](Self::f_update_moving) returns an error.
    pub fn update_moving(&self, mean: &Tensor, variance: &Tensor) {
        if let Err(e) = self.f_update_moving(mean, variance) {
            panic!("KerasBatchNorm::update_moving: {e}");
        }
    }

    /// [`update_moving`](Self::update_moving) with libtorch's errors returned (statistics of
    /// another length than the channels, say); nothing is changed then.
    pub fn f_update_moving(&self, mean: &Tensor, variance: &Tensor) -> Result<(), TchError> {
        tch::no_grad(|| {
            let m = self.momentum;
            let new_mean = self
                .moving_mean
                .f_mul_scalar(m)?
                .f_add(&mean.f_mul_scalar(1.0 - m)?)?;
            let new_var = self
                .moving_variance
                .f_mul_scalar(m)?
                .f_add(&variance.f_mul_scalar(1.0 - m)?)?;
            self.moving_mean.shallow_clone().f_copy_(&new_mean)?;
            self.moving_variance.shallow_clone().f_copy_(&new_var)
        })
    }

    /// Normalises `x` (N, C, ...) per channel C. Panics where
    /// [`f_forward_t`](Self::f_forward_t) returns an error.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self.f_forward_t(x, train) {
            Ok(y) => y,
            Err(e) => panic!("KerasBatchNorm::forward_t: {e}"),
        }
    }

    /// [`forward_t`](Self::forward_t) with libtorch's errors returned (an input whose
    /// dimension 1 is not the channel count, say).
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        if !train {
            return x.f_batch_norm(
                Some(&self.gamma),
                Some(&self.beta),
                Some(&self.moving_mean),
                Some(&self.moving_variance),
                false,
                0.0,
                self.epsilon,
                false,
            );
        }
        let (y, mean, invstd) = x.f_native_batch_norm(
            Some(&self.gamma),
            Some(&self.beta),
            None::<&Tensor>,
            None::<&Tensor>,
            true,
            0.0,
            self.epsilon,
        )?;
        let var = tch::no_grad(|| invstd.f_pow_tensor_scalar(-2.0)?.f_sub_scalar(self.epsilon))?;
        self.f_update_moving(&mean, &var)?;
        Ok(y)
    }
}

/// Keras 2.1.1 GRU (`reset_after=False`, `implementation=1`): gates z, r, h in that order in
/// the kernels; `z, r = hard_sigmoid(x W + b + h U)`; `h~ = tanh(x W_h + b_h + (r * h) U_h)`;
/// `h = z * h_prev + (1 - z) * h~`; one bias; zero initial state. (tch's and PyTorch's GRU
/// apply the reset after the product, use the logistic sigmoid and two biases.)
#[derive(Debug)]
pub struct KerasGru {
    /// Input kernel `[input, 3 units]`, glorot uniform.
    pub kernel: Tensor,
    /// Recurrent kernel `[units, 3 units]`, orthogonal.
    pub recurrent_kernel: Tensor,
    /// Bias `[3 units]`, zeros.
    pub bias: Tensor,
    units: i64,
}

impl KerasGru {
    /// A GRU of `units` over `input` features under `path`.
    pub fn new(path: nn::Path<'_>, input: usize, units: usize) -> Self {
        let u3 = 3 * units as i64;
        Self {
            kernel: path.var(
                "kernel",
                &[input as i64, u3],
                glorot_uniform(input, 3 * units),
            ),
            recurrent_kernel: path.var(
                "recurrent_kernel",
                &[units as i64, u3],
                Init::Orthogonal { gain: 1.0 },
            ),
            bias: path.var("bias", &[u3], Init::Const(0.0)),
            units: units as i64,
        }
    }

    /// `x` (B, T, input) -> (B, T, units) with `return_sequences`, else the last state (B, units).
    /// Panics where [`f_forward`](Self::f_forward) returns an error.
    pub fn forward(&self, x: &Tensor, return_sequences: bool) -> Tensor {
        match self.f_forward(x, return_sequences) {
            Ok(y) => y,
            Err(e) => panic!("KerasGru::forward: {e}"),
        }
    }

    /// [`forward`](Self::forward) with libtorch's errors returned (an input that is not
    /// `(B, T, input)`, or of another dtype than the kernels).
    pub fn f_forward(&self, x: &Tensor, return_sequences: bool) -> Result<Tensor, TchError> {
        let (b, t) = sequence_dims(x, "KerasGru")?;
        let n = self.units;
        // The input part of all steps at once.
        let xw = x.f_matmul(&self.kernel)?.f_add(&self.bias)?;
        let u_zr = self.recurrent_kernel.f_narrow(1, 0, 2 * n)?;
        let u_h = self.recurrent_kernel.f_narrow(1, 2 * n, n)?;
        let mut h = Tensor::f_zeros([b, n], (x.kind(), x.device()))?;
        let mut outputs = Vec::with_capacity(if return_sequences { t as usize } else { 0 });
        for s in 0..t {
            let xs = xw.f_select(1, s)?;
            let zr = f_hard_sigmoid(&xs.f_narrow(1, 0, 2 * n)?.f_add(&h.f_matmul(&u_zr)?)?)?;
            let z = zr.f_narrow(1, 0, n)?;
            let r = zr.f_narrow(1, n, n)?;
            let candidate = xs
                .f_narrow(1, 2 * n, n)?
                .f_add(&r.f_mul(&h)?.f_matmul(&u_h)?)?
                .f_tanh()?;
            h = candidate.f_add(&z.f_mul(&h.f_sub(&candidate)?)?)?;
            if return_sequences {
                outputs.push(h.shallow_clone());
            }
        }
        recurrent_output(&outputs, h, return_sequences)
    }
}

/// BatchNorm `bn` over the mel axis of an input `[batch, 1, n_mels, frames]` (Keras
/// `BatchNormalization(axis=1)` on `(n_mels, frames, 1)`), the first layer of the 2-D models.
pub(crate) fn f_normalize_mels(
    bn: &KerasBatchNorm,
    xs: &Tensor,
    train: bool,
) -> Result<Tensor, TchError> {
    let s = xs.size();
    let (b, f, l) = (s[0], s[2], s[3]);
    bn.f_forward_t(&xs.f_reshape([b, f, l])?, train)?
        .f_reshape([b, 1, f, l])
}

/// A 2-D conv stack's output `(B, C, F', T')` as the recurrent layers read it: Keras's
/// Permute((2, 1, 3)) + Reshape, `(B, T', F' * C)` with feature index `f * C + c`.
pub(crate) fn f_nchw_to_sequence(h: &Tensor) -> Result<Tensor, TchError> {
    let s = h.size();
    h.f_permute([0, 3, 2, 1])?
        .f_reshape([s[0], s[3], s[2] * s[1]])
}

/// `(batch, time)` of a recurrent layer's input, which must be `(batch, time, features)`.
fn sequence_dims(x: &Tensor, layer: &str) -> Result<(i64, i64), TchError> {
    match x.size()[..] {
        [b, t, _] => Ok((b, t)),
        ref size => Err(TchError::Shape(format!(
            "{layer} input must be (batch, time, features), got {size:?}"
        ))),
    }
}

/// A recurrent layer's output: every step's state stacked on the time axis, or the last.
fn recurrent_output(
    outputs: &[Tensor],
    last: Tensor,
    return_sequences: bool,
) -> Result<Tensor, TchError> {
    if return_sequences {
        Tensor::f_stack(outputs, 1)
    } else {
        Ok(last)
    }
}

/// A differentiable copy of a 4-d tensor in NHWC strides (PyTorch `channels_last`): a
/// channels-last conv weight makes libtorch's oneDNN run the conv stack in NHWC. (tch has no
/// memory-format API, and `permute().contiguous()` is a no-op when C == 1.)
pub fn to_channels_last(t: &Tensor) -> Tensor {
    let s = t.size();
    let (c, h, w) = (s[1], s[2], s[3]);
    let mut out = Tensor::empty_strided(&s, [h * w * c, 1, w * c, c], (t.kind(), t.device()));
    out.copy_(t);
    out
}

/// Keras 2.1.1 LSTM (`implementation=1`, the defaults): gates i, f, c, o in that order in the
/// kernels; `i, f, o = hard_sigmoid(x W + b + h U)`; `c = f * c_prev + i * tanh(x W_c + b_c +
/// h U_c)`; `h = o * tanh(c)`; one bias, its forget part initialised to 1
/// (`unit_forget_bias=True`); zero initial states. 4 x (units x (input + units) + units)
/// parameters. (tch's and PyTorch's LSTM use the logistic sigmoid and two biases.)
#[derive(Debug)]
pub struct KerasLstm {
    /// Input kernel `[input, 4 units]`, glorot uniform.
    pub kernel: Tensor,
    /// Recurrent kernel `[units, 4 units]`, orthogonal.
    pub recurrent_kernel: Tensor,
    /// Bias `[4 units]`: zeros, ones for the forget gate.
    pub bias: Tensor,
    units: i64,
}

impl KerasLstm {
    /// An LSTM of `units` over `input` features under `path`.
    pub fn new(path: nn::Path<'_>, input: usize, units: usize) -> Self {
        let (u, u4) = (units as i64, 4 * units as i64);
        let bias = path.var("bias", &[u4], Init::Const(0.0));
        tch::no_grad(|| {
            // unit_forget_bias: the forget gate's bias starts at 1.
            let _ = bias.narrow(0, u, u).fill_(1.0);
        });
        Self {
            kernel: path.var(
                "kernel",
                &[input as i64, u4],
                glorot_uniform(input, 4 * units),
            ),
            recurrent_kernel: path.var(
                "recurrent_kernel",
                &[u, u4],
                Init::Orthogonal { gain: 1.0 },
            ),
            bias,
            units: u,
        }
    }

    /// `x` (B, T, input) -> (B, T, units) with `return_sequences`, else the last state
    /// (B, units); libtorch's errors returned (an input that is not `(B, T, input)`, or of
    /// another dtype than the kernels).
    pub fn f_forward(&self, x: &Tensor, return_sequences: bool) -> Result<Tensor, TchError> {
        let (b, t) = sequence_dims(x, "KerasLstm")?;
        let n = self.units;
        let xw = x.f_matmul(&self.kernel)?.f_add(&self.bias)?;
        let mut h = Tensor::f_zeros([b, n], (x.kind(), x.device()))?;
        let mut c = h.f_zeros_like()?;
        let mut outputs = Vec::with_capacity(if return_sequences { t as usize } else { 0 });
        for s in 0..t {
            let z = xw
                .f_select(1, s)?
                .f_add(&h.f_matmul(&self.recurrent_kernel)?)?;
            let i = f_hard_sigmoid(&z.f_narrow(1, 0, n)?)?;
            let f = f_hard_sigmoid(&z.f_narrow(1, n, n)?)?;
            let candidate = z.f_narrow(1, 2 * n, n)?.f_tanh()?;
            let o = f_hard_sigmoid(&z.f_narrow(1, 3 * n, n)?)?;
            c = f.f_mul(&c)?.f_add(&i.f_mul(&candidate)?)?;
            h = o.f_mul(&c.f_tanh()?)?;
            if return_sequences {
                outputs.push(h.shallow_clone());
            }
        }
        recurrent_output(&outputs, h, return_sequences)
    }
}
