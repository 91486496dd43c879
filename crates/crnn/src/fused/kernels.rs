//! The element-wise part of a conv block, fused into a few passes over channels-last (NHWC)
//! `f32` memory: ELU -> BatchNorm -> MaxPool -> Dropout forward (training and inference) and
//! their backward, plus the input BatchNorm over mel bins.
//!
//! Plain slices in and out (no tensors), so every kernel is tested against a naive
//! transcription. Rows are split into a fixed number of jobs (not one per thread), run on
//! libtorch's intra-op threads, and per-job partial sums are added in job order, so results
//! do not depend on the thread count. Per-channel sums are accumulated in `f64`.

use super::math::{DropoutMask, elu};
use super::parallel::par_map;
use crate::{Error, Result};

/// Whether the AVX-512 kernels run (the CPU has them and the caller did not turn them off).
pub(crate) fn use_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::avx512::available() && !PORTABLE_ONLY.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Forces the portable kernels (tests compare the two).
pub(crate) static PORTABLE_ONLY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

pub(crate) fn check_len(what: &'static str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Shape {
            what,
            expected: vec![want as i64],
            got: vec![got as i64],
        })
    }
}

/// Jobs per pass: enough to balance a few cores, few enough to keep the partial sums cheap.
const JOBS: usize = 32;

/// Compiles `$body` (an `#[inline(always)]` fn) for AVX-512 and AVX2+FMA and picks the best
/// the CPU has at run time; other targets get the portable build. The bodies use plain
/// `+ - *` and `f32::mul_add` (always fused: an FMA instruction in the AVX builds, libm's
/// `fmaf` elsewhere), so all builds give the same bits.
macro_rules! dispatch {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has every feature `avx512` was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has every feature `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use dispatch;

/// Shape of one conv block's output and its pooling, in NHWC memory order
/// `[n][f][t][c]` (batch, frequency, time, channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
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
    /// Frequency bins after pooling (floor, as Keras "valid" pooling).
    pub fn fo(&self) -> usize {
        self.f / self.pf
    }
    /// Frames after pooling.
    pub fn to(&self) -> usize {
        self.t / self.pt
    }
    /// Elements of the conv output.
    pub fn len(&self) -> usize {
        self.n * self.f * self.t * self.c
    }
    /// Elements of the pooled output.
    pub fn pooled_len(&self) -> usize {
        self.n * self.fo() * self.to() * self.c
    }
    /// Positions per channel of the conv output (the BatchNorm population).
    pub fn positions(&self) -> usize {
        self.n * self.f * self.t
    }
}

/// Per-channel sums of a pass, in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChannelSums {
    pub a: Vec<f64>,
    pub b: Vec<f64>,
}

impl ChannelSums {
    pub(crate) fn zeros(c: usize) -> Self {
        Self {
            a: vec![0.0; c],
            b: vec![0.0; c],
        }
    }
    /// Adds the parts in order (deterministic).
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
}

pub(crate) fn rows_per_job(rows: usize) -> usize {
    rows.div_ceil(JOBS).max(1)
}

// ---- training forward -------------------------------------------------------------------

#[inline(always)]
fn elu_stats_body(x: &mut [f32], c: usize, sum: &mut [f64], sumsq: &mut [f64]) {
    for pos in x.chunks_exact_mut(c) {
        for ((v, s), q) in pos.iter_mut().zip(sum.iter_mut()).zip(sumsq.iter_mut()) {
            let e = elu(*v);
            *v = e;
            let d = e as f64;
            *s += d;
            *q += d * d;
        }
    }
}

dispatch!(
    fn elu_stats_job(x: &mut [f32], c: usize, sum: &mut [f64], sumsq: &mut [f64]) => elu_stats_body
);

/// Pass A: `x := elu(x)` in place; returns the per-channel sum (`a`) and sum of squares (`b`)
/// of the result.
pub(crate) fn elu_with_stats(x: &mut [f32], g: Geometry) -> Result<ChannelSums> {
    let row = g.t * g.c;
    if row == 0 {
        return Ok(ChannelSums::zeros(g.c));
    }
    check_len("conv output", x.len(), g.len())?;
    let avx = use_avx512();
    let parts = par_map(
        x.chunks_mut(rows_per_job(g.n * g.f) * row).collect(),
        |_, chunk| {
            let mut s = ChannelSums::zeros(g.c);
            #[cfg(target_arch = "x86_64")]
            if avx {
                // SAFETY: the CPU has AVX-512 (checked); `chunk` holds whole positions of `c`.
                unsafe { super::avx512::elu_stats(chunk, g.c, &mut s.a, &mut s.b) };
                return s;
            }
            let _ = avx;
            elu_stats_job(chunk, g.c, &mut s.a, &mut s.b);
            s
        },
    )?;
    Ok(ChannelSums::total(parts, g.c))
}

/// The per-channel affine map of BatchNorm, `y = scale * x + shift`, and the sign used to
/// pool before it (`max(scale * x + shift) = scale * ext(x) + shift`, `ext` = max where
/// `scale >= 0`, min where it is negative).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Affine {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub sign: Vec<f32>,
}

impl Affine {
    /// From `scale` and `shift`.
    pub fn new(scale: Vec<f32>, shift: Vec<f32>) -> Self {
        let sign = scale
            .iter()
            .map(|&s| if s < 0.0 { -1.0 } else { 1.0 })
            .collect();
        Self { scale, shift, sign }
    }
}

pub(crate) fn check_affine(affine: &Affine, c: usize) -> Result<()> {
    for v in [&affine.scale, &affine.shift, &affine.sign] {
        check_len("BatchNorm scale/shift", v.len(), c)?;
    }
    Ok(())
}

/// Per-window scratch: the best (sign-adjusted) value and its index per channel.
struct WindowBest {
    best: Vec<f32>,
    index: Vec<u8>,
}

impl WindowBest {
    fn new(c: usize) -> Self {
        Self {
            best: vec![0.0; c],
            index: vec![0; c],
        }
    }

    /// Scans the window at pooled position (`n`, `fo`, `to`) of `e` for the extreme per
    /// channel (first one on ties; a NaN wins and stays, as libtorch's max pool).
    #[inline(always)]
    fn scan(&mut self, e: &[f32], g: Geometry, n: usize, fo: usize, to: usize, sign: &[f32]) {
        self.best.fill(f32::NEG_INFINITY);
        self.index.fill(0);
        for i in 0..g.pf {
            for j in 0..g.pt {
                let at = ((n * g.f + fo * g.pf + i) * g.t + to * g.pt + j) * g.c;
                let src = &e[at..at + g.c];
                let k = (i * g.pt + j) as u8;
                for (((b, x), s), idx) in self
                    .best
                    .iter_mut()
                    .zip(src)
                    .zip(sign)
                    .zip(self.index.iter_mut())
                {
                    let v = x * s;
                    let take = v > *b || (v.is_nan() && !b.is_nan());
                    *b = if take { v } else { *b };
                    *idx = if take { k } else { *idx };
                }
            }
        }
    }
}

/// Where pass B writes: the block output, the chosen window index and its ELU value.
pub(crate) struct PooledOut<'a> {
    pub y: &'a mut [f32],
    pub index: &'a mut [u8],
    pub value: &'a mut [f32],
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pool_train_body(
    e: &[f32],
    g: Geometry,
    first_row: usize,
    affine: &Affine,
    mask: &DropoutMask,
    y: &mut [f32],
    index: &mut [u8],
    value: &mut [f32],
) {
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let mut w = WindowBest::new(c);
    let rows = y.len() / (to_n * c).max(1);
    for r in 0..rows {
        let (n, fo) = ((first_row + r) / fo_n, (first_row + r) % fo_n);
        for to in 0..to_n {
            w.scan(e, g, n, fo, to, &affine.sign);
            let at = (r * to_n + to) * c;
            let base = ((first_row + r) * to_n + to) * c;
            for ch in 0..c {
                let v = w.best[ch] * affine.sign[ch];
                let bn = affine.scale[ch] * v + affine.shift[ch];
                let keep = mask.keep((base + ch) as u32);
                y[at + ch] = if mask.off {
                    bn
                } else if keep {
                    bn * mask.scale
                } else {
                    0.0
                };
                index[at + ch] = w.index[ch];
                value[at + ch] = v;
            }
        }
    }
}

dispatch!(
    #[allow(clippy::too_many_arguments)]
    fn pool_train_job(
        e: &[f32],
        g: Geometry,
        first_row: usize,
        affine: &Affine,
        mask: &DropoutMask,
        y: &mut [f32],
        index: &mut [u8],
        value: &mut [f32],
    ) => pool_train_body
);

/// Pass B (training): max-pool of `affine(e)` (the BatchNorm output), then dropout. Writes
/// the output, and for the backward pass the window index and ELU value of each maximum.
pub(crate) fn pool_train(
    e: &[f32],
    g: Geometry,
    affine: &Affine,
    mask: &DropoutMask,
    out: PooledOut<'_>,
) -> Result<()> {
    let row = g.to() * g.c;
    if row == 0 {
        return Ok(());
    }
    check_len("ELU output", e.len(), g.len())?;
    for (what, len) in [
        ("pooled output", out.y.len()),
        ("pool index", out.index.len()),
        ("pool value", out.value.len()),
    ] {
        check_len(what, len, g.pooled_len())?;
    }
    check_affine(affine, g.c)?;
    let avx = use_avx512();
    let per = rows_per_job(g.n * g.fo());
    let jobs: Vec<_> = out
        .y
        .chunks_mut(per * row)
        .zip(out.index.chunks_mut(per * row))
        .zip(out.value.chunks_mut(per * row))
        .collect();
    par_map(jobs, |j, ((y, index), value)| {
        #[cfg(target_arch = "x86_64")]
        if avx {
            // SAFETY: AVX-512 present; every length was checked against the geometry above.
            unsafe { super::avx512::pool_train(e, g, j * per, affine, mask, y, index, value) };
            return;
        }
        let _ = avx;
        pool_train_job(e, g, j * per, affine, mask, y, index, value);
    })?;
    Ok(())
}

#[inline(always)]
fn pooled_affine_body(
    value: &[f32],
    first: usize,
    c: usize,
    affine: &Affine,
    mask: &DropoutMask,
    y: &mut [f32],
) {
    for (p, (yo, v)) in y.chunks_exact_mut(c).zip(value.chunks_exact(c)).enumerate() {
        let base = first + p * c;
        for ch in 0..c {
            let bn = affine.scale[ch] * v[ch] + affine.shift[ch];
            let keep = mask.keep((base + ch) as u32);
            yo[ch] = if mask.off {
                bn
            } else if keep {
                bn * mask.scale
            } else {
                0.0
            };
        }
    }
}

dispatch!(
    fn pooled_affine_job(
        value: &[f32],
        first: usize,
        c: usize,
        affine: &Affine,
        mask: &DropoutMask,
        y: &mut [f32],
    ) => pooled_affine_body
);

/// The tail of pass B on already-pooled ELU values (block 1, whose winners the fused conv
/// pass found): `y = dropout(scale * value + shift)`, the same arithmetic as [`pool_train`].
pub(crate) fn pooled_affine_dropout(
    value: &[f32],
    c: usize,
    affine: &Affine,
    mask: &DropoutMask,
    y: &mut [f32],
) -> Result<()> {
    check_len("pooled output", y.len(), value.len())?;
    check_affine(affine, c)?;
    if value.is_empty() || c == 0 {
        return Ok(());
    }
    if !value.len().is_multiple_of(c) {
        return Err(Error::Shape {
            what: "pooled values",
            expected: vec![-1, c as i64],
            got: vec![value.len() as i64],
        });
    }
    let avx = use_avx512();
    let per = rows_per_job(value.len() / c) * c;
    par_map(
        y.chunks_mut(per).zip(value.chunks(per)).collect(),
        |j, (yo, v)| {
            #[cfg(target_arch = "x86_64")]
            if avx {
                // SAFETY: AVX-512 present; lengths checked above (whole positions per job).
                unsafe { super::avx512::pooled_affine(v, j * per, c, affine, mask, yo) };
                return;
            }
            let _ = avx;
            pooled_affine_job(v, j * per, c, affine, mask, yo)
        },
    )?;
    Ok(())
}

// ---- training backward ------------------------------------------------------------------

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pooled_grad_body(
    dy: &mut [f32],
    value: &[f32],
    first: usize,
    c: usize,
    mean: &[f32],
    invstd: &[f32],
    mask: &DropoutMask,
    sum_g: &mut [f64],
    sum_gx: &mut [f64],
) {
    for (p, (d, v)) in dy
        .chunks_exact_mut(c)
        .zip(value.chunks_exact(c))
        .enumerate()
    {
        let base = first + p * c;
        for ch in 0..c {
            let keep = mask.keep((base + ch) as u32);
            let gv = if mask.off {
                d[ch]
            } else if keep {
                d[ch] * mask.scale
            } else {
                0.0
            };
            d[ch] = gv;
            let xhat = (v[ch] - mean[ch]) * invstd[ch];
            sum_g[ch] += gv as f64;
            sum_gx[ch] += (gv * xhat) as f64;
        }
    }
}

dispatch!(
    #[allow(clippy::too_many_arguments)]
    fn pooled_grad_job(
        dy: &mut [f32],
        value: &[f32],
        first: usize,
        c: usize,
        mean: &[f32],
        invstd: &[f32],
        mask: &DropoutMask,
        sum_g: &mut [f64],
        sum_gx: &mut [f64],
    ) => pooled_grad_body
);

/// Pass C: `dy := dropout'(dy)` in place (the gradient at the BatchNorm output of each
/// window's maximum); returns per channel `sum(g)` (`a`, = d beta) and `sum(g * xhat)`
/// (`b`, = d gamma), with `xhat = (e - mean) * invstd` at the maxima.
pub(crate) fn pooled_grad(
    dy: &mut [f32],
    value: &[f32],
    c: usize,
    mean: &[f32],
    invstd: &[f32],
    mask: &DropoutMask,
) -> Result<ChannelSums> {
    if dy.is_empty() || c == 0 {
        return Ok(ChannelSums::zeros(c));
    }
    check_len("pool value", value.len(), dy.len())?;
    check_len("BatchNorm mean", mean.len(), c)?;
    check_len("BatchNorm invstd", invstd.len(), c)?;
    if !dy.len().is_multiple_of(c) {
        return Err(Error::Shape {
            what: "pooled gradient",
            expected: vec![-1, c as i64],
            got: vec![dy.len() as i64],
        });
    }
    let avx = use_avx512();
    let per = rows_per_job(dy.len() / c) * c;
    let jobs: Vec<_> = dy.chunks_mut(per).zip(value.chunks(per)).collect();
    let parts = par_map(jobs, |j, (d, v)| {
        let mut s = ChannelSums::zeros(c);
        #[cfg(target_arch = "x86_64")]
        if avx {
            // SAFETY: AVX-512 present; lengths checked above (whole positions per job).
            unsafe {
                super::avx512::pooled_grad(d, v, j * per, c, mean, invstd, mask, &mut s.a, &mut s.b)
            };
            return s;
        }
        let _ = avx;
        pooled_grad_job(d, v, j * per, c, mean, invstd, mask, &mut s.a, &mut s.b);
        s
    })?;
    Ok(ChannelSums::total(parts, c))
}

/// Coefficients of the BatchNorm backward for the dense pass:
/// `de = scale * g_scattered + c0 + c1 * (e - mean)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BnBackward {
    pub scale: Vec<f32>,
    pub mean: Vec<f32>,
    pub c0: Vec<f32>,
    pub c1: Vec<f32>,
}

impl BnBackward {
    /// From the training statistics and the sums of [`pooled_grad`]: with `M` positions,
    /// `de = scale * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M)`.
    pub fn new(
        gamma: &[f32],
        mean: &[f32],
        invstd: &[f32],
        sums: &ChannelSums,
        positions: usize,
    ) -> Self {
        let m = positions as f64;
        let c = gamma.len();
        let (mut scale, mut c0, mut c1) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
        for ch in 0..c {
            let a = gamma[ch] as f64 * invstd[ch] as f64;
            scale[ch] = a as f32;
            c0[ch] = (-a * sums.a[ch] / m) as f32;
            c1[ch] = (-a * invstd[ch] as f64 * sums.b[ch] / m) as f32;
        }
        Self {
            scale,
            mean: mean.to_vec(),
            c0,
            c1,
        }
    }
}

#[inline(always)]
fn conv_grad_body(
    e: &mut [f32],
    gp: &[f32],
    index: &[u8],
    g: Geometry,
    first_row: usize,
    bn: &BnBackward,
    bias: &mut [f64],
) {
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    for (r, row) in e.chunks_exact_mut(g.t * c).enumerate() {
        let (n, f) = ((first_row + r) / g.f, (first_row + r) % g.f);
        let (fo, i) = (f / g.pf, f % g.pf);
        for (tt, pos) in row.chunks_exact_mut(c).enumerate() {
            let (to, j) = (tt / g.pt, tt % g.pt);
            let pooled = fo < fo_n && to < to_n;
            if pooled {
                let k = (i * g.pt + j) as u8;
                let at = ((n * fo_n + fo) * to_n + to) * c;
                let (gw, iw) = (&gp[at..at + c], &index[at..at + c]);
                for ch in 0..c {
                    let ev = pos[ch];
                    let hit = if iw[ch] == k { gw[ch] } else { 0.0 };
                    let de = bn.scale[ch] * hit + bn.c0[ch] + bn.c1[ch] * (ev - bn.mean[ch]);
                    let dx = if ev > 0.0 { de } else { de * (ev + 1.0) };
                    pos[ch] = dx;
                    bias[ch] += dx as f64;
                }
            } else {
                for ch in 0..c {
                    let ev = pos[ch];
                    let de = bn.c0[ch] + bn.c1[ch] * (ev - bn.mean[ch]);
                    let dx = if ev > 0.0 { de } else { de * (ev + 1.0) };
                    pos[ch] = dx;
                    bias[ch] += dx as f64;
                }
            }
        }
    }
}

dispatch!(
    fn conv_grad_job(
        e: &mut [f32],
        gp: &[f32],
        index: &[u8],
        g: Geometry,
        first_row: usize,
        bn: &BnBackward,
        bias: &mut [f64],
    ) => conv_grad_body
);

/// Pass D: turns the stored ELU output `e` into the gradient at the conv output, in place:
/// the BatchNorm backward (dense, plus `g` scattered to each window's maximum), then the ELU
/// backward from its result (`de * (e + 1)` where `e <= 0`). Returns the per-channel sum of
/// the result: the conv bias gradient.
pub(crate) fn conv_output_grad(
    e: &mut [f32],
    g_pooled: &[f32],
    index: &[u8],
    g: Geometry,
    bn: &BnBackward,
) -> Result<Vec<f64>> {
    let row = g.t * g.c;
    if row == 0 {
        return Ok(vec![0.0; g.c]);
    }
    check_len("ELU output", e.len(), g.len())?;
    check_len("pooled gradient", g_pooled.len(), g.pooled_len())?;
    check_len("pool index", index.len(), g.pooled_len())?;
    for v in [&bn.scale, &bn.mean, &bn.c0, &bn.c1] {
        check_len("BatchNorm backward coefficients", v.len(), g.c)?;
    }
    let avx = use_avx512();
    let per = rows_per_job(g.n * g.f);
    let parts = par_map(e.chunks_mut(per * row).collect(), |j, chunk| {
        let mut bias = vec![0.0; g.c];
        #[cfg(target_arch = "x86_64")]
        if avx {
            // SAFETY: AVX-512 present; every length was checked against the geometry above.
            unsafe { super::avx512::conv_grad(chunk, g_pooled, index, g, j * per, bn, &mut bias) };
            return bias;
        }
        let _ = avx;
        conv_grad_job(chunk, g_pooled, index, g, j * per, bn, &mut bias);
        bias
    })?;
    let mut total = vec![0.0; g.c];
    for p in parts {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    Ok(total)
}

// ---- inference --------------------------------------------------------------------------

#[inline(always)]
fn pool_eval_body(x: &[f32], g: Geometry, first_row: usize, affine: &Affine, y: &mut [f32]) {
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let mut w = WindowBest::new(c);
    let rows = y.len() / (to_n * c).max(1);
    for r in 0..rows {
        let (n, fo) = ((first_row + r) / fo_n, (first_row + r) % fo_n);
        for to in 0..to_n {
            w.scan(x, g, n, fo, to, &affine.sign);
            let at = (r * to_n + to) * c;
            for ch in 0..c {
                let v = elu(w.best[ch] * affine.sign[ch]);
                y[at + ch] = affine.scale[ch] * v + affine.shift[ch];
            }
        }
    }
}

dispatch!(
    fn pool_eval_job(x: &[f32], g: Geometry, first_row: usize, affine: &Affine, y: &mut [f32]) => pool_eval_body
);

/// Inference: `maxpool(affine(elu(x)))` computed as `affine(elu(ext(x)))` (ELU is increasing
/// and the affine map monotone per channel), so the ELU and BatchNorm run on the pooled
/// values only.
pub(crate) fn pool_elu_affine(
    x: &[f32],
    g: Geometry,
    affine: &Affine,
    y: &mut [f32],
) -> Result<()> {
    let row = g.to() * g.c;
    if row == 0 {
        return Ok(());
    }
    check_len("conv output", x.len(), g.len())?;
    check_len("pooled output", y.len(), g.pooled_len())?;
    check_affine(affine, g.c)?;
    let avx = use_avx512();
    let per = rows_per_job(g.n * g.fo());
    par_map(y.chunks_mut(per * row).collect(), |j, out| {
        #[cfg(target_arch = "x86_64")]
        if avx {
            // SAFETY: AVX-512 present; every length was checked against the geometry above.
            unsafe { super::avx512::pool_eval(x, g, j * per, affine, out) };
            return;
        }
        let _ = avx;
        pool_eval_job(x, g, j * per, affine, out)
    })?;
    Ok(())
}

// ---- input BatchNorm (over mel bins of `[n][f][t]`) -------------------------------------

/// Per mel bin `f` of `x` `[n][f][t]`: sum (`a`) and sum of squares (`b`).
pub(crate) fn bin_stats(x: &[f32], f: usize, t: usize) -> Result<ChannelSums> {
    if f * t == 0 {
        return Ok(ChannelSums::zeros(f));
    }
    let per = rows_per_job(x.len() / (f * t)) * f * t;
    let parts = par_map(x.chunks(per).collect(), |_, chunk| {
        let mut s = ChannelSums::zeros(f);
        for (r, row) in chunk.chunks_exact(t).enumerate() {
            let (mut a, mut b) = (0f64, 0f64);
            for &v in row {
                a += v as f64;
                b += v as f64 * v as f64;
            }
            s.a[r % f] += a;
            s.b[r % f] += b;
        }
        s
    })?;
    Ok(ChannelSums::total(parts, f))
}

/// `y = scale[f] * x + shift[f]` over `[n][f][t]`.
pub(crate) fn bin_affine(
    x: &[f32],
    f: usize,
    t: usize,
    scale: &[f32],
    shift: &[f32],
    y: &mut [f32],
) -> Result<()> {
    if f * t == 0 {
        return Ok(());
    }
    let per = rows_per_job(x.len() / (f * t)) * f * t;
    par_map(
        y.chunks_mut(per).zip(x.chunks(per)).collect(),
        |_, (yo, xi)| {
            for (r, (orow, xrow)) in yo.chunks_exact_mut(t).zip(xi.chunks_exact(t)).enumerate() {
                let (a, b) = (scale[r % f], shift[r % f]);
                for (o, v) in orow.iter_mut().zip(xrow) {
                    *o = a * v + b;
                }
            }
        },
    )?;
    Ok(())
}

/// Per mel bin: `sum(dy)` (`a`) and `sum(dy * (x - mean) * invstd)` (`b`), the BatchNorm
/// beta and gamma gradients.
pub(crate) fn bin_grad_sums(
    dy: &[f32],
    x: &[f32],
    f: usize,
    t: usize,
    mean: &[f32],
    invstd: &[f32],
) -> Result<ChannelSums> {
    if f * t == 0 {
        return Ok(ChannelSums::zeros(f));
    }
    let per = rows_per_job(x.len() / (f * t)) * f * t;
    let parts = par_map(
        dy.chunks(per).zip(x.chunks(per)).collect(),
        |_, (dc, xc)| {
            let mut s = ChannelSums::zeros(f);
            for (r, (drow, xrow)) in dc.chunks_exact(t).zip(xc.chunks_exact(t)).enumerate() {
                let (m, is) = (mean[r % f], invstd[r % f]);
                let (mut a, mut b) = (0f64, 0f64);
                for (&d, &v) in drow.iter().zip(xrow) {
                    a += d as f64;
                    b += (d * ((v - m) * is)) as f64;
                }
                s.a[r % f] += a;
                s.b[r % f] += b;
            }
            s
        },
    )?;
    Ok(ChannelSums::total(parts, f))
}

/// Biased batch statistics from sums over `count` values: `(mean, variance)` per channel.
pub(crate) fn mean_variance(sums: &ChannelSums, count: usize) -> (Vec<f64>, Vec<f64>) {
    let m = count as f64;
    sums.a
        .iter()
        .zip(&sums.b)
        .map(|(&s, &q)| {
            let mean = s / m;
            (mean, (q / m - mean * mean).max(0.0))
        })
        .unzip()
}

#[cfg(test)]
#[path = "kernels_tests.rs"]
mod tests;
