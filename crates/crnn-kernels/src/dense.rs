//! Conv blocks 2-4 (any block whose convolution runs elsewhere): the element-wise ELU ->
//! BatchNorm -> MaxPool -> Dropout forward (training and inference) and its backward, in
//! passes over channels-last (NHWC) `f32` memory.
//!
//! - Pass A ([`Plan::elu_with_stats`]): ELU in place, per-channel sum and sum of squares.
//! - Pass B ([`Plan::pool_train`]): max-pool of the BatchNorm output (pooling before the
//!   affine map by the sign of its scale), dropout, and each window's winner and value.
//! - Pass C ([`Plan::pooled_grad`]): dropout backward on the pooled gradient, d beta and
//!   d gamma.
//! - Pass D ([`Plan::conv_output_grad`]): one dense pass that scatters the pooled gradient to
//!   the winners and applies the BatchNorm and ELU backward, in place; the conv bias
//!   gradient.
//! - Inference ([`Plan::pool_elu_affine`]): `bn(elu(ext(x)))` on the window extremes only.

use crate::error::check_len;
use crate::groups::{Sums, by_group, params, span, takes};
use crate::math::{DropoutMask, elu_vec};
use crate::simd::{Job, LANES, Simd};
use crate::{Affine, BnBackward, ChannelSums, Error, Geometry, Plan, Result};

fn check_positions(what: &'static str, len: usize, c: usize) -> Result<()> {
    if c > 0 && len.is_multiple_of(c) {
        Ok(())
    } else {
        Err(Error::Geometry {
            what,
            rule: format!("{len} values are not whole positions of {c} channels"),
        })
    }
}

// ---- pass A -----------------------------------------------------------------------------

struct EluStats<'a> {
    x: &'a mut [f32],
    c: usize,
    sums: &'a mut ChannelSums,
}

impl Job for EluStats<'_> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let Self { x, c, sums } = self;
        by_group!(c, |c0, w| elu_stats_group::<S>(
            s, &mut *x, c, c0, w, &mut *sums
        ));
    }
}

#[inline(always)]
fn elu_stats_group<S: Simd, const N: usize>(
    s: S,
    x: &mut [f32],
    c: usize,
    c0: usize,
    w: usize,
    sums: &mut ChannelSums,
) {
    let (mut sum, mut sq) = (Sums::<S, N>::new(s), Sums::<S, N>::new(s));
    for pos in x.chunks_exact_mut(c) {
        for v in 0..N {
            let lanes = &mut pos[span(c0, w, v)];
            let e = elu_vec(s, s.load(lanes));
            s.store(lanes, e);
            sum.add(s, v, e);
            sq.add_square(s, v, e);
        }
        sum.next(s);
        sq.next(s);
    }
    sum.finish(s, &mut sums.a, c0, w);
    sq.finish(s, &mut sums.b, c0, w);
}

// ---- window scan (pass B and inference) ------------------------------------------------

/// The per-channel extreme (by `sign`) of the window at pooled position (`n`, `fo`, `to`) of
/// `e` for the group's channels, and its window index (first one on ties; a NaN wins and
/// stays, as libtorch's max pool).
#[inline(always)]
fn scan<S: Simd, const N: usize>(
    s: S,
    e: &[f32],
    g: Geometry,
    (n, fo, to): (usize, usize, usize),
    (c0, w): (usize, usize),
    sign: &[S::F; N],
) -> ([S::F; N], [S::I; N]) {
    let mut best = [s.splat(f32::NEG_INFINITY); N];
    let mut index = [s.isplat(0); N];
    for i in 0..g.pf {
        for j in 0..g.pt {
            let at = ((n * g.f + fo * g.pf + i) * g.t + to * g.pt + j) * g.c;
            let k = s.isplat((i * g.pt + j) as u32);
            for v in 0..N {
                let r = span(c0, w, v);
                let val = s.mul(s.load(&e[at + r.start..at + r.end]), sign[v]);
                let take = takes(s, val, best[v]);
                best[v] = s.select(take, val, best[v]);
                index[v] = s.iselect(take, k, index[v]);
            }
        }
    }
    (best, index)
}

// ---- pass B -----------------------------------------------------------------------------

/// Where pass B writes: the block output, the winner's window index and its ELU value.
#[derive(Debug)]
pub struct PooledOut<'a> {
    /// Block output `[n][f'][t'][c]`.
    pub y: &'a mut [f32],
    /// Window index of each maximum (row-major inside the window).
    pub index: &'a mut [u8],
    /// ELU value of each maximum.
    pub value: &'a mut [f32],
}

struct PoolTrain<'a> {
    e: &'a [f32],
    g: Geometry,
    first_row: usize,
    affine: &'a Affine,
    mask: &'a DropoutMask,
    out: PooledOut<'a>,
}

impl Job for PoolTrain<'_> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let c = self.g.c;
        let mut job = self;
        by_group!(c, |c0, w| pool_train_group::<S>(s, &mut job, c0, w));
    }
}

#[inline(always)]
fn pool_train_group<S: Simd, const N: usize>(s: S, job: &mut PoolTrain<'_>, c0: usize, w: usize) {
    let (g, aff) = (job.g, job.affine);
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let sign = params::<S, N>(s, &aff.sign, c0, w);
    let scale = params::<S, N>(s, &aff.scale, c0, w);
    let shift = params::<S, N>(s, &aff.shift, c0, w);
    let rows = job.out.y.len() / (to_n * c).max(1);
    for r in 0..rows {
        let (n, fo) = ((job.first_row + r) / fo_n, (job.first_row + r) % fo_n);
        for to in 0..to_n {
            let (best, idx) = scan::<S, N>(s, job.e, g, (n, fo, to), (c0, w), &sign);
            let at = (r * to_n + to) * c;
            let global = ((job.first_row + r) * to_n + to) * c;
            for v in 0..N {
                let lanes = span(c0, w, v);
                let (a, b) = (at + lanes.start, at + lanes.end);
                let val = s.mul(best[v], sign[v]);
                let bn = s.fma(scale[v], val, shift[v]);
                let out = job.mask.apply_vec(s, (global + lanes.start) as u32, bn);
                s.store(&mut job.out.y[a..b], out);
                s.store(&mut job.out.value[a..b], val);
                s.store_u8(&mut job.out.index[a..b], idx[v]);
            }
        }
    }
}

// ---- pooled-only passes (pass B's tail for block 1, pass C) -----------------------------

struct PooledAffine<'a> {
    value: &'a [f32],
    first: usize,
    c: usize,
    affine: &'a Affine,
    mask: &'a DropoutMask,
    y: &'a mut [f32],
}

impl Job for PooledAffine<'_> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let c = self.c;
        let mut job = self;
        by_group!(c, |c0, w| pooled_affine_group::<S>(s, &mut job, c0, w));
    }
}

#[inline(always)]
fn pooled_affine_group<S: Simd, const N: usize>(
    s: S,
    job: &mut PooledAffine<'_>,
    c0: usize,
    w: usize,
) {
    let c = job.c;
    let scale = params::<S, N>(s, &job.affine.scale, c0, w);
    let shift = params::<S, N>(s, &job.affine.shift, c0, w);
    for (p, (yo, v)) in job
        .y
        .chunks_exact_mut(c)
        .zip(job.value.chunks_exact(c))
        .enumerate()
    {
        for k in 0..N {
            let r = span(c0, w, k);
            let bn = s.fma(scale[k], s.load(&v[r.clone()]), shift[k]);
            let first = (job.first + p * c + r.start) as u32;
            s.store(&mut yo[r], job.mask.apply_vec(s, first, bn));
        }
    }
}

struct PooledGrad<'a> {
    dy: &'a mut [f32],
    value: &'a [f32],
    first: usize,
    c: usize,
    mean: &'a [f32],
    invstd: &'a [f32],
    mask: &'a DropoutMask,
    sums: ChannelSums,
}

impl Job for PooledGrad<'_> {
    type Out = ChannelSums;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> ChannelSums {
        let c = self.c;
        let mut job = self;
        by_group!(c, |c0, w| pooled_grad_group::<S>(s, &mut job, c0, w));
        job.sums
    }
}

#[inline(always)]
fn pooled_grad_group<S: Simd, const N: usize>(s: S, job: &mut PooledGrad<'_>, c0: usize, w: usize) {
    let c = job.c;
    let mean = params::<S, N>(s, job.mean, c0, w);
    let invstd = params::<S, N>(s, job.invstd, c0, w);
    let (mut sg, mut sgx) = (Sums::<S, N>::new(s), Sums::<S, N>::new(s));
    for (p, (d, v)) in job
        .dy
        .chunks_exact_mut(c)
        .zip(job.value.chunks_exact(c))
        .enumerate()
    {
        for k in 0..N {
            let r = span(c0, w, k);
            let first = (job.first + p * c + r.start) as u32;
            let gv = job.mask.apply_vec(s, first, s.load(&d[r.clone()]));
            s.store(&mut d[r.clone()], gv);
            let xhat = s.mul(s.sub(s.load(&v[r]), mean[k]), invstd[k]);
            sg.add(s, k, gv);
            sgx.add(s, k, s.mul(gv, xhat));
        }
        sg.next(s);
        sgx.next(s);
    }
    sg.finish(s, &mut job.sums.a, c0, w);
    sgx.finish(s, &mut job.sums.b, c0, w);
}

// ---- pass D -----------------------------------------------------------------------------

struct ConvGrad<'a> {
    e: &'a mut [f32],
    gp: &'a [f32],
    index: &'a [u8],
    g: Geometry,
    first_row: usize,
    bn: &'a BnBackward,
    bias: Vec<f64>,
}

impl Job for ConvGrad<'_> {
    type Out = Vec<f64>;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> Vec<f64> {
        let c = self.g.c;
        let mut job = self;
        by_group!(c, |c0, w| conv_grad_group::<S>(s, &mut job, c0, w));
        job.bias
    }
}

#[inline(always)]
fn conv_grad_group<S: Simd, const N: usize>(s: S, job: &mut ConvGrad<'_>, c0: usize, w: usize) {
    let (g, bn) = (job.g, job.bn);
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let scale = params::<S, N>(s, &bn.scale, c0, w);
    let mean = params::<S, N>(s, &bn.mean, c0, w);
    let k0 = params::<S, N>(s, &bn.c0, c0, w);
    let k1 = params::<S, N>(s, &bn.c1, c0, w);
    let zero = s.zero();
    let mut acc = Sums::<S, N>::new(s);
    for (r, row) in job.e.chunks_exact_mut(g.t * c).enumerate() {
        let (n, f) = ((job.first_row + r) / g.f, (job.first_row + r) % g.f);
        let (fo, i) = (f / g.pf, f % g.pf);
        for (tt, pos) in row.chunks_exact_mut(c).enumerate() {
            let (to, j) = (tt / g.pt, tt % g.pt);
            let pooled = fo < fo_n && to < to_n;
            let at = ((n * fo_n + fo) * to_n + to) * c;
            let k = s.isplat((i * g.pt + j) as u32);
            for v in 0..N {
                let lanes = span(c0, w, v);
                let ev = s.load(&pos[lanes.clone()]);
                let base = if pooled {
                    let (a, b) = (at + lanes.start, at + lanes.end);
                    let gv = s.load(&job.gp[a..b]);
                    let hit = s.keep(s.ieq(s.load_u8(&job.index[a..b]), k), gv);
                    s.fma(scale[v], hit, k0[v])
                } else {
                    k0[v]
                };
                let de = s.fma(k1[v], s.sub(ev, mean[v]), base);
                let dx = s.select(s.gt(ev, zero), de, s.fma(de, ev, de));
                s.store(&mut pos[lanes], dx);
                acc.add(s, v, dx);
            }
            acc.next(s);
        }
    }
    acc.finish(s, &mut job.bias, c0, w);
}

// ---- inference --------------------------------------------------------------------------

struct PoolEval<'a> {
    x: &'a [f32],
    g: Geometry,
    first_row: usize,
    affine: &'a Affine,
    y: &'a mut [f32],
}

impl Job for PoolEval<'_> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let c = self.g.c;
        let mut job = self;
        by_group!(c, |c0, w| pool_eval_group::<S>(s, &mut job, c0, w));
    }
}

#[inline(always)]
fn pool_eval_group<S: Simd, const N: usize>(s: S, job: &mut PoolEval<'_>, c0: usize, w: usize) {
    let (g, aff) = (job.g, job.affine);
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let sign = params::<S, N>(s, &aff.sign, c0, w);
    let scale = params::<S, N>(s, &aff.scale, c0, w);
    let shift = params::<S, N>(s, &aff.shift, c0, w);
    let rows = job.y.len() / (to_n * c).max(1);
    for r in 0..rows {
        let (n, fo) = ((job.first_row + r) / fo_n, (job.first_row + r) % fo_n);
        for to in 0..to_n {
            let (best, _) = scan::<S, N>(s, job.x, g, (n, fo, to), (c0, w), &sign);
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
    /// Pass A: `x := elu(x)` in place over a conv output `[n][f][t][c]`; returns the
    /// per-channel sum (`a`) and sum of squares (`b`) of the result (the BatchNorm batch
    /// statistics).
    pub fn elu_with_stats(&self, x: &mut [f32], g: Geometry) -> Result<ChannelSums> {
        g.validate()?;
        check_len("conv output", x.len(), g.len())?;
        let row = g.t * g.c;
        if row == 0 || g.n * g.f == 0 {
            return Ok(ChannelSums::zeros(g.c));
        }
        let per = self.rows_per_job(g.n * g.f) * row;
        let parts = self.map("elu_with_stats", x.chunks_mut(per).collect(), |_, x| {
            let mut sums = ChannelSums::zeros(g.c);
            self.run(EluStats {
                x,
                c: g.c,
                sums: &mut sums,
            });
            sums
        })?;
        Ok(ChannelSums::total(parts, g.c))
    }

    /// Pass B (training): max-pool of `affine(e)` (the BatchNorm output of the ELU output
    /// `e`), then dropout. Writes the output, and for the backward pass the window index and
    /// ELU value of each maximum.
    pub fn pool_train(
        &self,
        e: &[f32],
        g: Geometry,
        affine: &Affine,
        mask: &DropoutMask,
        out: PooledOut<'_>,
    ) -> Result<()> {
        g.validate()?;
        check_len("ELU output", e.len(), g.len())?;
        for (what, len) in [
            ("pooled output", out.y.len()),
            ("pool index", out.index.len()),
            ("pool value", out.value.len()),
        ] {
            check_len(what, len, g.pooled_len())?;
        }
        affine.check(g.c)?;
        let row = g.to() * g.c;
        if row == 0 || g.n * g.fo() == 0 {
            return Ok(());
        }
        let per = self.rows_per_job(g.n * g.fo());
        let jobs: Vec<_> = out
            .y
            .chunks_mut(per * row)
            .zip(out.index.chunks_mut(per * row))
            .zip(out.value.chunks_mut(per * row))
            .collect();
        self.map("pool_train", jobs, |j, ((y, index), value)| {
            self.run(PoolTrain {
                e,
                g,
                first_row: j * per,
                affine,
                mask,
                out: PooledOut { y, index, value },
            })
        })?;
        Ok(())
    }

    /// The tail of pass B on already-pooled ELU values `[positions][c]` (block 1, whose
    /// winners the fused conv pass found): `y = dropout(scale * value + shift)`, the same
    /// arithmetic as [`pool_train`](Self::pool_train).
    pub fn pooled_affine_dropout(
        &self,
        value: &[f32],
        c: usize,
        affine: &Affine,
        mask: &DropoutMask,
        y: &mut [f32],
    ) -> Result<()> {
        check_len("pooled output", y.len(), value.len())?;
        affine.check(c)?;
        if value.is_empty() {
            return Ok(());
        }
        check_positions("pooled values", value.len(), c)?;
        let per = self.rows_per_job(value.len() / c) * c;
        self.map(
            "pooled_affine_dropout",
            y.chunks_mut(per).zip(value.chunks(per)).collect(),
            |j, (y, value)| {
                self.run(PooledAffine {
                    value,
                    first: j * per,
                    c,
                    affine,
                    mask,
                    y,
                })
            },
        )?;
        Ok(())
    }

    /// Pass C: `dy := dropout'(dy)` in place (the gradient at the BatchNorm output of each
    /// window's maximum); returns per channel `sum(g)` (`a`, = d beta) and `sum(g * xhat)`
    /// (`b`, = d gamma), with `xhat = (value - mean) * invstd` at the maxima.
    pub fn pooled_grad(
        &self,
        dy: &mut [f32],
        value: &[f32],
        c: usize,
        (mean, invstd): (&[f32], &[f32]),
        mask: &DropoutMask,
    ) -> Result<ChannelSums> {
        check_len("pool value", value.len(), dy.len())?;
        check_len("BatchNorm mean", mean.len(), c)?;
        check_len("BatchNorm invstd", invstd.len(), c)?;
        if dy.is_empty() {
            return Ok(ChannelSums::zeros(c));
        }
        check_positions("pooled gradient", dy.len(), c)?;
        let per = self.rows_per_job(dy.len() / c) * c;
        let jobs: Vec<_> = dy.chunks_mut(per).zip(value.chunks(per)).collect();
        let parts = self.map("pooled_grad", jobs, |j, (dy, value)| {
            self.run(PooledGrad {
                dy,
                value,
                first: j * per,
                c,
                mean,
                invstd,
                mask,
                sums: ChannelSums::zeros(c),
            })
        })?;
        Ok(ChannelSums::total(parts, c))
    }

    /// Pass D: turns the stored ELU output `e` into the gradient at the conv output, in
    /// place: the BatchNorm backward (dense, plus the pooled gradient `g_pooled` scattered to
    /// each window's maximum `index`), then the ELU backward from its result (`de * (e + 1)`
    /// where `e <= 0`). Returns the per-channel sum of the result: the conv bias gradient.
    pub fn conv_output_grad(
        &self,
        e: &mut [f32],
        (g_pooled, index): (&[f32], &[u8]),
        g: Geometry,
        bn: &BnBackward,
    ) -> Result<Vec<f64>> {
        g.validate()?;
        check_len("ELU output", e.len(), g.len())?;
        check_len("pooled gradient", g_pooled.len(), g.pooled_len())?;
        check_len("pool index", index.len(), g.pooled_len())?;
        bn.check(g.c)?;
        let row = g.t * g.c;
        if row == 0 || g.n * g.f == 0 {
            return Ok(vec![0.0; g.c]);
        }
        let per = self.rows_per_job(g.n * g.f);
        let parts = self.map(
            "conv_output_grad",
            e.chunks_mut(per * row).collect(),
            |j, e| {
                self.run(ConvGrad {
                    e,
                    gp: g_pooled,
                    index,
                    g,
                    first_row: j * per,
                    bn,
                    bias: vec![0.0; g.c],
                })
            },
        )?;
        let mut total = vec![0.0; g.c];
        for p in parts {
            for (t, v) in total.iter_mut().zip(p) {
                *t += v;
            }
        }
        Ok(total)
    }

    /// Inference: `maxpool(affine(elu(x)))` computed as `affine(elu(ext(x)))` (ELU is
    /// increasing and the affine map monotone per channel), so the ELU and BatchNorm run on
    /// the pooled values only.
    pub fn pool_elu_affine(
        &self,
        x: &[f32],
        g: Geometry,
        affine: &Affine,
        y: &mut [f32],
    ) -> Result<()> {
        g.validate()?;
        check_len("conv output", x.len(), g.len())?;
        check_len("pooled output", y.len(), g.pooled_len())?;
        affine.check(g.c)?;
        let row = g.to() * g.c;
        if row == 0 || g.n * g.fo() == 0 {
            return Ok(());
        }
        let per = self.rows_per_job(g.n * g.fo());
        self.map(
            "pool_elu_affine",
            y.chunks_mut(per * row).collect(),
            |j, y| {
                self.run(PoolEval {
                    x,
                    g,
                    first_row: j * per,
                    affine,
                    y,
                })
            },
        )?;
        Ok(())
    }
}

const _: () = assert!(LANES == 16);
