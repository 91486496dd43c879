//! What the passes share: the geometry of a conv block in NHWC memory, per-channel sums and
//! the BatchNorm maps.

use crate::{Error, Result};

/// Shape of one conv block's output and its pooling, in NHWC memory order `[n][f][t][c]`
/// (batch, frequency, time, channel). Pooling is "valid" (floor), stride = size, as Keras.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Batch.
    pub n: usize,
    /// Frequency bins.
    pub f: usize,
    /// Time frames.
    pub t: usize,
    /// Channels.
    pub c: usize,
    /// Pool size = stride along frequency.
    pub pf: usize,
    /// Pool size = stride along time.
    pub pt: usize,
}

impl Geometry {
    /// Frequency bins after pooling.
    pub fn fo(&self) -> usize {
        self.f / self.pf.max(1)
    }
    /// Frames after pooling.
    pub fn to(&self) -> usize {
        self.t / self.pt.max(1)
    }
    /// Elements of the conv output.
    pub fn len(&self) -> usize {
        self.n * self.f * self.t * self.c
    }
    /// Whether the conv output is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Elements of the pooled output.
    pub fn pooled_len(&self) -> usize {
        self.n * self.fo() * self.to() * self.c
    }
    /// Positions per channel of the conv output (the BatchNorm population).
    pub fn positions(&self) -> usize {
        self.n * self.f * self.t
    }
    /// Positions in one pool window.
    pub fn window(&self) -> usize {
        self.pf * self.pt
    }

    /// Checks the rules every pass relies on: pool sizes >= 1, at most 255 positions per
    /// window (a window index is a byte), and element indices that fit the dropout hash's 32
    /// bits.
    pub fn validate(&self) -> Result<()> {
        let bad = |rule: String| {
            Err(Error::Geometry {
                what: "conv block",
                rule,
            })
        };
        if self.pf == 0 || self.pt == 0 {
            return bad(format!("pool sizes must be >= 1, got {self:?}"));
        }
        if self.window() > 255 {
            return bad(format!(
                "a pool window of {} positions does not fit a byte index",
                self.window()
            ));
        }
        if self.len() > u32::MAX as usize {
            return bad(format!(
                "{} elements exceed the 2^32 element indices of the dropout hash",
                self.len()
            ));
        }
        Ok(())
    }
}

/// Per-channel sums of a pass, in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSums {
    /// First sum per channel (a plain sum).
    pub a: Vec<f64>,
    /// Second sum per channel (of squares, or of products).
    pub b: Vec<f64>,
}

impl ChannelSums {
    /// Zeros for `c` channels.
    pub fn zeros(c: usize) -> Self {
        Self {
            a: vec![0.0; c],
            b: vec![0.0; c],
        }
    }

    /// The parts added in order (deterministic).
    pub(crate) fn total(parts: Vec<ChannelSums>, c: usize) -> Self {
        let mut out = Self::zeros(c);
        for p in parts {
            for (o, v) in out.a.iter_mut().zip(&p.a) {
                *o += v;
            }
            for (o, v) in out.b.iter_mut().zip(&p.b) {
                *o += v;
            }
        }
        out
    }

    /// Biased batch statistics from these sums (sum in `a`, sum of squares in `b`) over
    /// `count` values: `(mean, variance)` per channel, the variance clamped at 0.
    pub fn mean_variance(&self, count: usize) -> (Vec<f64>, Vec<f64>) {
        let m = count.max(1) as f64;
        self.a
            .iter()
            .zip(&self.b)
            .map(|(&s, &q)| {
                let mean = s / m;
                (mean, (q / m - mean * mean).max(0.0))
            })
            .unzip()
    }

    /// [`mean_variance`](Self::mean_variance) in `f32`, with `invstd = 1 / sqrt(var + eps)`
    /// computed in `f64` and rounded once.
    pub fn batch_statistics(&self, count: usize, eps: f64) -> BatchStatistics {
        let (mean, var) = self.mean_variance(count);
        BatchStatistics {
            invstd: var
                .iter()
                .map(|v| (1.0 / (v + eps).sqrt()) as f32)
                .collect(),
            mean: mean.iter().map(|&m| m as f32).collect(),
            var: var.iter().map(|&v| v as f32).collect(),
        }
    }
}

/// Biased per-channel batch statistics (what a training BatchNorm normalises with).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStatistics {
    /// Mean.
    pub mean: Vec<f32>,
    /// Biased variance (what Keras puts into the moving average).
    pub var: Vec<f32>,
    /// `1 / sqrt(var + eps)`.
    pub invstd: Vec<f32>,
}

/// The per-channel affine map of BatchNorm, `y = scale * x + shift`, and the sign used to
/// pool before it (`max(scale * x + shift) = scale * ext(x) + shift`, `ext` = max where
/// `scale >= 0`, min where it is negative).
#[derive(Debug, Clone, PartialEq)]
pub struct Affine {
    /// Per-channel scale.
    pub scale: Vec<f32>,
    /// Per-channel shift.
    pub shift: Vec<f32>,
    /// -1 where `scale < 0`, else 1.
    pub sign: Vec<f32>,
}

impl Affine {
    /// From `scale` and `shift` (same length).
    pub fn new(scale: Vec<f32>, shift: Vec<f32>) -> Self {
        let sign = scale
            .iter()
            .map(|&s| if s < 0.0 { -1.0 } else { 1.0 })
            .collect();
        Self { scale, shift, sign }
    }

    /// The inference map of a BatchNorm, computed as libtorch does:
    /// `scale = gamma * (1 / sqrt(var + eps))`, `shift = beta - mean * scale`.
    pub fn inference(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f32) -> Self {
        let scale = gamma
            .iter()
            .zip(var)
            .map(|(g, v)| g * (1.0 / (v + eps).sqrt()))
            .collect();
        Self::centred(scale, beta, mean)
    }

    /// `shift = beta - mean * scale`.
    fn centred(scale: Vec<f32>, beta: &[f32], mean: &[f32]) -> Self {
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Self::new(scale, shift)
    }

    /// The training map from batch statistics: `scale = gamma * invstd`,
    /// `shift = beta - mean * scale`.
    pub fn training(gamma: &[f32], beta: &[f32], mean: &[f32], invstd: &[f32]) -> Self {
        let scale = gamma.iter().zip(invstd).map(|(g, i)| g * i).collect();
        Self::centred(scale, beta, mean)
    }

    pub(crate) fn check(&self, c: usize) -> Result<()> {
        for v in [&self.scale, &self.shift, &self.sign] {
            crate::error::check_len("BatchNorm scale/shift", v.len(), c)?;
        }
        Ok(())
    }
}

/// Coefficients of the BatchNorm backward for the dense pass:
/// `de = c1 * (e - mean) + (scale * g_scattered + c0)` (two fused multiply-adds), then the
/// ELU backward `de * e + de` where `e <= 0`.
#[derive(Debug, Clone, PartialEq)]
pub struct BnBackward {
    /// `gamma * invstd`.
    pub scale: Vec<f32>,
    /// Batch mean.
    pub mean: Vec<f32>,
    /// `-scale * sum(dy) / M`.
    pub c0: Vec<f32>,
    /// `-scale * invstd * sum(dy * xhat) / M`.
    pub c1: Vec<f32>,
}

impl BnBackward {
    /// From the training statistics and the sums of
    /// [`Plan::pooled_grad`](crate::Plan::pooled_grad) over `positions` values:
    /// `de = scale * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M)`.
    pub fn new(
        gamma: &[f32],
        mean: &[f32],
        invstd: &[f32],
        sums: &ChannelSums,
        positions: usize,
    ) -> Self {
        let m = positions.max(1) as f64;
        let c = gamma
            .len()
            .min(mean.len())
            .min(invstd.len())
            .min(sums.a.len())
            .min(sums.b.len());
        let (mut scale, mut c0, mut c1) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
        for ch in 0..c {
            let a = gamma[ch] as f64 * invstd[ch] as f64;
            scale[ch] = a as f32;
            c0[ch] = (-a * sums.a[ch] / m) as f32;
            c1[ch] = (-a * invstd[ch] as f64 * sums.b[ch] / m) as f32;
        }
        Self {
            scale,
            mean: mean[..c].to_vec(),
            c0,
            c1,
        }
    }

    pub(crate) fn check(&self, c: usize) -> Result<()> {
        for v in [&self.scale, &self.mean, &self.c0, &self.c1] {
            crate::error::check_len("BatchNorm backward coefficients", v.len(), c)?;
        }
        Ok(())
    }
}
