//! AVX-512 twins of the block-1 kernels in `conv1.rs`: same position order, same channel
//! groups, same arithmetic (the conv taps and gradient sums as fused multiply-adds, the shared
//! ELU, the fixed tree order of `conv1::tree_sum`), so the same bits. The callers check
//! every slice length against the geometry first.

use std::arch::x86_64::*;

use super::avx512::{add_lanes, elu, masks, vectors, widen};
use super::conv1::{Conv1, GROUP, GradIn, GradOut, Plane, for_positions};
use super::kernels::{Affine, Geometry};

/// Conv 1 at one position for the `N` vectors of a channel group.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn conv_at<const N: usize>(
    bias: &[__m512; N],
    taps: &[[__m512; N]; 9],
    zs: &[f32; 9],
) -> [__m512; N] {
    let mut x = *bias;
    for (tap, &zv) in zs.iter().enumerate() {
        let zb = _mm512_set1_ps(zv);
        for v in 0..N {
            x[v] = _mm512_fmadd_ps(taps[tap][v], zb, x[v]);
        }
    }
    x
}

fn group_taps<const N: usize>(conv: &Conv1, c0: usize, m: &[__mmask16; N]) -> [[__m512; N]; 9] {
    std::array::from_fn(|tap| vectors::<N>(&conv.taps[tap * conv.c + c0..], m))
}

/// `conv1::tree_sum` of one register.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn tree_sum(v: __m512) -> f32 {
    let s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    let s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
    _mm_cvtss_f32(s1)
}

macro_rules! by_group {
    ($c:expr, |$c0:ident, $w:ident| $call:ident($($arg:expr),*)) => {{
        let c = $c;
        let mut $c0 = 0;
        while $c0 < c {
            let $w = (c - $c0).min(GROUP);
            match $w.div_ceil(16) {
                1 => $call::<1>($($arg),*),
                2 => $call::<2>($($arg),*),
                3 => $call::<3>($($arg),*),
                _ => $call::<4>($($arg),*),
            }
            $c0 += $w;
        }
    }};
}

// ---- training forward -------------------------------------------------------------------

/// `conv1::train_body` (one job).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
pub(crate) fn train(
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
    by_group!(g.c, |c0, w| train_group(
        plane, conv, g, sign, first_row, c0, w, index, value, sum, sumsq
    ));
}

#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn train_group<const N: usize>(
    plane: Plane<'_>,
    conv: &Conv1,
    g: Geometry,
    sign: &[f32],
    first_row: usize,
    c0: usize,
    w: usize,
    index: &mut [u8],
    value: &mut [f32],
    sum: &mut [f64],
    sumsq: &mut [f64],
) {
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let m = masks::<N>(w);
    let bias = vectors::<N>(&conv.bias[c0..], &m);
    let taps = group_taps::<N>(conv, c0, &m);
    let sgn = vectors::<N>(&sign[c0..], &m);
    let zero = [_mm512_setzero_pd(); 2];
    let (mut s, mut q) = ([zero; N], [zero; N]);
    let mut best = [_mm512_set1_ps(f32::NEG_INFINITY); N];
    let mut bidx = [_mm512_setzero_si512(); N];
    let rows = index.len() / (to_n * c);
    for r in 0..rows {
        let (n, fo) = ((first_row + r) / fo_n, (first_row + r) % fo_n);
        for_positions!(g, fo, |f, t, window| {
            let x = conv_at::<N>(&bias, &taps, &plane.taps(n, f, t));
            let mut e = [_mm512_setzero_ps(); N];
            for v in 0..N {
                e[v] = elu(x[v]);
                let (lo, hi) = widen(e[v]);
                s[v][0] = _mm512_add_pd(s[v][0], lo);
                s[v][1] = _mm512_add_pd(s[v][1], hi);
                q[v][0] = _mm512_add_pd(q[v][0], _mm512_mul_pd(lo, lo));
                q[v][1] = _mm512_add_pd(q[v][1], _mm512_mul_pd(hi, hi));
            }
            let Some((to, k)) = window else { continue };
            if k == 0 {
                best = [_mm512_set1_ps(f32::NEG_INFINITY); N];
                bidx = [_mm512_setzero_si512(); N];
            }
            let kv = _mm512_set1_epi32(k as i32);
            for v in 0..N {
                let val = _mm512_mul_ps(e[v], sgn[v]);
                let b = best[v];
                let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(val, b)
                    | (_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(val, val)
                        & !_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(b, b));
                best[v] = _mm512_mask_blend_ps(take, b, val);
                bidx[v] = _mm512_mask_blend_epi32(take, bidx[v], kv);
            }
            if k as usize + 1 == g.pf * g.pt {
                let at = (r * to_n + to) * c + c0;
                for v in 0..N {
                    // SAFETY: `at + 16 v + lane` lies in this job's slices for unmasked lanes.
                    unsafe {
                        _mm512_mask_storeu_ps(
                            value[at..].as_mut_ptr().add(16 * v),
                            m[v],
                            _mm512_mul_ps(best[v], sgn[v]),
                        );
                        _mm512_mask_cvtepi32_storeu_epi8(
                            index[at..].as_mut_ptr().add(16 * v) as *mut i8,
                            m[v],
                            bidx[v],
                        );
                    }
                }
            }
        });
    }
    add_lanes(&s, &mut sum[c0..], w);
    add_lanes(&q, &mut sumsq[c0..], w);
}

// ---- training backward ------------------------------------------------------------------

/// `conv1::grad_body` (one job).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
pub(crate) fn grad(
    plane: Plane<'_>,
    gi: &GradIn<'_>,
    first_row: usize,
    rows: usize,
    out: &mut GradOut,
) {
    by_group!(gi.g.c, |c0, w| grad_group(
        plane, gi, first_row, rows, c0, w, out
    ));
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn grad_group<const N: usize>(
    plane: Plane<'_>,
    gi: &GradIn<'_>,
    first_row: usize,
    rows: usize,
    c0: usize,
    w: usize,
    out: &mut GradOut,
) {
    let (g, conv, bn) = (gi.g, gi.conv, gi.bn);
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let m = masks::<N>(w);
    let bias = vectors::<N>(&conv.bias[c0..], &m);
    let taps = group_taps::<N>(conv, c0, &m);
    let scale = vectors::<N>(&bn.scale[c0..], &m);
    let mean = vectors::<N>(&bn.mean[c0..], &m);
    let k0 = vectors::<N>(&bn.c0[c0..], &m);
    let k1 = vectors::<N>(&bn.c1[c0..], &m);
    let (zero, one) = (_mm512_setzero_ps(), _mm512_set1_ps(1.0));
    let mut acc_bias = [[_mm512_setzero_pd(); 2]; N];
    for r in first_row..first_row + rows {
        let (n, fo) = (r / fo_n, r % fo_n);
        let mut kernel_row = [[zero; N]; 9];
        for_positions!(g, fo, |f, t, window| {
            let zs = plane.taps(n, f, t);
            let x = conv_at::<N>(&bias, &taps, &zs);
            let mut dx = [zero; N];
            for v in 0..N {
                let e = elu(x[v]);
                let centred = _mm512_mul_ps(k1[v], _mm512_sub_ps(e, mean[v]));
                let de = match window {
                    Some((to, k)) => {
                        let at = (r * to_n + to) * c + c0 + 16 * v;
                        // SAFETY: the window's pooled row lies inside `gp` and `index`
                        // (checked lengths); lanes masked to the group.
                        let (gv, iw) = unsafe {
                            (
                                _mm512_maskz_loadu_ps(m[v], gi.gp.as_ptr().add(at)),
                                _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(
                                    m[v],
                                    gi.index.as_ptr().add(at) as *const i8,
                                )),
                            )
                        };
                        let hit = _mm512_maskz_mov_ps(
                            _mm512_cmpeq_epi32_mask(iw, _mm512_set1_epi32(k as i32)),
                            gv,
                        );
                        _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(scale[v], hit), k0[v]), centred)
                    }
                    None => _mm512_add_ps(k0[v], centred),
                };
                let neg = _mm512_mul_ps(de, _mm512_add_ps(e, one));
                dx[v] = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(e, zero), neg, de);
                let (lo, hi) = widen(dx[v]);
                acc_bias[v][0] = _mm512_add_pd(acc_bias[v][0], lo);
                acc_bias[v][1] = _mm512_add_pd(acc_bias[v][1], hi);
            }
            for (tap, &zv) in zs.iter().enumerate() {
                let zb = _mm512_set1_ps(zv);
                for v in 0..N {
                    kernel_row[tap][v] = _mm512_fmadd_ps(dx[v], zb, kernel_row[tap][v]);
                }
            }
            for (tap, w_tap) in taps.iter().enumerate() {
                let (ff, tt) = (f + tap / 3, t + tap % 3);
                if ff == 0 || ff > g.f || tt == 0 || tt > g.t {
                    continue;
                }
                let mut acc = zero;
                for v in 0..N {
                    acc = _mm512_fmadd_ps(dx[v], w_tap[v], acc);
                }
                let flat = n * g.f + ff - 1;
                out.input[(flat - out.rows.start) * g.t + tt - 1] += tree_sum(acc);
            }
        });
        let mut lanes = [0f32; 16];
        for (tap, row) in kernel_row.iter().enumerate() {
            for (v, reg) in row.iter().enumerate() {
                // SAFETY: `lanes` holds 16 f32.
                unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *reg) };
                for (lane, &val) in lanes
                    .iter()
                    .enumerate()
                    .take(w.saturating_sub(16 * v).min(16))
                {
                    out.kernel[tap * c + c0 + 16 * v + lane] += val as f64;
                }
            }
        }
    }
    add_lanes(&acc_bias, &mut out.bias[c0..], w);
}

// ---- inference --------------------------------------------------------------------------

/// `conv1::eval_body` (one job).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
pub(crate) fn eval(
    plane: Plane<'_>,
    conv: &Conv1,
    g: Geometry,
    affine: &Affine,
    first_row: usize,
    y: &mut [f32],
) {
    by_group!(g.c, |c0, w| eval_group(
        plane, conv, g, affine, first_row, c0, w, y
    ));
}

#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn eval_group<const N: usize>(
    plane: Plane<'_>,
    conv: &Conv1,
    g: Geometry,
    affine: &Affine,
    first_row: usize,
    c0: usize,
    w: usize,
    y: &mut [f32],
) {
    let (fo_n, to_n, c) = (g.fo(), g.to(), g.c);
    let m = masks::<N>(w);
    let bias = vectors::<N>(&conv.bias[c0..], &m);
    let taps = group_taps::<N>(conv, c0, &m);
    let sign = vectors::<N>(&affine.sign[c0..], &m);
    let scale = vectors::<N>(&affine.scale[c0..], &m);
    let shift = vectors::<N>(&affine.shift[c0..], &m);
    let rows = y.len() / (to_n * c);
    for r in 0..rows {
        let (n, fo) = ((first_row + r) / fo_n, (first_row + r) % fo_n);
        for to in 0..to_n {
            let mut best = [_mm512_set1_ps(f32::NEG_INFINITY); N];
            for k in 0..g.pf * g.pt {
                let (f, t) = (fo * g.pf + k / g.pt, to * g.pt + k % g.pt);
                let x = conv_at::<N>(&bias, &taps, &plane.taps(n, f, t));
                for v in 0..N {
                    let val = _mm512_mul_ps(x[v], sign[v]);
                    let b = best[v];
                    let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(val, b)
                        | (_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(val, val)
                            & !_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(b, b));
                    best[v] = _mm512_mask_blend_ps(take, b, val);
                }
            }
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
