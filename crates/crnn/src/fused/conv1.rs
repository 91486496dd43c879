//! The first conv block (one input channel, 3x3 "same" conv, ELU, BatchNorm, max-pool) fused
//! into single passes that compute the convolution on the fly: its output (49 MB for a
//! training batch of 16 three-second slices) is never stored. The forward pass keeps only the
//! BatchNorm sums and each pool window's winner; the backward pass recomputes conv and ELU
//! and accumulates the conv-1 weight, bias and input gradients as it goes (oneDNN's backward
//! kernels are slow for a one-channel input).
//!
//! Positions are visited in one canonical order per pooled row (each window's positions, then
//! the columns and rows no window covers), channels in groups of 64; the AVX-512 twins in
//! `avx512_conv1.rs` follow the same order and arithmetic (fused multiply-adds in the conv and
//! the gradient sums, the shared ELU), so both give the same bits.

use super::kernels::{
    Affine, BnBackward, ChannelSums, Geometry, check_affine, check_len, rows_per_job,
};
use super::math::elu;
use super::parallel::par_map;
use crate::{Error, Result};

/// Channels handled per pass over the positions.
pub(crate) const GROUP: usize = 64;

/// Conv 1 in kernel order: `taps[(kh * 3 + kw) * c + o] = kernel[o, 0, kh, kw]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Conv1 {
    pub c: usize,
    pub taps: Vec<f32>,
    pub bias: Vec<f32>,
}

/// The input of conv 1: `[n][f][t]` (one channel).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plane<'a> {
    pub z: &'a [f32],
    pub f: usize,
    pub t: usize,
}

impl Plane<'_> {
    /// The 3x3 neighbourhood of (`n`, `f`, `t`) in tap order, zero outside the plane.
    #[inline(always)]
    pub fn taps(&self, n: usize, f: usize, t: usize) -> [f32; 9] {
        let mut out = [0f32; 9];
        for kh in 0..3 {
            let ff = f + kh;
            if ff == 0 || ff > self.f {
                continue;
            }
            let row = &self.z[(n * self.f + ff - 1) * self.t..][..self.t];
            for kw in 0..3 {
                let tt = t + kw;
                if tt >= 1 && tt <= self.t {
                    out[kh * 3 + kw] = row[tt - 1];
                }
            }
        }
        out
    }
}

/// Runs `$body` for every position of pooled row `$fo` in canonical order, binding the
/// conv-output row `$f`, column `$t` and `$win` (`Some((to, k))` inside window `to` at window
/// index `k`, else `None`): each window's positions, then the columns past the last window,
/// then (for the last pooled row) the rows past the last window. `continue` skips to the next
/// position.
macro_rules! for_positions {
    ($g:expr, $fo:expr, |$f:ident, $t:ident, $win:ident| $body:block) => {{
        let (g, fo): (Geometry, usize) = ($g, $fo);
        let (fo_n, to_n) = (g.fo(), g.to());
        for to in 0..to_n {
            for k in 0..g.pf * g.pt {
                let ($f, $t) = (fo * g.pf + k / g.pt, to * g.pt + k % g.pt);
                let $win: Option<(usize, u8)> = Some((to, k as u8));
                $body
            }
        }
        for i in 0..g.pf {
            for $t in to_n * g.pt..g.t {
                let $f = fo * g.pf + i;
                let $win: Option<(usize, u8)> = None;
                $body
            }
        }
        if fo + 1 == fo_n {
            for $f in fo_n * g.pf..g.f {
                for $t in 0..g.t {
                    let $win: Option<(usize, u8)> = None;
                    $body
                }
            }
        }
    }};
}
pub(crate) use for_positions;

/// Conv 1 at one position for channels `c0..c0 + x.len()`: `bias`, then one fused
/// multiply-add per tap in tap order.
#[inline(always)]
fn conv_at(conv: &Conv1, zs: &[f32; 9], c0: usize, x: &mut [f32]) {
    let w = x.len();
    x.copy_from_slice(&conv.bias[c0..c0 + w]);
    for (tap, &zv) in zs.iter().enumerate() {
        let taps = &conv.taps[tap * conv.c + c0..][..w];
        for (xo, &wv) in x.iter_mut().zip(taps) {
            *xo = wv.mul_add(zv, *xo);
        }
    }
}

/// Where the training forward pass writes, per pooled element: the window index of the
/// winner and its ELU value.
pub(crate) struct Winners<'a> {
    pub index: &'a mut [u8],
    pub value: &'a mut [f32],
}

fn check(plane: &Plane<'_>, conv: &Conv1, g: Geometry) -> Result<()> {
    check_len("conv-1 input", plane.z.len(), g.n * g.f * g.t)?;
    check_len("conv-1 taps", conv.taps.len(), 9 * g.c)?;
    check_len("conv-1 bias", conv.bias.len(), g.c)?;
    if plane.f != g.f || plane.t != g.t || g.fo() == 0 || g.to() == 0 {
        return Err(Error::InvalidConfig {
            field: "pool_sizes",
            rule: format!("conv-1 plane {}x{} does not fit {g:?}", plane.f, plane.t),
        });
    }
    Ok(())
}

fn use_avx512() -> bool {
    super::kernels::use_avx512()
}

// ---- training forward -------------------------------------------------------------------

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn train_body(
    plane: Plane<'_>,
    conv: &Conv1,
    g: Geometry,
    sign: &[f32],
    first_row: usize,
    index: &mut [u8],
    value: &mut [f32],
    sum: &mut [f64],
    sumsq: &mut [f64],
) {
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let rows = index.len() / (to_n * c);
    for c0 in (0..c).step_by(GROUP) {
        let w = (c - c0).min(GROUP);
        let mut x = vec![0f32; w];
        let mut best = vec![f32::NEG_INFINITY; w];
        let mut bidx = vec![0u8; w];
        for r in 0..rows {
            let (n, fo) = ((first_row + r) / fo_n, (first_row + r) % fo_n);
            for_positions!(g, fo, |f, t, window| {
                conv_at(conv, &plane.taps(n, f, t), c0, &mut x);
                for ch in 0..w {
                    let e = elu(x[ch]);
                    x[ch] = e;
                    let d = e as f64;
                    sum[c0 + ch] += d;
                    sumsq[c0 + ch] += d * d;
                }
                let Some((to, k)) = window else { continue };
                if k == 0 {
                    best.fill(f32::NEG_INFINITY);
                    bidx.fill(0);
                }
                for ch in 0..w {
                    let v = x[ch] * sign[c0 + ch];
                    let take = v > best[ch] || (v.is_nan() && !best[ch].is_nan());
                    best[ch] = if take { v } else { best[ch] };
                    bidx[ch] = if take { k } else { bidx[ch] };
                }
                if k as usize + 1 == g.pf * g.pt {
                    let at = (r * to_n + to) * c + c0;
                    for ch in 0..w {
                        value[at + ch] = best[ch] * sign[c0 + ch];
                        index[at + ch] = bidx[ch];
                    }
                }
            });
        }
    }
}

super::kernels::dispatch!(
    #[allow(clippy::too_many_arguments)]
    fn train_job(
        plane: Plane<'_>,
        conv: &Conv1,
        g: Geometry,
        sign: &[f32],
        first_row: usize,
        index: &mut [u8],
        value: &mut [f32],
        sum: &mut [f64],
        sumsq: &mut [f64],
    ) => train_body
);

/// Training forward of block 1 without its BatchNorm affine: conv 1 and ELU at every
/// position, the per-channel sum (`a`) and sum of squares (`b`) of the ELU output, and the
/// winner of every pool window under `sign` (the sign of the BatchNorm gamma: the BatchNorm
/// scale `gamma / sqrt(var + eps)` has the same sign, so the winner is known before the
/// statistics are).
pub(crate) fn train_forward(
    plane: Plane<'_>,
    conv: &Conv1,
    g: Geometry,
    sign: &[f32],
    out: Winners<'_>,
) -> Result<ChannelSums> {
    check(&plane, conv, g)?;
    check_len("pool index", out.index.len(), g.pooled_len())?;
    check_len("pool value", out.value.len(), g.pooled_len())?;
    check_len("BatchNorm sign", sign.len(), g.c)?;
    let avx = use_avx512();
    let row = g.to() * g.c;
    let per = rows_per_job(g.n * g.fo());
    let jobs: Vec<_> = out
        .index
        .chunks_mut(per * row)
        .zip(out.value.chunks_mut(per * row))
        .collect();
    let parts = par_map(jobs, |j, (index, value)| {
        let mut s = ChannelSums::zeros(g.c);
        #[cfg(target_arch = "x86_64")]
        if avx {
            // SAFETY: AVX-512 present; lengths checked against the geometry above.
            unsafe {
                super::avx512_conv1::train(
                    plane,
                    conv,
                    g,
                    sign,
                    j * per,
                    index,
                    value,
                    &mut s.a,
                    &mut s.b,
                )
            };
            return s;
        }
        let _ = avx;
        train_job(
            plane,
            conv,
            g,
            sign,
            j * per,
            index,
            value,
            &mut s.a,
            &mut s.b,
        );
        s
    })?;
    Ok(ChannelSums::total(parts, g.c))
}

// ---- training backward ------------------------------------------------------------------

/// The flat conv rows (`n * f + f`) a job of pooled rows touches through conv 1's input
/// gradient: its own rows, one more on each side.
pub(crate) fn halo_rows(g: Geometry, first_row: usize, rows: usize) -> std::ops::Range<usize> {
    let (fo_n, total) = (g.fo(), g.n * g.f);
    if rows == 0 {
        return 0..0;
    }
    let first = first_row / fo_n * g.f + first_row % fo_n * g.pf;
    let last_row = first_row + rows - 1;
    let (n, fo) = (last_row / fo_n, last_row % fo_n);
    let last = if fo + 1 == fo_n {
        n * g.f + g.f - 1
    } else {
        n * g.f + fo * g.pf + g.pf - 1
    };
    first.saturating_sub(1)..(last + 2).min(total)
}

/// Sums one 16-lane accumulator in a fixed tree order: 8, 4, 2, 1 lanes apart.
#[inline(always)]
pub(crate) fn tree_sum(mut lanes: [f32; 16]) -> f32 {
    for width in [8, 4, 2, 1] {
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    lanes[0]
}

/// What the backward job reads beside the input plane.
pub(crate) struct GradIn<'a> {
    pub conv: &'a Conv1,
    pub g: Geometry,
    pub bn: &'a BnBackward,
    pub gp: &'a [f32],
    pub index: &'a [u8],
}

/// Per-job gradient partial sums.
pub(crate) struct GradOut {
    /// `[9][c]`, conv-1 kernel gradient.
    pub kernel: Vec<f64>,
    /// `[c]`, conv-1 bias gradient.
    pub bias: Vec<f64>,
    /// Input gradient over `rows` (flat conv rows) x t.
    pub input: Vec<f32>,
    pub rows: std::ops::Range<usize>,
}

#[inline(always)]
fn grad_body(plane: Plane<'_>, gi: &GradIn<'_>, first_row: usize, rows: usize, out: &mut GradOut) {
    let (g, conv, bn) = (gi.g, gi.conv, gi.bn);
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    for c0 in (0..c).step_by(GROUP) {
        let w = (c - c0).min(GROUP);
        let mut x = vec![0f32; w];
        let mut dx = vec![0f32; w];
        let mut kernel_row = vec![0f32; 9 * w];
        for r in first_row..first_row + rows {
            let (n, fo) = (r / fo_n, r % fo_n);
            kernel_row.fill(0.0);
            for_positions!(g, fo, |f, t, window| {
                let zs = plane.taps(n, f, t);
                conv_at(conv, &zs, c0, &mut x);
                let at = window.map(|(to, _)| (r * to_n + to) * c + c0);
                for ch in 0..w {
                    let (e, cc) = (elu(x[ch]), c0 + ch);
                    let centred = bn.c1[cc] * (e - bn.mean[cc]);
                    let de = match (at, window) {
                        (Some(at), Some((_, k))) => {
                            let hit = if gi.index[at + ch] == k {
                                gi.gp[at + ch]
                            } else {
                                0.0
                            };
                            (bn.scale[cc] * hit + bn.c0[cc]) + centred
                        }
                        _ => bn.c0[cc] + centred,
                    };
                    let d = if e > 0.0 { de } else { de * (e + 1.0) };
                    dx[ch] = d;
                    out.bias[cc] += d as f64;
                }
                for (tap, &zv) in zs.iter().enumerate() {
                    for (acc, &d) in kernel_row[tap * w..][..w].iter_mut().zip(&dx) {
                        *acc = d.mul_add(zv, *acc);
                    }
                }
                // Input gradient: dz[f + kh - 1, t + kw - 1] += dx . kernel[:, kh, kw].
                for tap in 0..9 {
                    let (kh, kw) = (tap / 3, tap % 3);
                    let (ff, tt) = (f + kh, t + kw);
                    if ff == 0 || ff > g.f || tt == 0 || tt > g.t {
                        continue;
                    }
                    let mut lanes = [0f32; 16];
                    let wt = &conv.taps[tap * c + c0..][..w];
                    for ch in 0..w {
                        lanes[ch % 16] = dx[ch].mul_add(wt[ch], lanes[ch % 16]);
                    }
                    let flat = n * g.f + ff - 1;
                    out.input[(flat - out.rows.start) * g.t + tt - 1] += tree_sum(lanes);
                }
            });
            for (tap_ch, acc) in kernel_row.iter().enumerate() {
                out.kernel[(tap_ch / w) * c + c0 + tap_ch % w] += *acc as f64;
            }
        }
    }
}

super::kernels::dispatch!(
    fn grad_job(plane: Plane<'_>, gi: &GradIn<'_>, first_row: usize, rows: usize, out: &mut GradOut) => grad_body
);

/// Conv-1 gradients of block 1's backward pass, from the gradient `gp` at each window's
/// winner (after dropout, pass C) and the BatchNorm backward coefficients: `(kernel [9][c],
/// bias [c], input [n][f][t])`. Conv 1 and the ELU are recomputed from the input plane.
pub(crate) fn grads(plane: Plane<'_>, gi: &GradIn<'_>) -> Result<(Vec<f64>, Vec<f64>, Vec<f32>)> {
    let g = gi.g;
    check(&plane, gi.conv, g)?;
    check_len("pooled gradient", gi.gp.len(), g.pooled_len())?;
    check_len("pool index", gi.index.len(), g.pooled_len())?;
    for v in [&gi.bn.scale, &gi.bn.mean, &gi.bn.c0, &gi.bn.c1] {
        check_len("BatchNorm backward coefficients", v.len(), g.c)?;
    }
    let avx = use_avx512();
    let pooled_rows = g.n * g.fo();
    let per = rows_per_job(pooled_rows);
    let jobs: Vec<usize> = (0..pooled_rows).step_by(per).collect();
    let parts = par_map(jobs, |_, first| {
        let rows = per.min(pooled_rows - first);
        let halo = halo_rows(g, first, rows);
        let mut out = GradOut {
            kernel: vec![0.0; 9 * g.c],
            bias: vec![0.0; g.c],
            input: vec![0.0; halo.len() * g.t],
            rows: halo,
        };
        #[cfg(target_arch = "x86_64")]
        if avx {
            // SAFETY: AVX-512 present; lengths checked against the geometry above.
            unsafe { super::avx512_conv1::grad(plane, gi, first, rows, &mut out) };
            return out;
        }
        let _ = avx;
        grad_job(plane, gi, first, rows, &mut out);
        out
    })?;
    let (mut kernel, mut bias) = (vec![0f64; 9 * g.c], vec![0f64; g.c]);
    let mut input = vec![0f32; g.n * g.f * g.t];
    for p in parts {
        for (a, b) in kernel.iter_mut().zip(&p.kernel) {
            *a += b;
        }
        for (a, b) in bias.iter_mut().zip(&p.bias) {
            *a += b;
        }
        for (a, b) in input[p.rows.start * g.t..].iter_mut().zip(&p.input) {
            *a += b;
        }
    }
    Ok((kernel, bias, input))
}

// ---- inference --------------------------------------------------------------------------

#[inline(always)]
fn eval_body(
    plane: Plane<'_>,
    conv: &Conv1,
    g: Geometry,
    affine: &Affine,
    first_row: usize,
    y: &mut [f32],
) {
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let rows = y.len() / (to_n * c);
    for c0 in (0..c).step_by(GROUP) {
        let w = (c - c0).min(GROUP);
        let mut x = vec![0f32; w];
        let mut best = vec![f32::NEG_INFINITY; w];
        for r in 0..rows {
            let (n, fo) = ((first_row + r) / fo_n, (first_row + r) % fo_n);
            for to in 0..to_n {
                best.fill(f32::NEG_INFINITY);
                for k in 0..g.pf * g.pt {
                    let (f, t) = (fo * g.pf + k / g.pt, to * g.pt + k % g.pt);
                    conv_at(conv, &plane.taps(n, f, t), c0, &mut x);
                    for ch in 0..w {
                        let v = x[ch] * affine.sign[c0 + ch];
                        let take = v > best[ch] || (v.is_nan() && !best[ch].is_nan());
                        best[ch] = if take { v } else { best[ch] };
                    }
                }
                let at = (r * to_n + to) * c + c0;
                for ch in 0..w {
                    let cc = c0 + ch;
                    let v = elu(best[ch] * affine.sign[cc]);
                    y[at + ch] = affine.scale[cc] * v + affine.shift[cc];
                }
            }
        }
    }
}

super::kernels::dispatch!(
    fn eval_job(plane: Plane<'_>, conv: &Conv1, g: Geometry, affine: &Affine, first_row: usize, y: &mut [f32]) => eval_body
);

/// Inference of block 1: `maxpool(bn(elu(conv1(z))))` as `bn(elu(ext(conv1(z))))`, conv 1
/// computed per window and never stored.
pub(crate) fn eval(
    plane: Plane<'_>,
    conv: &Conv1,
    g: Geometry,
    affine: &Affine,
    y: &mut [f32],
) -> Result<()> {
    check(&plane, conv, g)?;
    check_len("pooled output", y.len(), g.pooled_len())?;
    check_affine(affine, g.c)?;
    let avx = use_avx512();
    let per = rows_per_job(g.n * g.fo());
    par_map(y.chunks_mut(per * g.to() * g.c).collect(), |j, out| {
        #[cfg(target_arch = "x86_64")]
        if avx {
            // SAFETY: AVX-512 present; lengths checked against the geometry above.
            unsafe { super::avx512_conv1::eval(plane, conv, g, affine, j * per, out) };
            return;
        }
        let _ = avx;
        eval_job(plane, conv, g, affine, j * per, out);
    })?;
    Ok(())
}

#[cfg(test)]
#[path = "conv1_tests.rs"]
mod tests;
