//! Block 1 fused with its convolution against the dense path: conv 1 computed into a full
//! tensor, then the already-tested dense kernels, then conv 1's backward in f64. And the
//! AVX-512 twins against the portable code, bit for bit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::fused::dense::{
    PooledOut, conv_output_grad, elu_with_stats, pool_elu_affine, pool_train, pooled_grad,
};
use crate::fused::math::DropoutMask;
use crate::fused::test_util::{bits, both, noise};

fn geometries() -> Vec<Geometry> {
    vec![
        Geometry {
            n: 2,
            f: 8,
            t: 10,
            c: 16,
            pf: 2,
            pt: 2,
        },
        Geometry {
            n: 3,
            f: 9,
            t: 7,
            c: 5,
            pf: 2,
            pt: 2,
        },
        Geometry {
            n: 2,
            f: 12,
            t: 11,
            c: 70,
            pf: 4,
            pt: 2,
        },
        Geometry {
            n: 1,
            f: 16,
            t: 23,
            c: 64,
            pf: 2,
            pt: 2,
        },
    ]
}

fn conv_for(g: Geometry, seed: u64) -> Conv1 {
    Conv1 {
        c: g.c,
        taps: noise(seed, 9 * g.c).iter().map(|v| v * 0.7).collect(),
        bias: noise(seed + 1, g.c).iter().map(|v| v * 0.3).collect(),
    }
}

/// Conv 1 into a dense NHWC tensor, with `conv_at`'s arithmetic (so equal bits).
fn dense_conv(plane: &Plane<'_>, conv: &Conv1, g: Geometry) -> Vec<f32> {
    let mut x = vec![0f32; g.len()];
    for n in 0..g.n {
        for f in 0..g.f {
            for t in 0..g.t {
                let zs = plane.taps(n, f, t);
                for o in 0..g.c {
                    let mut acc = conv.bias[o];
                    for (tap, &zv) in zs.iter().enumerate() {
                        acc = conv.taps[tap * g.c + o].mul_add(zv, acc);
                    }
                    x[((n * g.f + f) * g.t + t) * g.c + o] = acc;
                }
            }
        }
    }
    x
}

#[test]
fn training_forward_equals_conv_then_dense_kernels() {
    for (k, g) in geometries().into_iter().enumerate() {
        let z: Vec<f32> = noise(10 + k as u64, g.n * g.f * g.t)
            .iter()
            .map(|v| v * 2.0)
            .collect();
        let plane = Plane {
            z: &z,
            f: g.f,
            t: g.t,
        };
        let conv = conv_for(g, 20 + k as u64);
        let sign: Vec<f32> = (0..g.c)
            .map(|c| if c % 3 == 1 { -1.0 } else { 1.0 })
            .collect();
        let (mut index, mut value) = (vec![0u8; g.pooled_len()], vec![0f32; g.pooled_len()]);
        let sums = train_forward(
            plane,
            &conv,
            g,
            &sign,
            Winners {
                index: &mut index,
                value: &mut value,
            },
        )
        .unwrap();

        let mut e = dense_conv(&plane, &conv, g);
        let want = elu_with_stats(&mut e, g).unwrap();
        for c in 0..g.c {
            assert!(
                (sums.a[c] - want.a[c]).abs() < 1e-9 * (1.0 + want.a[c].abs()),
                "{g:?}"
            );
            assert!(
                (sums.b[c] - want.b[c]).abs() < 1e-9 * (1.0 + want.b[c].abs()),
                "{g:?}"
            );
        }
        // Pool with scale = sign, no shift, no dropout: the dense kernel's winners.
        let aff = Affine::new(sign.clone(), vec![0.0; g.c]);
        let (mut y, mut index_d, mut value_d) = (
            vec![0f32; g.pooled_len()],
            vec![0u8; g.pooled_len()],
            vec![0f32; g.pooled_len()],
        );
        let off = DropoutMask::new(0.0, 0);
        pool_train(
            &e,
            g,
            &aff,
            &off,
            PooledOut {
                y: &mut y,
                index: &mut index_d,
                value: &mut value_d,
            },
        )
        .unwrap();
        assert_eq!(index, index_d, "{g:?}");
        assert_eq!(bits(&value), bits(&value_d), "{g:?}");
    }
}

#[test]
fn training_backward_equals_dense_kernels_and_conv_backward() {
    for (k, g) in geometries().into_iter().enumerate() {
        let z: Vec<f32> = noise(30 + k as u64, g.n * g.f * g.t)
            .iter()
            .map(|v| v * 2.0)
            .collect();
        let plane = Plane {
            z: &z,
            f: g.f,
            t: g.t,
        };
        let conv = conv_for(g, 40 + k as u64);
        let sign: Vec<f32> = (0..g.c)
            .map(|c| if c % 4 == 2 { -1.0 } else { 1.0 })
            .collect();
        let (mut index, mut value) = (vec![0u8; g.pooled_len()], vec![0f32; g.pooled_len()]);
        train_forward(
            plane,
            &conv,
            g,
            &sign,
            Winners {
                index: &mut index,
                value: &mut value,
            },
        )
        .unwrap();
        let mut gp = noise(50 + k as u64, g.pooled_len());
        let mean = noise(51, g.c);
        let invstd: Vec<f32> = noise(52, g.c).iter().map(|v| 1.0 + v.abs()).collect();
        let mask = DropoutMask::new(0.2, 9);
        let sums = pooled_grad(&mut gp, &value, g.c, &mean, &invstd, &mask).unwrap();
        let gamma: Vec<f32> = sign.iter().map(|s| s * 0.8).collect();
        let bn = BnBackward::new(&gamma, &mean, &invstd, &sums, g.positions());
        let gi = GradIn {
            conv: &conv,
            g,
            bn: &bn,
            gp: &gp,
            index: &index,
        };
        let (kernel, bias, input) = grads(plane, &gi).unwrap();

        // Dense: the conv-output gradient, then conv 1's backward in f64.
        let mut dx = dense_conv(&plane, &conv, g);
        let _ = elu_with_stats(&mut dx, g).unwrap();
        let want_bias = conv_output_grad(&mut dx, &gp, &index, g, &bn).unwrap();
        let mut want_kernel = vec![0f64; 9 * g.c];
        let mut want_input = vec![0f64; g.n * g.f * g.t];
        for n in 0..g.n {
            for f in 0..g.f {
                for t in 0..g.t {
                    let zs = plane.taps(n, f, t);
                    for o in 0..g.c {
                        let d = dx[((n * g.f + f) * g.t + t) * g.c + o] as f64;
                        for tap in 0..9 {
                            want_kernel[tap * g.c + o] += d * zs[tap] as f64;
                            let (ff, tt) = (f + tap / 3, t + tap % 3);
                            if ff >= 1 && ff <= g.f && tt >= 1 && tt <= g.t {
                                want_input[(n * g.f + ff - 1) * g.t + tt - 1] +=
                                    d * conv.taps[tap * g.c + o] as f64;
                            }
                        }
                    }
                }
            }
        }
        let close = |a: f64, b: f64, scale: f64| (a - b).abs() <= 1e-5 * scale;
        let ks = want_kernel.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (a, b) in kernel.iter().zip(&want_kernel) {
            assert!(close(*a, *b, ks), "{g:?} kernel {a} vs {b}");
        }
        let bs = want_bias.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (a, b) in bias.iter().zip(&want_bias) {
            assert!(close(*a, *b, bs), "{g:?} bias {a} vs {b}");
        }
        let is = want_input.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (i, (a, b)) in input.iter().zip(&want_input).enumerate() {
            assert!(close(*a as f64, *b, is), "{g:?} input at {i}: {a} vs {b}");
        }
    }
}

#[test]
fn inference_equals_conv_then_dense_pool() {
    for (k, g) in geometries().into_iter().enumerate() {
        let z: Vec<f32> = noise(60 + k as u64, g.n * g.f * g.t)
            .iter()
            .map(|v| v * 2.0)
            .collect();
        let plane = Plane {
            z: &z,
            f: g.f,
            t: g.t,
        };
        let conv = conv_for(g, 70 + k as u64);
        let scale: Vec<f32> = noise(71, g.c).iter().map(|v| v * 2.0).collect();
        let aff = Affine::new(scale, noise(72, g.c));
        let mut y = vec![0f32; g.pooled_len()];
        eval(plane, &conv, g, &aff, &mut y).unwrap();
        let x = dense_conv(&plane, &conv, g);
        let mut want = vec![0f32; g.pooled_len()];
        pool_elu_affine(&x, g, &aff, &mut want).unwrap();
        assert_eq!(bits(&y), bits(&want), "{g:?}");
    }
}

#[test]
fn halo_covers_every_row_a_job_writes() {
    let g = Geometry {
        n: 3,
        f: 9,
        t: 4,
        c: 1,
        pf: 2,
        pt: 2,
    };
    // fo = 4 per sample; rows 0..9 per sample, row 8 only in the last pooled row.
    assert_eq!(halo_rows(g, 0, 1), 0..3);
    assert_eq!(halo_rows(g, 3, 1), 5..10);
    assert_eq!(halo_rows(g, 3, 2), 5..12);
    assert_eq!(halo_rows(g, 11, 1), 23..27);
    assert_eq!(halo_rows(g, 0, 12), 0..27);
}

#[test]
fn simd_block1_equals_portable_bit_for_bit() {
    for (k, g) in geometries().into_iter().enumerate() {
        let mut z: Vec<f32> = noise(80 + k as u64, g.n * g.f * g.t)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        z[5] = -60.0;
        let plane = Plane {
            z: &z,
            f: g.f,
            t: g.t,
        };
        let conv = conv_for(g, 90 + k as u64);
        let sign: Vec<f32> = (0..g.c)
            .map(|c| if c % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let forward = || {
            let (mut index, mut value) = (vec![0u8; g.pooled_len()], vec![0f32; g.pooled_len()]);
            let s = train_forward(
                plane,
                &conv,
                g,
                &sign,
                Winners {
                    index: &mut index,
                    value: &mut value,
                },
            )
            .unwrap();
            (
                index,
                bits(&value),
                s.a.iter()
                    .chain(&s.b)
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>(),
            )
        };
        let (a, b) = both(forward);
        assert_eq!(a, b, "forward {g:?}");
        let (index, _, _) = forward();
        let gp = noise(91, g.pooled_len());
        let bn = BnBackward {
            scale: noise(92, g.c),
            mean: noise(93, g.c),
            c0: noise(94, g.c).iter().map(|v| v * 0.01).collect(),
            c1: noise(95, g.c).iter().map(|v| v * 0.01).collect(),
        };
        let gi = GradIn {
            conv: &conv,
            g,
            bn: &bn,
            gp: &gp,
            index: &index,
        };
        let (a, b) = both(|| {
            let (kernel, bias, input) = grads(plane, &gi).unwrap();
            (
                kernel
                    .iter()
                    .chain(&bias)
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>(),
                bits(&input),
            )
        });
        assert_eq!(a, b, "backward {g:?}");
        let aff = Affine::new(noise(96, g.c), noise(97, g.c));
        let (a, b) = both(|| {
            let mut y = vec![0f32; g.pooled_len()];
            eval(plane, &conv, g, &aff, &mut y).unwrap();
            bits(&y)
        });
        assert_eq!(a, b, "inference {g:?}");
    }
}
