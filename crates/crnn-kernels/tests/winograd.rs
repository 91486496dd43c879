//! Winograd F(2x2, 3x3) against the direct convolution in f64: forward (with bias), the
//! input gradient and the kernel gradient, on shapes with odd sides, ragged channel
//! vectors and a batch transformed in several chunks of tile rows. The 16 products in the
//! Winograd domain are a plain f64-accumulated matrix product here (crnn uses libtorch's).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::noise;
use crnn_kernels::{
    Isa, Plan, TILE_ELEMENTS, WinogradShape, winograd_weight_grad, winograd_weights,
    winograd_weights_flipped,
};

/// `[16][t][a]` x `[16][a][b]` (or its transpose when `at`), f64 sums.
fn gemm(x: &[f32], y: &[f32], t: usize, a: usize, b: usize) -> Vec<f32> {
    let mut out = vec![0f32; TILE_ELEMENTS * t * b];
    for e in 0..TILE_ELEMENTS {
        for r in 0..t {
            for c in 0..b {
                let mut acc = 0f64;
                for k in 0..a {
                    acc += f64::from(x[(e * t + r) * a + k]) * f64::from(y[(e * a + k) * b + c]);
                }
                out[(e * t + r) * b + c] = acc as f32;
            }
        }
    }
    out
}

/// `Σ_t x[e][t][a] y[e][t][b]`, `[16][a][b]`, added to `acc`.
fn gemm_tn(x: &[f32], y: &[f32], t: usize, a: usize, b: usize, acc: &mut [f64]) {
    for e in 0..TILE_ELEMENTS {
        for r in 0..t {
            for i in 0..a {
                for c in 0..b {
                    acc[(e * a + i) * b + c] +=
                        f64::from(x[(e * t + r) * a + i]) * f64::from(y[(e * t + r) * b + c]);
                }
            }
        }
    }
}

/// The forward convolution by Winograd, in chunks of `per` tile rows.
fn forward(
    plan: &Plan,
    x: &[f32],
    g: WinogradShape,
    u: &[f32],
    dims: (usize, usize),
    bias: Option<&[f32]>,
    per: usize,
) -> Vec<f32> {
    let (ci, co) = dims;
    let mut y = vec![f32::NAN; g.len(co)];
    for rows in g.tile_row_chunks(per) {
        let t = rows.len() * g.tiles_per_row();
        let mut v = vec![0f32; g.domain_len(&rows, ci)];
        plan.winograd_input(x, g, ci, rows.clone(), &mut v).unwrap();
        let m = gemm(&v, u, t, ci, co);
        plan.winograd_output(&m, g, co, bias, rows, &mut y).unwrap();
    }
    y
}

struct Case {
    g: WinogradShape,
    ci: usize,
    co: usize,
    per: usize,
}

/// Calls `f(yi, xi, ki)` for every term `y[yi] += x[xi] * k[ki]` of the direct "same"
/// convolution of case `c` (output index, input index, kernel index).
fn for_each_term(c: &Case, mut f: impl FnMut(usize, usize, usize)) {
    let WinogradShape { n, h, w } = c.g;
    for b in 0..n {
        for r in 0..h {
            for col in 0..w {
                for o in 0..c.co {
                    let yi = ((b * h + r) * w + col) * c.co + o;
                    for a in 0..3 {
                        for bb in 0..3 {
                            let (rr, cc) = ((r + a).wrapping_sub(1), (col + bb).wrapping_sub(1));
                            if rr >= h || cc >= w {
                                continue;
                            }
                            for i in 0..c.ci {
                                let xi = ((b * h + rr) * w + cc) * c.ci + i;
                                f(yi, xi, ((o * c.ci + i) * 3 + a) * 3 + bb);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn direct(x: &[f32], k: &[f32], bias: &[f32], c: &Case) -> Vec<f64> {
    let mut y: Vec<f64> = (0..c.g.len(c.co))
        .map(|yi| f64::from(bias[yi % c.co]))
        .collect();
    for_each_term(c, |yi, xi, ki| {
        y[yi] += f64::from(x[xi]) * f64::from(k[ki]);
    });
    y
}

fn direct_grads(x: &[f32], k: &[f32], dy: &[f32], c: &Case) -> (Vec<f64>, Vec<f64>) {
    let (mut dx, mut dk) = (vec![0f64; c.g.len(c.ci)], vec![0f64; c.co * c.ci * 9]);
    for_each_term(c, |yi, xi, ki| {
        let d = f64::from(dy[yi]);
        dx[xi] += d * f64::from(k[ki]);
        dk[ki] += d * f64::from(x[xi]);
    });
    (dx, dk)
}

/// Largest error relative to the largest reference value.
fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    got.iter()
        .zip(want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0f64, f64::max)
        / scale
}

fn cases() -> Vec<Case> {
    let c = |n, h, w, ci, co, per| Case {
        g: WinogradShape { n, h, w },
        ci,
        co,
        per,
    };
    vec![
        c(2, 5, 7, 20, 3, 2),
        c(1, 8, 9, 16, 33, 100),
        c(3, 4, 11, 7, 16, 1),
        c(2, 1, 1, 5, 4, 1),
    ]
}

#[test]
fn forward_and_gradients_match_the_direct_convolution() {
    for plan in [common::plan(Isa::Portable), common::plan(Isa::best())] {
        for (idx, case) in cases().iter().enumerate() {
            let seed = 10 * idx as u64;
            let (g, ci, co) = (case.g, case.ci, case.co);
            let x = noise(seed, g.len(ci));
            let k = noise(seed + 1, co * ci * 9);
            let bias = noise(seed + 2, co);
            let u = winograd_weights(&k, co, ci).unwrap();
            let y = forward(&plan, &x, g, &u, (ci, co), Some(&bias), case.per);
            let err = rel_err(&y, &direct(&x, &k, &bias, case));
            assert!(err < 1e-6, "{:?} forward {case:?}: {err:e}", plan.isa());

            let dy = noise(seed + 3, g.len(co));
            let uf = winograd_weights_flipped(&k, co, ci).unwrap();
            let dx = forward(&plan, &dy, g, &uf, (co, ci), None, case.per);
            let mut du = vec![0f64; TILE_ELEMENTS * ci * co];
            for rows in g.tile_row_chunks(case.per) {
                let t = rows.len() * g.tiles_per_row();
                let mut v = vec![0f32; g.domain_len(&rows, ci)];
                plan.winograd_input(&x, g, ci, rows.clone(), &mut v)
                    .unwrap();
                let mut dm = vec![0f32; g.domain_len(&rows, co)];
                plan.winograd_output_grad(&dy, g, co, rows, &mut dm)
                    .unwrap();
                gemm_tn(&v, &dm, t, ci, co, &mut du);
            }
            let du: Vec<f32> = du.iter().map(|&v| v as f32).collect();
            let dk = winograd_weight_grad(&du, co, ci).unwrap();
            let (want_dx, want_dk) = direct_grads(&x, &k, &dy, case);
            let err = rel_err(&dx, &want_dx);
            assert!(
                err < 1e-6,
                "{:?} input gradient {case:?}: {err:e}",
                plan.isa()
            );
            let err = rel_err(&dk, &want_dk);
            assert!(
                err < 1e-6,
                "{:?} kernel gradient {case:?}: {err:e}",
                plan.isa()
            );
        }
    }
}

#[test]
fn bad_lengths_and_ranges_are_errors() {
    let plan = Plan::detect();
    let g = WinogradShape { n: 1, h: 4, w: 4 };
    let x = vec![0f32; g.len(3)];
    let mut v = vec![0f32; g.domain_len(&(0..2), 3)];
    assert!(plan.winograd_input(&x, g, 3, 0..2, &mut v).is_ok());
    assert!(plan.winograd_input(&x[1..], g, 3, 0..2, &mut v).is_err());
    assert!(plan.winograd_input(&x, g, 3, 0..3, &mut v).is_err());
    assert!(plan.winograd_input(&x, g, 3, 0..1, &mut v).is_err());
    let mut y = vec![0f32; g.len(3)];
    assert!(
        plan.winograd_output(&v, g, 3, Some(&[0.0; 2]), 0..2, &mut y)
            .is_err()
    );
    assert!(plan.winograd_output_grad(&y, g, 3, 1..2, &mut v).is_err());
    assert!(winograd_weights(&[0.0; 17], 2, 1).is_err());
    assert!(winograd_weight_grad(&[0.0; 16], 2, 1).is_err());
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} {} -> {} in chunks of {} tile rows",
            self.g, self.ci, self.co, self.per
        )
    }
}
