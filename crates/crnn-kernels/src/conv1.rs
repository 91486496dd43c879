//! The first conv block (one input channel, 3x3 "same" conv, ELU, BatchNorm, max-pool) fused
//! into single passes that compute the convolution on the fly: its output (49 MB for a
//! training batch of 16 three-second slices) is never stored. The forward pass keeps only the
//! BatchNorm sums and each pool window's winner; the backward pass recomputes conv and ELU
//! and accumulates the conv-1 weight, bias and input gradients as it goes (oneDNN's backward
//! kernels are slow for a one-channel input).
//!
//! Positions are visited in one canonical order per pooled row (each window's positions, then
//! the columns and rows no window covers), channels in groups of 64, the conv as one fused
//! multiply-add per tap in tap order after the bias.

use crate::error::check_len;
use crate::groups::{GROUP, Sums, add_lanes, by_group, params, span, takes};
use crate::math::elu_vec;
use crate::simd::{Job, LANES, Simd};
use crate::{Affine, BnBackward, ChannelSums, Error, Geometry, Plan, Result};

/// Conv 1 in kernel order: `taps[(kh * 3 + kw) * c + o] = kernel[o, 0, kh, kw]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv1 {
    /// Output channels.
    pub c: usize,
    /// `[3][3][c]`.
    pub taps: Vec<f32>,
    /// `[c]`.
    pub bias: Vec<f32>,
}

impl Conv1 {
    /// From a `[c, 1, 3, 3]` kernel in its natural (OIHW) order and a `[c]` bias.
    pub fn from_oihw(kernel: &[f32], bias: &[f32]) -> Result<Self> {
        let c = bias.len();
        check_len("conv-1 kernel [c, 1, 3, 3]", kernel.len(), 9 * c)?;
        let mut taps = vec![0f32; 9 * c];
        for o in 0..c {
            for tap in 0..9 {
                taps[tap * c + o] = kernel[o * 9 + tap];
            }
        }
        Ok(Self {
            c,
            taps,
            bias: bias.to_vec(),
        })
    }

    /// A gradient `[3][3][c]` (tap order) in the kernel's OIHW order `[c, 1, 3, 3]`.
    pub fn taps_to_oihw(&self, taps: &[f64]) -> Vec<f32> {
        let c = self.c;
        let mut out = vec![0f32; 9 * c];
        for o in 0..c {
            for tap in 0..9 {
                out[o * 9 + tap] = taps.get(tap * c + o).copied().unwrap_or(0.0) as f32;
            }
        }
        out
    }
}

/// The input of conv 1: `[n][f][t]` (one channel).
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    /// The values.
    pub z: &'a [f32],
    /// Frequency bins.
    pub f: usize,
    /// Frames.
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

/// Conv 1 at one position for the group's vectors: the bias, then one fused multiply-add per
/// tap in tap order.
#[inline(always)]
fn conv_at<S: Simd, const N: usize>(
    s: S,
    bias: &[S::F; N],
    taps: &[[S::F; N]; 9],
    zs: &[f32; 9],
) -> [S::F; N] {
    let mut x = *bias;
    for (tap, &zv) in zs.iter().enumerate() {
        let zb = s.splat(zv);
        for v in 0..N {
            x[v] = s.fma(taps[tap][v], zb, x[v]);
        }
    }
    x
}

#[inline(always)]
fn group_taps<S: Simd, const N: usize>(s: S, conv: &Conv1, c0: usize, w: usize) -> [[S::F; N]; 9] {
    let mut out = [[s.zero(); N]; 9];
    for (tap, o) in out.iter_mut().enumerate() {
        *o = params::<S, N>(s, &conv.taps[tap * conv.c..(tap + 1) * conv.c], c0, w);
    }
    out
}

/// Where the training forward pass writes, per pooled element: the window index of the
/// winner and its ELU value.
#[derive(Debug)]
pub struct Winners<'a> {
    /// Window index of each winner.
    pub index: &'a mut [u8],
    /// ELU value of each winner.
    pub value: &'a mut [f32],
}

fn check(plane: &Plane<'_>, conv: &Conv1, g: Geometry) -> Result<()> {
    g.validate()?;
    check_len("conv-1 input", plane.z.len(), g.n * g.f * g.t)?;
    check_len("conv-1 taps", conv.taps.len(), 9 * g.c)?;
    check_len("conv-1 bias", conv.bias.len(), g.c)?;
    if conv.c != g.c || plane.f != g.f || plane.t != g.t || g.fo() == 0 || g.to() == 0 {
        return Err(Error::Geometry {
            what: "block 1",
            rule: format!(
                "conv-1 plane {}x{} with {} channels does not fit {g:?} (or a pool is larger than the plane)",
                plane.f, plane.t, conv.c
            ),
        });
    }
    Ok(())
}

// ---- training forward -------------------------------------------------------------------

struct Train<'a> {
    plane: Plane<'a>,
    conv: &'a Conv1,
    g: Geometry,
    sign: &'a [f32],
    first_row: usize,
    out: Winners<'a>,
    sums: ChannelSums,
}

impl Job for Train<'_> {
    type Out = ChannelSums;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> ChannelSums {
        let c = self.g.c;
        let mut job = self;
        by_group!(c, |c0, w| train_group::<S>(s, &mut job, c0, w));
        job.sums
    }
}

#[inline(always)]
fn train_group<S: Simd, const N: usize>(s: S, job: &mut Train<'_>, c0: usize, w: usize) {
    let (g, plane) = (job.g, job.plane);
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let bias = params::<S, N>(s, &job.conv.bias, c0, w);
    let taps = group_taps::<S, N>(s, job.conv, c0, w);
    let sgn = params::<S, N>(s, job.sign, c0, w);
    let (mut sum, mut sq) = (Sums::<S, N>::new(s), Sums::<S, N>::new(s));
    let mut best = [s.splat(f32::NEG_INFINITY); N];
    let mut bidx = [s.isplat(0); N];
    let rows = job.out.index.len() / (to_n * c);
    for r in 0..rows {
        let (n, fo) = ((job.first_row + r) / fo_n, (job.first_row + r) % fo_n);
        for_positions!(g, fo, |f, t, window| {
            let x = conv_at::<S, N>(s, &bias, &taps, &plane.taps(n, f, t));
            let mut e = [s.zero(); N];
            for v in 0..N {
                e[v] = elu_vec(s, x[v]);
                sum.add(s, v, e[v]);
                sq.add_square(s, v, e[v]);
            }
            sum.next(s);
            sq.next(s);
            let Some((to, k)) = window else { continue };
            if k == 0 {
                best = [s.splat(f32::NEG_INFINITY); N];
                bidx = [s.isplat(0); N];
            }
            let kv = s.isplat(u32::from(k));
            for v in 0..N {
                let val = s.mul(e[v], sgn[v]);
                let take = takes(s, val, best[v]);
                best[v] = s.select(take, val, best[v]);
                bidx[v] = s.iselect(take, kv, bidx[v]);
            }
            if k as usize + 1 == g.pf * g.pt {
                let at = (r * to_n + to) * c;
                for v in 0..N {
                    let lanes = span(c0, w, v);
                    let (a, b) = (at + lanes.start, at + lanes.end);
                    s.store(&mut job.out.value[a..b], s.mul(best[v], sgn[v]));
                    s.store_u8(&mut job.out.index[a..b], bidx[v]);
                }
            }
        });
    }
    sum.finish(s, &mut job.sums.a, c0, w);
    sq.finish(s, &mut job.sums.b, c0, w);
}

// ---- training backward ------------------------------------------------------------------

/// What the block-1 backward pass reads beside the input plane.
#[derive(Debug, Clone, Copy)]
pub struct GradIn<'a> {
    /// Conv 1.
    pub conv: &'a Conv1,
    /// Block 1's geometry.
    pub g: Geometry,
    /// BatchNorm backward coefficients.
    pub bn: &'a BnBackward,
    /// Gradient at each window's winner, after dropout (pass C's output).
    pub gp: &'a [f32],
    /// Window index of each winner.
    pub index: &'a [u8],
}

/// The input BatchNorm in front of conv 1, whose gradients the block-1 backward pass
/// computes too: the conv-1 input is `z = gamma[f] * xhat + beta[f]` per mel bin `f`.
#[derive(Debug, Clone, Copy)]
pub struct InputNorm<'a> {
    /// The normalised input `(x - mean) * invstd`, `[n][f][t]` like the plane.
    pub xhat: &'a [f32],
    /// Per mel bin.
    pub gamma: &'a [f32],
    /// Per mel bin.
    pub beta: &'a [f32],
}

/// The gradients of block 1's backward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv1Grads {
    /// Conv-1 kernel, `[3][3][c]` (tap order; [`Conv1::taps_to_oihw`] gives the kernel's).
    pub kernel: Vec<f64>,
    /// Conv-1 bias, `[c]`.
    pub bias: Vec<f64>,
    /// Input BatchNorm gamma, `[f]`: `sum(dz * xhat)` per mel bin.
    pub in_gamma: Vec<f64>,
    /// Input BatchNorm beta, `[f]`: `sum(dz)` per mel bin.
    pub in_beta: Vec<f64>,
}

impl Conv1Grads {
    fn zeros(c: usize, f: usize) -> Self {
        Self {
            kernel: vec![0.0; 9 * c],
            bias: vec![0.0; c],
            in_gamma: vec![0.0; f],
            in_beta: vec![0.0; f],
        }
    }
}

struct Grad<'a> {
    plane: Plane<'a>,
    gi: GradIn<'a>,
    norm: InputNorm<'a>,
    first_row: usize,
    rows: usize,
    out: Conv1Grads,
}

impl Job for Grad<'_> {
    type Out = Conv1Grads;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> Conv1Grads {
        let c = self.gi.g.c;
        let mut job = self;
        by_group!(c, |c0, w| grad_group::<S>(s, &mut job, c0, w));
        job.out
    }
}

/// Row `f` (zero outside `0..rows`) of an `[n][rows][t]` plane, padded with a zero on each
/// side: `out[1 + t] = plane[n][f][t]`.
#[inline(always)]
fn padded_row(src: &[f32], (n, f, rows, t): (usize, isize, usize, usize), out: &mut [f32]) {
    out.fill(0.0);
    if f >= 0 && (f as usize) < rows {
        let start = (n * rows + f as usize) * t;
        out[1..=t].copy_from_slice(&src[start..start + t]);
    }
}

/// One channel group of one job: every conv row of the job's pooled rows in row-major order.
/// Per row, pass 1 recomputes conv 1 and the ELU at each position, turns the pooled
/// gradient into the conv-output gradient `dx` (BatchNorm and ELU backward) and keeps it in
/// a row buffer; pass 2 runs over the buffer once per tap, accumulating
/// `G = sum_t dx * xhat(tap)` in registers. With `z = gamma * xhat + beta`, the kernel
/// gradient is `sum_rows gamma G + beta S` (`S = sum_t dx` over the tap's valid columns), and
/// the input BatchNorm's are `sum_taps w . G` and `w . S` per input row: the input gradient
/// itself is never formed.
#[inline(always)]
fn grad_group<S: Simd, const N: usize>(s: S, job: &mut Grad<'_>, c0: usize, w: usize) {
    let (plane, gi, norm) = (job.plane, job.gi, job.norm);
    let (g, conv, bn) = (gi.g, gi.conv, gi.bn);
    let (fo_n, to_n, c, t_n) = (g.fo(), g.to(), g.c, g.t);
    let bias = params::<S, N>(s, &conv.bias, c0, w);
    let taps = group_taps::<S, N>(s, conv, c0, w);
    let scale = params::<S, N>(s, &bn.scale, c0, w);
    let mean = params::<S, N>(s, &bn.mean, c0, w);
    let k0 = params::<S, N>(s, &bn.c0, c0, w);
    let k1 = params::<S, N>(s, &bn.c1, c0, w);
    let zero = s.zero();
    let mut acc_bias = Sums::<S, N>::new(s);
    let mut kernel = [[s.dzero(); N]; 9];
    let mut rowbuf = vec![zero; t_n * N];
    let mut zp: [Vec<f32>; 3] = std::array::from_fn(|_| vec![0f32; t_n + 2]);
    let mut xp: [Vec<f32>; 3] = std::array::from_fn(|_| vec![0f32; t_n + 2]);
    let out = &mut job.out;
    for r in job.first_row..job.first_row + job.rows {
        let (n, fo) = (r / fo_n, r % fo_n);
        let last_f = if fo + 1 == fo_n {
            g.f
        } else {
            fo * g.pf + g.pf
        };
        for f in fo * g.pf..last_f {
            for kh in 0..3 {
                let fi = f as isize + kh as isize - 1;
                padded_row(plane.z, (n, fi, g.f, t_n), &mut zp[kh]);
                padded_row(norm.xhat, (n, fi, g.f, t_n), &mut xp[kh]);
            }
            // Pass 1: dx at every position of the row.
            let i = f - fo * g.pf;
            let in_window = f < fo_n * g.pf;
            for t in 0..t_n {
                let zs = [
                    zp[0][t],
                    zp[0][t + 1],
                    zp[0][t + 2],
                    zp[1][t],
                    zp[1][t + 1],
                    zp[1][t + 2],
                    zp[2][t],
                    zp[2][t + 1],
                    zp[2][t + 2],
                ];
                let x = conv_at::<S, N>(s, &bias, &taps, &zs);
                let window = (in_window && t < to_n * g.pt)
                    .then(|| (t / g.pt, (i * g.pt + t % g.pt) as u32));
                for v in 0..N {
                    let e = elu_vec(s, x[v]);
                    let base = match window {
                        Some((to, k)) => {
                            let lanes = span(c0, w, v);
                            let at = (r * to_n + to) * c;
                            let (a, b) = (at + lanes.start, at + lanes.end);
                            let gv = s.load(&gi.gp[a..b]);
                            let hit = s.keep(s.ieq(s.load_u8(&gi.index[a..b]), s.isplat(k)), gv);
                            s.fma(scale[v], hit, k0[v])
                        }
                        None => k0[v],
                    };
                    let de = s.fma(k1[v], s.sub(e, mean[v]), base);
                    let dx = s.select(s.gt(e, zero), de, s.fma(de, e, de));
                    acc_bias.add(s, v, dx);
                    rowbuf[t * N + v] = dx;
                }
                acc_bias.next(s);
            }
            // S: dx summed over the columns whose tap input lies inside the plane (kw = 0
            // reads column t - 1, so column 0 has none; kw = 2 reads t + 1, so the last has
            // none): the middle columns once, the two ends as the tap allows.
            let mut mid = [zero; N];
            for t in 1..t_n.saturating_sub(1) {
                for v in 0..N {
                    mid[v] = s.add(mid[v], rowbuf[t * N + v]);
                }
            }
            let column_sums = |kw: usize| -> [S::F; N] {
                let mut sum = mid;
                if t_n == 1 {
                    if kw != 1 {
                        return [zero; N];
                    }
                    return std::array::from_fn(|v| rowbuf[v]);
                }
                for (v, o) in sum.iter_mut().enumerate() {
                    if kw != 0 {
                        *o = s.add(rowbuf[v], *o);
                    }
                    if kw != 2 {
                        *o = s.add(*o, rowbuf[(t_n - 1) * N + v]);
                    }
                }
                sum
            };
            // Pass 2: per tap, over the row buffer.
            for (kh, xrow) in xp.iter().enumerate() {
                let fi = f as isize + kh as isize - 1;
                if fi < 0 || fi as usize >= g.f {
                    continue;
                }
                let fi = fi as usize;
                let (gamma, beta) = (
                    s.dsplat(f64::from(norm.gamma[fi])),
                    s.dsplat(f64::from(norm.beta[fi])),
                );
                for kw in 0..3 {
                    let tap = kh * 3 + kw;
                    let mut acc = [zero; N];
                    for (t, &xv) in xrow[kw..kw + t_n].iter().enumerate() {
                        let xb = s.splat(xv);
                        for v in 0..N {
                            acc[v] = s.fma(rowbuf[t * N + v], xb, acc[v]);
                        }
                    }
                    let sum = column_sums(kw);
                    let (mut dgamma, mut dbeta) = (zero, zero);
                    for v in 0..N {
                        // kernel += gamma * G + beta * S, in f64.
                        kernel[tap][v] = s.dfma(s.widen(acc[v]), gamma, kernel[tap][v]);
                        kernel[tap][v] = s.dfma(s.widen(sum[v]), beta, kernel[tap][v]);
                        dgamma = s.fma(taps[tap][v], acc[v], dgamma);
                        dbeta = s.fma(taps[tap][v], sum[v], dbeta);
                    }
                    out.in_gamma[fi] += f64::from(s.tree_sum(dgamma));
                    out.in_beta[fi] += f64::from(s.tree_sum(dbeta));
                }
            }
        }
    }
    for (tap, row) in kernel.iter().enumerate() {
        add_lanes(s, row, &mut out.kernel[tap * c..(tap + 1) * c], c0, w);
    }
    acc_bias.finish(s, &mut out.bias, c0, w);
}

// ---- inference --------------------------------------------------------------------------

struct Eval<'a> {
    plane: Plane<'a>,
    conv: &'a Conv1,
    g: Geometry,
    affine: &'a Affine,
    first_row: usize,
    y: &'a mut [f32],
}

impl Job for Eval<'_> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let c = self.g.c;
        let mut job = self;
        by_group!(c, |c0, w| eval_group::<S>(s, &mut job, c0, w));
    }
}

#[inline(always)]
fn eval_group<S: Simd, const N: usize>(s: S, job: &mut Eval<'_>, c0: usize, w: usize) {
    let (g, plane, aff) = (job.g, job.plane, job.affine);
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let bias = params::<S, N>(s, &job.conv.bias, c0, w);
    let taps = group_taps::<S, N>(s, job.conv, c0, w);
    let sign = params::<S, N>(s, &aff.sign, c0, w);
    let scale = params::<S, N>(s, &aff.scale, c0, w);
    let shift = params::<S, N>(s, &aff.shift, c0, w);
    let rows = job.y.len() / (to_n * c);
    for r in 0..rows {
        let (n, fo) = ((job.first_row + r) / fo_n, (job.first_row + r) % fo_n);
        for to in 0..to_n {
            let mut best = [s.splat(f32::NEG_INFINITY); N];
            for k in 0..g.pf * g.pt {
                let (f, t) = (fo * g.pf + k / g.pt, to * g.pt + k % g.pt);
                let x = conv_at::<S, N>(s, &bias, &taps, &plane.taps(n, f, t));
                for v in 0..N {
                    let val = s.mul(x[v], sign[v]);
                    let take = takes(s, val, best[v]);
                    best[v] = s.select(take, val, best[v]);
                }
            }
            let at = (r * to_n + to) * c;
            for v in 0..N {
                let lanes = span(c0, w, v);
                let val = elu_vec(s, s.mul(best[v], sign[v]));
                let out = s.fma(scale[v], val, shift[v]);
                s.store(&mut job.y[at + lanes.start..at + lanes.end], out);
            }
        }
    }
}

// ---- the passes -------------------------------------------------------------------------

impl Plan {
    /// Training forward of block 1 without its BatchNorm affine: conv 1 and ELU at every
    /// position, the per-channel sum (`a`) and sum of squares (`b`) of the ELU output, and the
    /// winner of every pool window under `sign` (the sign of the BatchNorm gamma: the
    /// BatchNorm scale `gamma / sqrt(var + eps)` has the same sign, so the winner is known
    /// before the statistics are).
    pub fn conv1_train_forward(
        &self,
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
        let row = g.to() * g.c;
        let per = self.rows_per_job(g.n * g.fo());
        let jobs: Vec<_> = out
            .index
            .chunks_mut(per * row)
            .zip(out.value.chunks_mut(per * row))
            .collect();
        let parts = self.map("conv1_train_forward", jobs, |j, (index, value)| {
            self.run(Train {
                plane,
                conv,
                g,
                sign,
                first_row: j * per,
                out: Winners { index, value },
                sums: ChannelSums::zeros(g.c),
            })
        })?;
        Ok(ChannelSums::total(parts, g.c))
    }

    /// Block 1's backward pass: from the gradient at each window's winner (after dropout,
    /// pass C) and the BatchNorm backward coefficients, the conv-1 kernel and bias gradients
    /// and the gradients of the input BatchNorm in front of conv 1 (`norm`: its normalised
    /// input and parameters). Conv 1 and the ELU are recomputed from the input plane.
    pub fn conv1_grads(
        &self,
        plane: Plane<'_>,
        gi: GradIn<'_>,
        norm: InputNorm<'_>,
    ) -> Result<Conv1Grads> {
        let g = gi.g;
        check(&plane, gi.conv, g)?;
        check_len("pooled gradient", gi.gp.len(), g.pooled_len())?;
        check_len("pool index", gi.index.len(), g.pooled_len())?;
        check_len("normalised input", norm.xhat.len(), plane.z.len())?;
        check_len("input BatchNorm gamma", norm.gamma.len(), g.f)?;
        check_len("input BatchNorm beta", norm.beta.len(), g.f)?;
        gi.bn.check(g.c)?;
        let pooled_rows = g.n * g.fo();
        let per = self.rows_per_job(pooled_rows);
        let jobs: Vec<usize> = (0..pooled_rows).step_by(per).collect();
        let parts = self.map("conv1_grads", jobs, |_, first| {
            self.run(Grad {
                plane,
                gi,
                norm,
                first_row: first,
                rows: per.min(pooled_rows - first),
                out: Conv1Grads::zeros(g.c, g.f),
            })
        })?;
        let mut total = Conv1Grads::zeros(g.c, g.f);
        for p in parts {
            for (a, b) in [
                (&mut total.kernel, &p.kernel),
                (&mut total.bias, &p.bias),
                (&mut total.in_gamma, &p.in_gamma),
                (&mut total.in_beta, &p.in_beta),
            ] {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
            }
        }
        Ok(total)
    }

    /// Inference of block 1: `maxpool(bn(elu(conv1(z))))` as `bn(elu(ext(conv1(z))))`,
    /// conv 1 computed per window and never stored.
    pub fn conv1_eval(
        &self,
        plane: Plane<'_>,
        conv: &Conv1,
        g: Geometry,
        affine: &Affine,
        y: &mut [f32],
    ) -> Result<()> {
        check(&plane, conv, g)?;
        check_len("pooled output", y.len(), g.pooled_len())?;
        affine.check(g.c)?;
        let per = self.rows_per_job(g.n * g.fo());
        self.map(
            "conv1_eval",
            y.chunks_mut(per * g.to() * g.c).collect(),
            |j, y| {
                self.run(Eval {
                    plane,
                    conv,
                    g,
                    affine,
                    first_row: j * per,
                    y,
                })
            },
        )?;
        Ok(())
    }
}

const _: () = assert!(GROUP.is_multiple_of(LANES));
