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

mod grad;
pub use grad::{Conv1Grads, GradIn, InputNorm};

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
