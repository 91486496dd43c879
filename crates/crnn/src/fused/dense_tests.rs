//! The fused kernels against naive dense transcriptions of ELU -> BatchNorm -> MaxPool ->
//! Dropout and of their backward (in f64), on shapes whose sizes do not divide by the pools.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::fused::kernels::mean_variance;
use crate::fused::mel_bins::{bin_affine, bin_grad_sums, bin_stats};
use crate::fused::test_util::{bits, both, noise};

fn geometries() -> Vec<Geometry> {
    vec![
        Geometry {
            n: 3,
            f: 8,
            t: 10,
            c: 5,
            pf: 2,
            pt: 2,
        },
        Geometry {
            n: 2,
            f: 9,
            t: 7,
            c: 16,
            pf: 4,
            pt: 2,
        },
        Geometry {
            n: 1,
            f: 4,
            t: 5,
            c: 33,
            pf: 4,
            pt: 2,
        },
        Geometry {
            n: 4,
            f: 16,
            t: 23,
            c: 8,
            pf: 4,
            pt: 2,
        },
    ]
}

fn at(g: Geometry, n: usize, f: usize, t: usize, c: usize) -> usize {
    ((n * g.f + f) * g.t + t) * g.c + c
}

fn pooled_at(g: Geometry, n: usize, fo: usize, to: usize, c: usize) -> usize {
    ((n * g.fo() + fo) * g.to() + to) * g.c + c
}

fn affine_for(g: Geometry, seed: u64) -> Affine {
    let s = noise(seed, 2 * g.c);
    // Mixed signs, including a zero scale.
    let mut scale: Vec<f32> = s[..g.c].iter().map(|v| v * 2.0).collect();
    scale[0] = 0.0;
    if g.c > 1 {
        scale[1] = -scale[1].abs() - 0.1;
    }
    Affine::new(scale, s[g.c..].to_vec())
}

#[test]
fn elu_with_stats_matches_a_dense_loop() {
    for g in geometries() {
        let x: Vec<f32> = noise(1, g.len()).iter().map(|v| v * 4.0).collect();
        let mut e = x.clone();
        let sums = elu_with_stats(&mut e, g).unwrap();
        let (mut sa, mut sb) = (vec![0f64; g.c], vec![0f64; g.c]);
        for (i, (&xv, &ev)) in x.iter().zip(&e).enumerate() {
            let want = if xv > 0.0 { xv } else { xv.exp_m1() };
            assert!(
                (ev - want).abs() <= 3e-7 * want.abs().max(1e-30),
                "{ev} vs {want}"
            );
            sa[i % g.c] += want as f64;
            sb[i % g.c] += (want as f64).powi(2);
        }
        for ch in 0..g.c {
            assert!((sums.a[ch] - sa[ch]).abs() < 1e-5, "{g:?}");
            assert!((sums.b[ch] - sb[ch]).abs() < 1e-5, "{g:?}");
        }
    }
}

/// Dense reference: y = dropout(maxpool(scale * e + shift)), first maximum on ties.
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
                            let v = aff.scale[ch] * e[p] + aff.shift[ch];
                            if v > best {
                                best = v;
                                bi = p;
                            }
                        }
                    }
                    let o = pooled_at(g, n, fo, to, ch);
                    let keep = mask.keep(o as u32);
                    y[o] = if mask.off {
                        best
                    } else if keep {
                        best * mask.scale
                    } else {
                        0.0
                    };
                    arg[o] = bi;
                }
            }
        }
    }
    (y, arg)
}

#[test]
fn training_pool_equals_dense_batchnorm_then_maxpool() {
    for (k, g) in geometries().into_iter().enumerate() {
        let e: Vec<f32> = noise(10 + k as u64, g.len())
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let aff = affine_for(g, 20 + k as u64);
        for rate in [0.0, 0.3] {
            let mask = DropoutMask::new(rate, 99);
            let (want, _) = dense_pool(&e, g, &aff, &mask);
            let (mut y, mut index, mut value) = (
                vec![0f32; g.pooled_len()],
                vec![0u8; g.pooled_len()],
                vec![0f32; g.pooled_len()],
            );
            pool_train(
                &e,
                g,
                &aff,
                &mask,
                PooledOut {
                    y: &mut y,
                    index: &mut index,
                    value: &mut value,
                },
            )
            .unwrap();
            assert_eq!(y, want, "{g:?} rate {rate}");
            // The stored index and value point at the element that gave the maximum.
            for n in 0..g.n {
                for fo in 0..g.fo() {
                    for to in 0..g.to() {
                        for ch in 0..g.c {
                            let o = pooled_at(g, n, fo, to, ch);
                            let (i, j) = (index[o] as usize / g.pt, index[o] as usize % g.pt);
                            let p = at(g, n, fo * g.pf + i, to * g.pt + j, ch);
                            assert_eq!(value[o], e[p]);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn nan_propagates_through_the_pool() {
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
    let (mut y, mut index, mut value) = (vec![0f32; 2], vec![0u8; 2], vec![0f32; 2]);
    let mask = DropoutMask::new(0.0, 0);
    pool_train(
        &e,
        g,
        &aff,
        &mask,
        PooledOut {
            y: &mut y,
            index: &mut index,
            value: &mut value,
        },
    )
    .unwrap();
    assert_eq!(y[0], 1.0);
    assert!(y[1].is_nan());
    let mut out = vec![0f32; 2];
    pool_elu_affine(&e, g, &aff, &mut out).unwrap();
    assert!(out[1].is_nan() && out[0] == 1.0);
}

#[test]
fn backward_passes_match_the_dense_batchnorm_and_elu_gradient() {
    for (k, g) in geometries().into_iter().enumerate() {
        let x: Vec<f32> = noise(30 + k as u64, g.len())
            .iter()
            .map(|v| v * 3.0 + 0.5)
            .collect();
        let gamma: Vec<f32> = noise(40 + k as u64, g.c).iter().map(|v| v * 1.5).collect();
        let beta = noise(50 + k as u64, g.c);
        let mut e = x.clone();
        let sums = elu_with_stats(&mut e, g).unwrap();
        let (mean64, var64) = mean_variance(&sums, g.positions());
        let eps = 1e-3;
        let invstd: Vec<f32> = var64
            .iter()
            .map(|v| (1.0 / (v + eps).sqrt()) as f32)
            .collect();
        let mean: Vec<f32> = mean64.iter().map(|&m| m as f32).collect();
        let scale: Vec<f32> = gamma.iter().zip(&invstd).map(|(g, i)| g * i).collect();
        let shift: Vec<f32> = (0..g.c).map(|c| beta[c] - mean[c] * scale[c]).collect();
        let aff = Affine::new(scale, shift);
        for rate in [0.0, 0.25] {
            let mask = DropoutMask::new(rate, 5 + k as u64);
            let (mut y, mut index, mut value) = (
                vec![0f32; g.pooled_len()],
                vec![0u8; g.pooled_len()],
                vec![0f32; g.pooled_len()],
            );
            pool_train(
                &e,
                g,
                &aff,
                &mask,
                PooledOut {
                    y: &mut y,
                    index: &mut index,
                    value: &mut value,
                },
            )
            .unwrap();
            let (_, arg) = dense_pool(&e, g, &aff, &mask);
            let dy_out = noise(60 + k as u64, g.pooled_len());

            // Dense f64 reference: scatter through dropout and the pool, BatchNorm backward
            // with the batch statistics, ELU backward from the input.
            let mut dbn = vec![0f64; g.len()];
            for (o, &p) in arg.iter().enumerate() {
                let keep = mask.off || mask.keep(o as u32);
                let s = if mask.off { 1.0 } else { mask.scale as f64 };
                dbn[p] += if keep { dy_out[o] as f64 * s } else { 0.0 };
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
            let sums = pooled_grad(&mut g_pooled, &value, g.c, &mean, &invstd, &mask).unwrap();
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
            let bn = BnBackward::new(&gamma, &mean, &invstd, &sums, g.positions());
            let mut dx = e.clone();
            let bias = conv_output_grad(&mut dx, &g_pooled, &index, g, &bn).unwrap();
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
    for (k, g) in geometries().into_iter().enumerate() {
        let x: Vec<f32> = noise(70 + k as u64, g.len())
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let aff = affine_for(g, 80 + k as u64);
        let e: Vec<f32> = x.iter().map(|&v| elu(v)).collect();
        let (want, _) = dense_pool(&e, g, &aff, &DropoutMask::new(0.0, 0));
        let mut y = vec![0f32; g.pooled_len()];
        pool_elu_affine(&x, g, &aff, &mut y).unwrap();
        for (a, b) in y.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{g:?}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn input_batchnorm_sums() {
    let (n, f, t) = (3, 5, 7);
    let x = noise(90, n * f * t);
    let dy = noise(91, n * f * t);
    let s = bin_stats(&x, f, t).unwrap();
    let (mean, var) = mean_variance(&s, n * t);
    let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    let invstd: Vec<f32> = var
        .iter()
        .map(|v| (1.0 / (v + 1e-3).sqrt()) as f32)
        .collect();
    let gs = bin_grad_sums(&dy, &x, f, t, &mean32, &invstd).unwrap();
    for b in 0..f {
        let vals: Vec<f64> = (0..n)
            .flat_map(|i| (0..t).map(move |j| ((i * f + b) * t + j, j)))
            .map(|(p, _)| x[p] as f64)
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
    bin_affine(&x, f, t, &[1.0, 2.0, 3.0, 4.0, 5.0], &[0.5; 5], &mut y).unwrap();
    assert_eq!(y[t], 2.0 * x[t] + 0.5);
    assert_eq!(y[(f + 4) * t + 1], 5.0 * x[(f + 4) * t + 1] + 0.5);
}

#[test]
fn simd_kernels_equal_the_portable_ones_bit_for_bit() {
    let mut gs = geometries();
    gs.push(Geometry {
        n: 2,
        f: 16,
        t: 11,
        c: 128,
        pf: 4,
        pt: 2,
    });
    gs.push(Geometry {
        n: 2,
        f: 8,
        t: 9,
        c: 70,
        pf: 2,
        pt: 2,
    });
    for (k, g) in gs.into_iter().enumerate() {
        let mut x: Vec<f32> = noise(100 + k as u64, g.len())
            .iter()
            .map(|v| v * 20.0)
            .collect();
        x[3] = f32::NAN;
        x[g.len() / 2] = -200.0;
        let (a, b) = both(|| {
            let mut e = x.clone();
            let s = elu_with_stats(&mut e, g).unwrap();
            (
                bits(&e),
                s.a.iter()
                    .chain(&s.b)
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>(),
            )
        });
        assert_eq!(a, b, "elu_with_stats {g:?}");
        let e: Vec<f32> = x.iter().map(|&v| elu(v)).collect();
        let aff = affine_for(g, 200 + k as u64);
        let mask = DropoutMask::new(0.3, 77);
        let run_pool = || {
            let (mut y, mut index, mut value) = (
                vec![0f32; g.pooled_len()],
                vec![0u8; g.pooled_len()],
                vec![0f32; g.pooled_len()],
            );
            pool_train(
                &e,
                g,
                &aff,
                &mask,
                PooledOut {
                    y: &mut y,
                    index: &mut index,
                    value: &mut value,
                },
            )
            .unwrap();
            (bits(&y), index, bits(&value))
        };
        let (a, b) = both(run_pool);
        assert_eq!(a, b, "pool_train {g:?}");
        let (_, index, _) = run_pool();
        let (a, b) = both(|| {
            let mut y = vec![0f32; g.pooled_len()];
            pool_elu_affine(&x, g, &aff, &mut y).unwrap();
            bits(&y)
        });
        assert_eq!(a, b, "pool_elu_affine {g:?}");
        let gp = noise(300 + k as u64, g.pooled_len());
        let c = g.c;
        let bn = BnBackward {
            scale: noise(1, c),
            mean: noise(2, c),
            c0: noise(3, c).iter().map(|v| v * 0.01).collect(),
            c1: noise(4, c).iter().map(|v| v * 0.01).collect(),
        };
        let (a, b) = both(|| {
            let mut d = e.clone();
            let bias = conv_output_grad(&mut d, &gp, &index, g, &bn).unwrap();
            (
                bits(&d),
                bias.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            )
        });
        assert_eq!(a, b, "conv_output_grad {g:?}");
        let (_, _, value) = run_pool();
        let value: Vec<f32> = value.iter().map(|&b| f32::from_bits(b)).collect();
        let (mean, invstd) = (noise(5, c), noise(6, c));
        for rate in [0.0, 0.3] {
            let mask = DropoutMask::new(rate, 8);
            let (a, b) = both(|| {
                let mut d = gp.clone();
                let s = pooled_grad(&mut d, &value, c, &mean, &invstd, &mask).unwrap();
                (
                    bits(&d),
                    s.a.iter()
                        .chain(&s.b)
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>(),
                )
            });
            assert_eq!(a, b, "pooled_grad {g:?}");
            let (a, b) = both(|| {
                let mut y = vec![0f32; value.len()];
                pooled_affine_dropout(&value, c, &aff, &mask, &mut y).unwrap();
                bits(&y)
            });
            assert_eq!(a, b, "pooled_affine_dropout {g:?}");
        }
    }
}
