//! The dense passes against naive transcriptions of ELU -> BatchNorm -> MaxPool -> Dropout
//! and of their backward (in f64), on shapes whose sizes do not divide by the pools, on the
//! fastest instruction set of this CPU (the bit-for-bit tests tie the others to it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{affine_for, at, dense_geometries as geometries, noise, pooled_at};
use crnn_kernels::{Affine, BnBackward, DropoutMask, Geometry, Isa, Plan, PooledOut, elu};

fn best() -> Plan {
    common::plan(Isa::best())
}

/// Dense reference: y = dropout(maxpool(scale * e + shift)) (one fused multiply-add, as the
/// passes), first maximum on ties.
fn dense_pool(e: &[f32], g: Geometry, aff: &Affine, mask: &DropoutMask) -> (Vec<f32>, Vec<usize>) {
    let mut y = vec![0f32; g.pooled_len()];
    let mut arg = vec![0usize; g.pooled_len()];
    for n in 0..g.n {
        for fo in 0..g.fo() {
            for to in 0..g.to() {
                for ch in 0..g.c {
                    let (mut best, mut bi) = (f32::NEG_INFINITY, 0usize);
                    for i in 0..g.pf {
                        for j in 0..g.pt {
                            let p = at(g, n, fo * g.pf + i, to * g.pt + j, ch);
                            let v = aff.scale[ch].mul_add(e[p], aff.shift[ch]);
                            if v > best {
                                best = v;
                                bi = p;
                            }
                        }
                    }
                    let o = pooled_at(g, n, fo, to, ch);
                    y[o] = mask.apply(o as u32, best);
                    arg[o] = bi;
                }
            }
        }
    }
    (y, arg)
}

struct Pooled {
    y: Vec<f32>,
    index: Vec<u8>,
    value: Vec<f32>,
}

fn pool(plan: &Plan, e: &[f32], g: Geometry, aff: &Affine, mask: &DropoutMask) -> Pooled {
    let mut p = Pooled {
        y: vec![0f32; g.pooled_len()],
        index: vec![0u8; g.pooled_len()],
        value: vec![0f32; g.pooled_len()],
    };
    plan.pool_train(
        e,
        g,
        aff,
        mask,
        PooledOut {
            y: &mut p.y,
            index: &mut p.index,
            value: &mut p.value,
        },
    )
    .unwrap();
    p
}

#[test]
fn elu_with_stats_matches_a_dense_loop() {
    let plan = best();
    for g in geometries() {
        let x: Vec<f32> = noise(1, g.len()).iter().map(|v| v * 4.0).collect();
        let mut e = x.clone();
        let sums = plan.elu_with_stats(&mut e, g).unwrap();
        let (mut sa, mut sb, mut mag) = (vec![0f64; g.c], vec![0f64; g.c], vec![0f64; g.c]);
        for (i, (&xv, &ev)) in x.iter().zip(&e).enumerate() {
            let want = if xv > 0.0 { xv } else { xv.exp_m1() };
            assert!(
                (ev - want).abs() <= 3e-7 * want.abs().max(1e-30),
                "{ev} vs {want}"
            );
            sa[i % g.c] += want as f64;
            sb[i % g.c] += (want as f64).powi(2);
            mag[i % g.c] += (want as f64).abs() + (want as f64).powi(2);
        }
        // f32 runs of 16 positions into f64: within 1e-6 of the sum of magnitudes.
        for ch in 0..g.c {
            let tol = 1e-6 * (1.0 + mag[ch]);
            assert!((sums.a[ch] - sa[ch]).abs() < tol, "{g:?}");
            assert!((sums.b[ch] - sb[ch]).abs() < tol, "{g:?}");
        }
    }
}

#[test]
fn training_pool_equals_dense_batchnorm_then_maxpool() {
    let plan = best();
    for (k, g) in geometries().into_iter().enumerate() {
        let e: Vec<f32> = noise(10 + k as u64, g.len())
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let aff = affine_for(g, 20 + k as u64);
        for rate in [0.0, 0.3] {
            let mask = DropoutMask::new(rate, 99);
            let (want, _) = dense_pool(&e, g, &aff, &mask);
            let p = pool(&plan, &e, g, &aff, &mask);
            assert_eq!(p.y, want, "{g:?} rate {rate}");
            // The stored index and value point at the element that gave the maximum.
            for n in 0..g.n {
                for fo in 0..g.fo() {
                    for to in 0..g.to() {
                        for ch in 0..g.c {
                            let o = pooled_at(g, n, fo, to, ch);
                            let (i, j) = (p.index[o] as usize / g.pt, p.index[o] as usize % g.pt);
                            assert_eq!(p.value[o], e[at(g, n, fo * g.pf + i, to * g.pt + j, ch)]);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn nan_propagates_through_the_pool() {
    let plan = best();
    let g = Geometry {
        n: 1,
        f: 2,
        t: 2,
        c: 2,
        pf: 2,
        pt: 2,
    };
    let mut e = vec![1.0f32; g.len()];
    e[at(g, 0, 1, 0, 1)] = f32::NAN;
    let aff = Affine::new(vec![1.0, -1.0], vec![0.0, 0.0]);
    let p = pool(&plan, &e, g, &aff, &DropoutMask::none());
    assert_eq!(p.y[0], 1.0);
    assert!(p.y[1].is_nan());
    let mut out = vec![0f32; 2];
    plan.pool_elu_affine(&e, g, &aff, &mut out).unwrap();
    assert!(out[1].is_nan() && out[0] == 1.0);
}

#[test]
fn backward_passes_match_the_dense_batchnorm_and_elu_gradient() {
    let plan = best();
    for (k, g) in geometries().into_iter().enumerate() {
        let x: Vec<f32> = noise(30 + k as u64, g.len())
            .iter()
            .map(|v| v * 3.0 + 0.5)
            .collect();
        let gamma: Vec<f32> = noise(40 + k as u64, g.c).iter().map(|v| v * 1.5).collect();
        let beta = noise(50 + k as u64, g.c);
        let mut e = x.clone();
        let sums = plan.elu_with_stats(&mut e, g).unwrap();
        let (mean64, var64) = sums.mean_variance(g.positions());
        let eps = 1e-3;
        let stats = sums.batch_statistics(g.positions(), eps);
        let aff = Affine::training(&gamma, &beta, &stats.mean, &stats.invstd);
        for rate in [0.0, 0.25] {
            let mask = DropoutMask::new(rate, 5 + k as u64);
            let p = pool(&plan, &e, g, &aff, &mask);
            let (_, arg) = dense_pool(&e, g, &aff, &mask);
            let dy_out = noise(60 + k as u64, g.pooled_len());

            // Dense f64 reference: scatter through dropout and the pool, BatchNorm backward
            // with the batch statistics, ELU backward from the input.
            let mut dbn = vec![0f64; g.len()];
            for (o, &pos) in arg.iter().enumerate() {
                let s = if mask.is_off() {
                    1.0
                } else {
                    mask.scale() as f64
                };
                dbn[pos] += if mask.keep(o as u32) {
                    dy_out[o] as f64 * s
                } else {
                    0.0
                };
            }
            let m = g.positions() as f64;
            let (mut sg, mut sgx) = (vec![0f64; g.c], vec![0f64; g.c]);
            for (i, &d) in dbn.iter().enumerate() {
                let c = i % g.c;
                let xhat = (e[i] as f64 - mean64[c]) / (var64[c] + eps).sqrt();
                sg[c] += d;
                sgx[c] += d * xhat;
            }
            let mut want = vec![0f64; g.len()];
            let mut want_bias = vec![0f64; g.c];
            for i in 0..g.len() {
                let c = i % g.c;
                let is = 1.0 / (var64[c] + eps).sqrt();
                let xhat = (e[i] as f64 - mean64[c]) * is;
                let de = gamma[c] as f64 * is * (dbn[i] - sg[c] / m - xhat * sgx[c] / m);
                let d = if x[i] > 0.0 {
                    de
                } else {
                    de * (x[i] as f64).exp()
                };
                want[i] = d;
                want_bias[c] += d;
            }

            let mut g_pooled = dy_out.clone();
            let sums = plan
                .pooled_grad(
                    &mut g_pooled,
                    &p.value,
                    g.c,
                    (&stats.mean, &stats.invstd),
                    &mask,
                )
                .unwrap();
            for c in 0..g.c {
                assert!(
                    (sums.a[c] - sg[c]).abs() < 1e-5 * (1.0 + sg[c].abs()),
                    "dbeta {g:?}"
                );
                assert!(
                    (sums.b[c] - sgx[c]).abs() < 1e-4 * (1.0 + sgx[c].abs()),
                    "dgamma {g:?}"
                );
            }
            let bn = BnBackward::new(&gamma, &stats.mean, &stats.invstd, &sums, g.positions());
            let mut dx = e.clone();
            let bias = plan
                .conv_output_grad(&mut dx, (&g_pooled, &p.index), g, &bn)
                .unwrap();
            let scale = want.iter().fold(0f64, |a, v| a.max(v.abs()));
            for (i, (&got, &w)) in dx.iter().zip(&want).enumerate() {
                assert!(
                    (got as f64 - w).abs() < 2e-5 * scale,
                    "{g:?} rate {rate} at {i}: {got} vs {w}"
                );
            }
            for c in 0..g.c {
                assert!(
                    (bias[c] - want_bias[c]).abs() < 1e-4 * (1.0 + scale),
                    "bias {g:?}"
                );
            }
        }
    }
}

#[test]
fn inference_pool_equals_dense_elu_batchnorm_maxpool() {
    let plan = best();
    for (k, g) in geometries().into_iter().enumerate() {
        let x: Vec<f32> = noise(70 + k as u64, g.len())
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let aff = affine_for(g, 80 + k as u64);
        let e: Vec<f32> = x.iter().map(|&v| elu(v)).collect();
        let (want, _) = dense_pool(&e, g, &aff, &DropoutMask::none());
        let mut y = vec![0f32; g.pooled_len()];
        plan.pool_elu_affine(&x, g, &aff, &mut y).unwrap();
        for (a, b) in y.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{g:?}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn pooled_affine_dropout_is_pool_trains_tail() {
    let plan = best();
    for (k, g) in geometries().into_iter().enumerate() {
        let e: Vec<f32> = noise(110 + k as u64, g.len());
        let aff = affine_for(g, 120 + k as u64);
        let mask = DropoutMask::new(0.4, 3);
        let p = pool(&plan, &e, g, &aff, &mask);
        let mut y = vec![0f32; g.pooled_len()];
        plan.pooled_affine_dropout(&p.value, g.c, &aff, &mask, &mut y)
            .unwrap();
        assert_eq!(common::bits(&y), common::bits(&p.y), "{g:?}");
    }
}

#[test]
fn input_batchnorm_sums() {
    let plan = best();
    let (n, f, t) = (3, 5, 7);
    let x = noise(90, n * f * t);
    let dy = noise(91, n * f * t);
    let s = plan.bin_stats(&x, f, t).unwrap();
    let (mean, var) = s.mean_variance(n * t);
    let stats = s.batch_statistics(n * t, 1e-3);
    let gs = plan
        .bin_grad_sums(&dy, &x, (f, t), (&stats.mean, &stats.invstd))
        .unwrap();
    for b in 0..f {
        let vals: Vec<f64> = (0..n)
            .flat_map(|i| (0..t).map(move |j| (i * f + b) * t + j))
            .map(|p| x[p] as f64)
            .collect();
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        let v = vals.iter().map(|a| (a - m).powi(2)).sum::<f64>() / vals.len() as f64;
        assert!((mean[b] - m).abs() < 1e-12 && (var[b] - v).abs() < 1e-12);
        let (mut sa, mut sb) = (0f64, 0f64);
        for i in 0..n {
            for j in 0..t {
                let p = (i * f + b) * t + j;
                sa += dy[p] as f64;
                sb += dy[p] as f64 * (x[p] as f64 - m) / (v + 1e-3).sqrt();
            }
        }
        assert!((gs.a[b] - sa).abs() < 1e-6 && (gs.b[b] - sb).abs() < 1e-5);
    }
    let mut y = vec![0f32; x.len()];
    plan.bin_affine(&x, (f, t), (&[1.0, 2.0, 3.0, 4.0, 5.0], &[0.5; 5]), &mut y)
        .unwrap();
    assert_eq!(y[t], 2.0 * x[t] + 0.5);
    assert_eq!(y[(f + 4) * t + 1], 5.0 * x[(f + 4) * t + 1] + 0.5);
}

#[test]
fn wrong_lengths_are_errors_naming_the_argument() {
    let plan = best();
    let g = geometries()[0];
    let mut short = vec![0f32; g.len() - 1];
    let err = plan.elu_with_stats(&mut short, g).unwrap_err();
    assert!(err.to_string().contains("conv output"), "{err}");
    let aff = affine_for(g, 1);
    let e = vec![0f32; g.len()];
    let mut y = vec![0f32; g.pooled_len() + 1];
    let err = plan.pool_elu_affine(&e, g, &aff, &mut y).unwrap_err();
    assert!(err.to_string().contains("pooled output"), "{err}");
    let bad = Geometry { pf: 0, ..g };
    assert!(
        plan.elu_with_stats(&mut vec![0f32; bad.len()], bad)
            .is_err()
    );
    let huge = Geometry {
        pf: 16,
        pt: 16,
        ..g
    };
    let err = plan.pool_elu_affine(&e, huge, &aff, &mut []).unwrap_err();
    assert!(err.to_string().contains("byte"), "{err}");
}
