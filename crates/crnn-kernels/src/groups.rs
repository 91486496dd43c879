//! Channel groups: the passes walk channels in groups of up to [`GROUP`] (`N` vectors of 16
//! lanes, `N` a const generic so the per-group registers are arrays the compiler keeps in
//! registers), the last vector of a group masked to the channels left.

use std::ops::Range;

use crate::simd::{LANES, Simd};

/// Channels per group (4 vectors).
pub(crate) const GROUP: usize = 64;

/// The channels of vector `v` of the group of `w` channels starting at `c0`.
#[inline(always)]
pub(crate) fn span(c0: usize, w: usize, v: usize) -> Range<usize> {
    let start = c0 + LANES * v;
    start..start + w.saturating_sub(LANES * v).min(LANES)
}

/// The group's `N` vectors of a per-channel parameter `p`.
#[inline(always)]
pub(crate) fn params<S: Simd, const N: usize>(s: S, p: &[f32], c0: usize, w: usize) -> [S::F; N] {
    let mut out = [s.zero(); N];
    for (v, o) in out.iter_mut().enumerate() {
        *o = s.load(&p[span(c0, w, v)]);
    }
    out
}

/// Adds the lanes of the group's `f64` accumulators to `out[c0 .. c0 + w]`.
#[inline(always)]
pub(crate) fn add_lanes<S: Simd, const N: usize>(
    s: S,
    acc: &[S::D; N],
    out: &mut [f64],
    c0: usize,
    w: usize,
) {
    for (v, a) in acc.iter().enumerate() {
        let lanes = s.dto_array(*a);
        for (o, l) in out[span(c0, w, v)].iter_mut().zip(lanes) {
            *o += l;
        }
    }
}

/// Runs `$call::<S, N>(...)` for every channel group of `$c` channels, binding the group's
/// first channel `$c0` and width `$w`.
macro_rules! by_group {
    ($c:expr, |$c0:ident, $w:ident| $call:ident::<$s:ty>($($arg:expr),* $(,)?)) => {{
        let c: usize = $c;
        let mut $c0 = 0usize;
        while $c0 < c {
            let $w = (c - $c0).min($crate::groups::GROUP);
            match $w.div_ceil($crate::simd::LANES) {
                1 => $call::<$s, 1>($($arg),*),
                2 => $call::<$s, 2>($($arg),*),
                3 => $call::<$s, 3>($($arg),*),
                _ => $call::<$s, 4>($($arg),*),
            }
            $c0 += $w;
        }
    }};
}
pub(crate) use by_group;

/// Positions per `f32` run of [`Sums`].
pub(crate) const RUN: usize = 16;

/// Per-channel sums of a group over positions: `f32` partial sums over runs of [`RUN`]
/// positions, each run added into an `f64` total (a run costs one f32 add per value; the
/// f64 widening happens once per run).
pub(crate) struct Sums<S: Simd, const N: usize> {
    part: [S::F; N],
    total: [S::D; N],
    count: usize,
}

impl<S: Simd, const N: usize> Sums<S, N> {
    #[inline(always)]
    pub(crate) fn new(s: S) -> Self {
        Self {
            part: [s.zero(); N],
            total: [s.dzero(); N],
            count: 0,
        }
    }
    /// Adds `x` to vector `v`'s run.
    #[inline(always)]
    pub(crate) fn add(&mut self, s: S, v: usize, x: S::F) {
        self.part[v] = s.add(self.part[v], x);
    }
    /// Adds `x * x` (one fused multiply-add) to vector `v`'s run.
    #[inline(always)]
    pub(crate) fn add_square(&mut self, s: S, v: usize, x: S::F) {
        self.part[v] = s.fma(x, x, self.part[v]);
    }
    /// Ends one position; every [`RUN`] positions the run goes into the total.
    #[inline(always)]
    pub(crate) fn next(&mut self, s: S) {
        self.count += 1;
        if self.count == RUN {
            self.flush(s);
        }
    }
    #[inline(always)]
    fn flush(&mut self, s: S) {
        for v in 0..N {
            self.total[v] = s.dadd(self.total[v], s.widen(self.part[v]));
            self.part[v] = s.zero();
        }
        self.count = 0;
    }
    /// Adds the totals to `out[c0 .. c0 + w]`.
    #[inline(always)]
    pub(crate) fn finish(mut self, s: S, out: &mut [f64], c0: usize, w: usize) {
        self.flush(s);
        add_lanes(s, &self.total, out, c0, w);
    }
}

/// Whether a window scan replaces its best value `best` by `val`: when `val` is larger, or
/// `val` is NaN while `best` is not (a NaN wins and stays, as libtorch's max pool), i.e.
/// `!(val <= best) && !isnan(best)`.
#[inline(always)]
pub(crate) fn takes<S: Simd>(s: S, val: S::F, best: S::F) -> S::M {
    s.and_not(s.gt_or_nan(val, best), s.is_nan(best))
}
