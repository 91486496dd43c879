//! The element-wise part of conv blocks 2-4 in passes over channels-last (NHWC) `f32`
//! memory: ELU -> BatchNorm -> MaxPool -> Dropout forward (training and inference) and their
//! backward. Block 1 has its own passes with the convolution inside (`conv1.rs`).

use super::kernels::{
    Affine, BnBackward, ChannelSums, Geometry, check_affine, check_len, check_whole_positions,
    dispatch, rows_per_job, use_avx512,
};
use super::math::{DropoutMask, elu};
use super::parallel::par_map;
use crate::Result;

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
    check_whole_positions("pooled values", value.len(), c)?;
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
    check_whole_positions("pooled gradient", dy.len(), c)?;
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

#[cfg(test)]
#[path = "dense_tests.rs"]
mod tests;
