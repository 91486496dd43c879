//! AVX-512 versions of the four dense kernels in `kernels.rs`, 16 channels per register and up
//! to 64 channels per pass (LLVM vectorises the portable code at 256 bits and spills the
//! per-channel accumulators). Each does the same operations in the same order as its portable
//! twin (no fused multiply-add, the same `expm1` steps), so the two give identical bits; a
//! test checks that on random data. The callers check every slice length against the
//! geometry before calling, which is what makes the raw-pointer loads in bounds.

use std::arch::x86_64::*;

use super::kernels::{Affine, BnBackward, Geometry};
use super::math::DropoutMask;

/// Whether this CPU runs these kernels.
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

const fn lane_mask(lanes: usize) -> __mmask16 {
    if lanes >= 16 {
        0xFFFF
    } else {
        ((1u32 << lanes) - 1) as __mmask16
    }
}

/// Masks of the `N` vectors covering `width` channels.
pub(crate) fn masks<const N: usize>(width: usize) -> [__mmask16; N] {
    std::array::from_fn(|v| lane_mask(width.saturating_sub(16 * v)))
}

/// `math::expm1_nonpositive` then `math::elu`, step for step.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
pub(crate) fn elu(x: __m512) -> __m512 {
    let zero = _mm512_setzero_ps();
    let round = _mm512_set1_ps(12_582_912.0);
    let xn = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, zero), zero, x);
    let lo = _mm512_set1_ps(-87.0);
    let xc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(xn, lo), xn, lo);
    let shifted = _mm512_add_ps(
        _mm512_mul_ps(xc, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        round,
    );
    let k = _mm512_sub_ps(shifted, round);
    let r = _mm512_sub_ps(
        _mm512_sub_ps(xc, _mm512_mul_ps(k, _mm512_set1_ps(0.693_145_75))),
        _mm512_mul_ps(k, _mm512_set1_ps(1.428_606_8e-6)),
    );
    let c = |v: f32| _mm512_set1_ps(v);
    let mut poly = _mm512_add_ps(c(1.0 / 5040.0), _mm512_mul_ps(r, c(1.0 / 40320.0)));
    poly = _mm512_add_ps(c(1.0 / 720.0), _mm512_mul_ps(r, poly));
    poly = _mm512_add_ps(c(1.0 / 120.0), _mm512_mul_ps(r, poly));
    poly = _mm512_add_ps(c(1.0 / 24.0), _mm512_mul_ps(r, poly));
    poly = _mm512_add_ps(c(1.0 / 6.0), _mm512_mul_ps(r, poly));
    poly = _mm512_add_ps(c(0.5), _mm512_mul_ps(r, poly));
    let p = _mm512_add_ps(r, _mm512_mul_ps(_mm512_mul_ps(r, r), poly));
    let k_bits = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_castps_si512(round));
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
        k_bits,
        _mm512_set1_epi32(127),
    )));
    let neg = _mm512_add_ps(_mm512_mul_ps(scale, p), _mm512_sub_ps(scale, c(1.0)));
    let keep = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, zero) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    _mm512_mask_blend_ps(keep, neg, x)
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
pub(crate) fn widen(v: __m512) -> (__m512d, __m512d) {
    (
        _mm512_cvtps_pd(_mm512_castps512_ps256(v)),
        _mm512_cvtps_pd(_mm512_extractf32x8_ps::<1>(v)),
    )
}

/// Adds the lanes of `acc` (`[lo, hi]` per vector) to `out[..width]`.
pub(crate) fn add_lanes<const N: usize>(acc: &[[__m512d; 2]; N], out: &mut [f64], width: usize) {
    let mut tmp = [0f64; 16];
    for (v, pair) in acc.iter().enumerate() {
        // SAFETY: `tmp` holds 16 f64, two 8-lane stores.
        unsafe {
            _mm512_storeu_pd(tmp.as_mut_ptr(), pair[0]);
            _mm512_storeu_pd(tmp.as_mut_ptr().add(8), pair[1]);
        }
        for (lane, t) in tmp.iter().enumerate() {
            if let Some(o) = out.get_mut(16 * v + lane).filter(|_| 16 * v + lane < width) {
                *o += t;
            }
        }
    }
}

/// Loads `lanes`-masked values of `src` starting at `at` (zero in masked-off lanes).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn load(src: *const f32, m: __mmask16) -> __m512 {
    // SAFETY: the caller guarantees the unmasked lanes are in bounds.
    unsafe { _mm512_maskz_loadu_ps(m, src) }
}

pub(crate) fn vectors<const N: usize>(v: &[f32], m: &[__mmask16; N]) -> [__m512; N] {
    // SAFETY: each mask covers only lanes inside `v` (built from `v`'s width).
    std::array::from_fn(|k| unsafe { _mm512_maskz_loadu_ps(m[k], v.as_ptr().add(16 * k)) })
}

// ---- pass A -----------------------------------------------------------------------------

/// `kernels::elu_with_stats` for one job. `x.len()` is a multiple of `c`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
pub(crate) fn elu_stats(x: &mut [f32], c: usize, sum: &mut [f64], sumsq: &mut [f64]) {
    let mut c0 = 0;
    while c0 < c {
        let width = (c - c0).min(64);
        match width.div_ceil(16) {
            1 => elu_stats_group::<1>(x, c, c0, width, sum, sumsq),
            2 => elu_stats_group::<2>(x, c, c0, width, sum, sumsq),
            3 => elu_stats_group::<3>(x, c, c0, width, sum, sumsq),
            _ => elu_stats_group::<4>(x, c, c0, width, sum, sumsq),
        }
        c0 += width;
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn elu_stats_group<const N: usize>(
    x: &mut [f32],
    c: usize,
    c0: usize,
    width: usize,
    sum: &mut [f64],
    sumsq: &mut [f64],
) {
    let m = masks::<N>(width);
    let zero = [_mm512_setzero_pd(); 2];
    let (mut s, mut q) = ([zero; N], [zero; N]);
    for pos in x.chunks_exact_mut(c) {
        let base = pos[c0..].as_mut_ptr();
        for v in 0..N {
            // SAFETY: lanes of vector v cover channels c0 + 16 v .. c0 + width, inside `pos`.
            unsafe {
                let e = elu(load(base.add(16 * v), m[v]));
                _mm512_mask_storeu_ps(base.add(16 * v), m[v], e);
                let (lo, hi) = widen(e);
                s[v][0] = _mm512_add_pd(s[v][0], lo);
                s[v][1] = _mm512_add_pd(s[v][1], hi);
                q[v][0] = _mm512_add_pd(q[v][0], _mm512_mul_pd(lo, lo));
                q[v][1] = _mm512_add_pd(q[v][1], _mm512_mul_pd(hi, hi));
            }
        }
    }
    add_lanes(&s, &mut sum[c0..], width);
    add_lanes(&q, &mut sumsq[c0..], width);
}

// ---- window scan shared by pass B and inference -----------------------------------------

/// The per-channel extreme (by `sign`) of the window at pooled position (`n`, `fo`, `to`) of
/// `e`, channels `c0 .. c0 + 16 N`, and its window index (first one on ties; NaN wins).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn scan<const N: usize>(
    e: &[f32],
    g: Geometry,
    (n, fo, to): (usize, usize, usize),
    c0: usize,
    m: &[__mmask16; N],
    sign: &[__m512; N],
) -> ([__m512; N], [__m512i; N]) {
    let mut best = [_mm512_set1_ps(f32::NEG_INFINITY); N];
    let mut index = [_mm512_setzero_si512(); N];
    for i in 0..g.pf {
        for j in 0..g.pt {
            let at = ((n * g.f + fo * g.pf + i) * g.t + to * g.pt + j) * g.c + c0;
            let src = e[at..].as_ptr();
            let k = _mm512_set1_epi32((i * g.pt + j) as i32);
            for v in 0..N {
                // SAFETY: the window lies inside `e` (checked by the caller), lanes masked.
                let x = unsafe { load(src.add(16 * v), m[v]) };
                let val = _mm512_mul_ps(x, sign[v]);
                let b = best[v];
                let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(val, b)
                    | (_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(val, val)
                        & !_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(b, b));
                best[v] = _mm512_mask_blend_ps(take, b, val);
                index[v] = _mm512_mask_blend_epi32(take, index[v], k);
            }
        }
    }
    (best, index)
}

/// `math::DropoutMask::keep` for the 16 consecutive indices from `first`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn keep_mask(mask: &DropoutMask, first: u32) -> __mmask16 {
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let idx = _mm512_add_epi32(_mm512_set1_epi32(first as i32), lanes);
    let (lo, hi, threshold) = mask.words();
    let fmix = |mut h: __m512i| {
        h = _mm512_xor_si512(h, _mm512_srli_epi32::<16>(h));
        h = _mm512_mullo_epi32(h, _mm512_set1_epi32(0x85eb_ca6bu32 as i32));
        h = _mm512_xor_si512(h, _mm512_srli_epi32::<13>(h));
        h = _mm512_mullo_epi32(h, _mm512_set1_epi32(0xc2b2_ae35u32 as i32));
        _mm512_xor_si512(h, _mm512_srli_epi32::<16>(h))
    };
    let h1 = fmix(_mm512_xor_si512(idx, _mm512_set1_epi32(lo as i32)));
    let h2 = fmix(_mm512_add_epi32(h1, _mm512_set1_epi32(hi as i32)));
    _mm512_cmpge_epu32_mask(h2, _mm512_set1_epi32(threshold as i32))
}

// ---- pass B -----------------------------------------------------------------------------

/// `kernels::pool_train` for one job of pooled rows starting at `first_row`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
pub(crate) fn pool_train(
    e: &[f32],
    g: Geometry,
    first_row: usize,
    affine: &Affine,
    mask: &DropoutMask,
    y: &mut [f32],
    index: &mut [u8],
    value: &mut [f32],
) {
    let mut c0 = 0;
    while c0 < g.c {
        let width = (g.c - c0).min(64);
        let args = (e, g, first_row, affine, mask, c0, width);
        match width.div_ceil(16) {
            1 => pool_train_group::<1>(args, y, index, value),
            2 => pool_train_group::<2>(args, y, index, value),
            3 => pool_train_group::<3>(args, y, index, value),
            _ => pool_train_group::<4>(args, y, index, value),
        }
        c0 += width;
    }
}

type GroupArgs<'a> = (
    &'a [f32],
    Geometry,
    usize,
    &'a Affine,
    &'a DropoutMask,
    usize,
    usize,
);

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn pool_train_group<const N: usize>(
    (e, g, first_row, affine, mask, c0, width): GroupArgs<'_>,
    y: &mut [f32],
    index: &mut [u8],
    value: &mut [f32],
) {
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let m = masks::<N>(width);
    let sign = vectors::<N>(&affine.sign[c0..], &m);
    let scale = vectors::<N>(&affine.scale[c0..], &m);
    let shift = vectors::<N>(&affine.shift[c0..], &m);
    let dscale = _mm512_set1_ps(mask.scale);
    let rows = y.len() / (to_n * c).max(1);
    for r in 0..rows {
        let (n, fo) = ((first_row + r) / fo_n, (first_row + r) % fo_n);
        for to in 0..to_n {
            let (best, idx) = scan::<N>(e, g, (n, fo, to), c0, &m, &sign);
            let at = (r * to_n + to) * c + c0;
            let global = ((first_row + r) * to_n + to) * c + c0;
            for v in 0..N {
                let val = _mm512_mul_ps(best[v], sign[v]);
                let bn = _mm512_add_ps(_mm512_mul_ps(scale[v], val), shift[v]);
                let out = if mask.off {
                    bn
                } else {
                    let keep = keep_mask(mask, (global + 16 * v) as u32);
                    _mm512_maskz_mov_ps(keep, _mm512_mul_ps(bn, dscale))
                };
                // SAFETY: `at + 16 v + lane` < len for every unmasked lane (whole pooled rows).
                unsafe {
                    _mm512_mask_storeu_ps(y[at..].as_mut_ptr().add(16 * v), m[v], out);
                    _mm512_mask_storeu_ps(value[at..].as_mut_ptr().add(16 * v), m[v], val);
                    _mm512_mask_cvtepi32_storeu_epi8(
                        index[at..].as_mut_ptr().add(16 * v) as *mut i8,
                        m[v],
                        idx[v],
                    );
                }
            }
        }
    }
}

// ---- pass D -----------------------------------------------------------------------------

/// `kernels::conv_output_grad` for one job of conv rows starting at `first_row`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
pub(crate) fn conv_grad(
    e: &mut [f32],
    gp: &[f32],
    index: &[u8],
    g: Geometry,
    first_row: usize,
    bn: &BnBackward,
    bias: &mut [f64],
) {
    let mut c0 = 0;
    while c0 < g.c {
        let width = (g.c - c0).min(64);
        let args = (gp, index, g, first_row, bn, c0, width);
        match width.div_ceil(16) {
            1 => conv_grad_group::<1>(e, args, bias),
            2 => conv_grad_group::<2>(e, args, bias),
            3 => conv_grad_group::<3>(e, args, bias),
            _ => conv_grad_group::<4>(e, args, bias),
        }
        c0 += width;
    }
}

type GradArgs<'a> = (
    &'a [f32],
    &'a [u8],
    Geometry,
    usize,
    &'a BnBackward,
    usize,
    usize,
);

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn conv_grad_group<const N: usize>(
    e: &mut [f32],
    (gp, index, g, first_row, bn, c0, width): GradArgs<'_>,
    bias: &mut [f64],
) {
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let m = masks::<N>(width);
    let scale = vectors::<N>(&bn.scale[c0..], &m);
    let mean = vectors::<N>(&bn.mean[c0..], &m);
    let k0 = vectors::<N>(&bn.c0[c0..], &m);
    let k1 = vectors::<N>(&bn.c1[c0..], &m);
    let (zero, one) = (_mm512_setzero_ps(), _mm512_set1_ps(1.0));
    let mut acc = [[_mm512_setzero_pd(); 2]; N];
    for (r, row) in e.chunks_exact_mut(g.t * c).enumerate() {
        let (n, f) = ((first_row + r) / g.f, (first_row + r) % g.f);
        let (fo, i) = (f / g.pf, f % g.pf);
        for (tt, pos) in row.chunks_exact_mut(c).enumerate() {
            let (to, j) = (tt / g.pt, tt % g.pt);
            let base = pos[c0..].as_mut_ptr();
            let pooled = fo < fo_n && to < to_n;
            let at = ((n * fo_n + fo) * to_n + to) * c + c0;
            let k = _mm512_set1_epi32((i * g.pt + j) as i32);
            for v in 0..N {
                // SAFETY: lanes of vector v are channels inside `pos`; when `pooled`, the
                // window's gradient and index rows are inside `gp` and `index` (checked).
                unsafe {
                    let ev = load(base.add(16 * v), m[v]);
                    let centred = _mm512_mul_ps(k1[v], _mm512_sub_ps(ev, mean[v]));
                    let de = if pooled {
                        let gv = load(gp.as_ptr().add(at + 16 * v), m[v]);
                        let iw = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(
                            m[v],
                            index.as_ptr().add(at + 16 * v) as *const i8,
                        ));
                        let hit = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(iw, k), gv);
                        _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(scale[v], hit), k0[v]), centred)
                    } else {
                        _mm512_add_ps(k0[v], centred)
                    };
                    let neg = _mm512_mul_ps(de, _mm512_add_ps(ev, one));
                    let dx =
                        _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(ev, zero), neg, de);
                    _mm512_mask_storeu_ps(base.add(16 * v), m[v], dx);
                    let (lo, hi) = widen(dx);
                    acc[v][0] = _mm512_add_pd(acc[v][0], lo);
                    acc[v][1] = _mm512_add_pd(acc[v][1], hi);
                }
            }
        }
    }
    add_lanes(&acc, &mut bias[c0..], width);
}

// ---- inference --------------------------------------------------------------------------

/// `kernels::pool_elu_affine` for one job of pooled rows starting at `first_row`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
pub(crate) fn pool_eval(x: &[f32], g: Geometry, first_row: usize, affine: &Affine, y: &mut [f32]) {
    let mut c0 = 0;
    while c0 < g.c {
        let width = (g.c - c0).min(64);
        match width.div_ceil(16) {
            1 => pool_eval_group::<1>(x, g, first_row, affine, c0, width, y),
            2 => pool_eval_group::<2>(x, g, first_row, affine, c0, width, y),
            3 => pool_eval_group::<3>(x, g, first_row, affine, c0, width, y),
            _ => pool_eval_group::<4>(x, g, first_row, affine, c0, width, y),
        }
        c0 += width;
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn pool_eval_group<const N: usize>(
    x: &[f32],
    g: Geometry,
    first_row: usize,
    affine: &Affine,
    c0: usize,
    width: usize,
    y: &mut [f32],
) {
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let m = masks::<N>(width);
    let sign = vectors::<N>(&affine.sign[c0..], &m);
    let scale = vectors::<N>(&affine.scale[c0..], &m);
    let shift = vectors::<N>(&affine.shift[c0..], &m);
    let rows = y.len() / (to_n * c).max(1);
    for r in 0..rows {
        let (n, fo) = ((first_row + r) / fo_n, (first_row + r) % fo_n);
        for to in 0..to_n {
            let (best, _) = scan::<N>(x, g, (n, fo, to), c0, &m, &sign);
            let at = (r * to_n + to) * c + c0;
            for v in 0..N {
                let val = elu(_mm512_mul_ps(best[v], sign[v]));
                let out = _mm512_add_ps(_mm512_mul_ps(scale[v], val), shift[v]);
                // SAFETY: `at + 16 v + lane` < len for every unmasked lane.
                unsafe { _mm512_mask_storeu_ps(y[at..].as_mut_ptr().add(16 * v), m[v], out) };
            }
        }
    }
}

// ---- pooled-only passes -----------------------------------------------------------------

/// `kernels::pooled_grad` for one job (`dy.len()` a multiple of `c`, `first` its first
/// element's global index).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
pub(crate) fn pooled_grad(
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
    let mut c0 = 0;
    while c0 < c {
        let width = (c - c0).min(64);
        let args = (value, first, c, mean, invstd, mask, c0, width);
        match width.div_ceil(16) {
            1 => pooled_grad_group::<1>(dy, args, sum_g, sum_gx),
            2 => pooled_grad_group::<2>(dy, args, sum_g, sum_gx),
            3 => pooled_grad_group::<3>(dy, args, sum_g, sum_gx),
            _ => pooled_grad_group::<4>(dy, args, sum_g, sum_gx),
        }
        c0 += width;
    }
}

type PooledArgs<'a> = (
    &'a [f32],
    usize,
    usize,
    &'a [f32],
    &'a [f32],
    &'a DropoutMask,
    usize,
    usize,
);

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn pooled_grad_group<const N: usize>(
    dy: &mut [f32],
    (value, first, c, mean, invstd, mask, c0, width): PooledArgs<'_>,
    sum_g: &mut [f64],
    sum_gx: &mut [f64],
) {
    let m = masks::<N>(width);
    let mean_v = vectors::<N>(&mean[c0..], &m);
    let inv_v = vectors::<N>(&invstd[c0..], &m);
    let dscale = _mm512_set1_ps(mask.scale);
    let zero = [_mm512_setzero_pd(); 2];
    let (mut sg, mut sgx) = ([zero; N], [zero; N]);
    for (p, (d, v)) in dy
        .chunks_exact_mut(c)
        .zip(value.chunks_exact(c))
        .enumerate()
    {
        let base = first + p * c + c0;
        let (dp, vp) = (d[c0..].as_mut_ptr(), v[c0..].as_ptr());
        for k in 0..N {
            // SAFETY: lanes of vector k are channels c0 + 16 k + lane < c of this position.
            unsafe {
                let dv = load(dp.add(16 * k), m[k]);
                let gv = if mask.off {
                    dv
                } else {
                    _mm512_maskz_mov_ps(
                        keep_mask(mask, (base + 16 * k) as u32),
                        _mm512_mul_ps(dv, dscale),
                    )
                };
                _mm512_mask_storeu_ps(dp.add(16 * k), m[k], gv);
                let xhat = _mm512_mul_ps(
                    _mm512_sub_ps(load(vp.add(16 * k), m[k]), mean_v[k]),
                    inv_v[k],
                );
                let (glo, ghi) = widen(gv);
                let (plo, phi) = widen(_mm512_mul_ps(gv, xhat));
                sg[k][0] = _mm512_add_pd(sg[k][0], glo);
                sg[k][1] = _mm512_add_pd(sg[k][1], ghi);
                sgx[k][0] = _mm512_add_pd(sgx[k][0], plo);
                sgx[k][1] = _mm512_add_pd(sgx[k][1], phi);
            }
        }
    }
    add_lanes(&sg, &mut sum_g[c0..], width);
    add_lanes(&sgx, &mut sum_gx[c0..], width);
}

/// `kernels::pooled_affine_dropout` for one job.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
pub(crate) fn pooled_affine(
    value: &[f32],
    first: usize,
    c: usize,
    affine: &Affine,
    mask: &DropoutMask,
    y: &mut [f32],
) {
    let dscale = _mm512_set1_ps(mask.scale);
    let mut c0 = 0;
    while c0 < c {
        let width = (c - c0).min(16);
        let m = lane_mask(width);
        let scale = vectors::<1>(&affine.scale[c0..], &[m])[0];
        let shift = vectors::<1>(&affine.shift[c0..], &[m])[0];
        for (p, (yo, v)) in y.chunks_exact_mut(c).zip(value.chunks_exact(c)).enumerate() {
            // SAFETY: lanes are channels c0 + lane < c of this position.
            unsafe {
                let bn = _mm512_add_ps(_mm512_mul_ps(scale, load(v[c0..].as_ptr(), m)), shift);
                let out = if mask.off {
                    bn
                } else {
                    let keep = keep_mask(mask, (first + p * c + c0) as u32);
                    _mm512_maskz_mov_ps(keep, _mm512_mul_ps(bn, dscale))
                };
                _mm512_mask_storeu_ps(yo[c0..].as_mut_ptr(), m, out);
            }
        }
        c0 += width;
    }
}
