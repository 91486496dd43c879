//! Block 1 fused with its convolution against the dense path: conv 1 computed into a full
//! tensor, then the already-tested dense passes, then conv 1's backward in f64.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bits, conv_for, conv1_geometries as geometries, noise, wide_noise};
use crnn_kernels::{
    Affine, BnBackward, Conv1, DropoutMask, GradIn, InputNorm, Isa, Plan, Plane, PooledOut,
};

fn best() -> Plan {
    common::plan(Isa::best())
}

/// Conv 1 into a dense NHWC tensor, with the passes' arithmetic (bias, then one fused
/// multiply-add per tap in tap order), so equal bits.
fn dense_conv(plane: &Plane<'_>, conv: &Conv1, g: crnn_kernels::Geometry) -> Vec<f32> {
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
fn kernel_layout_round_trips() {
    let kernel: Vec<f32> = (0..27).map(|v| v as f32).collect();
    let conv = Conv1::from_oihw(&kernel, &[0.0, 1.0, 2.0]).unwrap();
    // taps[(kh * 3 + kw) * c + o] = kernel[o, 0, kh, kw]
    assert_eq!(conv.taps[4 * 3 + 2], kernel[2 * 9 + 4]);
    let back = conv.taps_to_oihw(&conv.taps.iter().map(|&v| v as f64).collect::<Vec<_>>());
    assert_eq!(back, kernel);
    assert!(Conv1::from_oihw(&kernel[1..], &[0.0; 3]).is_err());
}

#[test]
fn training_forward_equals_conv_then_dense_passes() {
    let plan = best();
    for (k, g) in geometries().into_iter().enumerate() {
        let z: Vec<f32> = wide_noise(10 + k as u64, g.n * g.f * g.t);
        let plane = Plane {
            z: &z,
            f: g.f,
            t: g.t,
        };
        let conv = conv_for(g.c, 20 + k as u64);
        let sign: Vec<f32> = (0..g.c)
            .map(|c| if c % 3 == 1 { -1.0 } else { 1.0 })
            .collect();
        let (index, value, sums) = common::block1_forward(&plan, plane, &conv, g, &sign);

        let mut e = dense_conv(&plane, &conv, g);
        let want = plan.elu_with_stats(&mut e, g).unwrap();
        // Both sum in f32 runs of 16 positions, in different position orders: equal to the
        // rounding of the runs, stated as 1e-6 of the sum of magnitudes.
        let mut magnitude = vec![0f64; g.c];
        for (i, v) in e.iter().enumerate() {
            magnitude[i % g.c] += f64::from(v.abs()) + f64::from(v * v);
        }
        for (c, m) in magnitude.iter().enumerate() {
            let tol = 1e-6 * (1.0 + m);
            assert!((sums.a[c] - want.a[c]).abs() < tol, "{g:?}");
            assert!((sums.b[c] - want.b[c]).abs() < tol, "{g:?}");
        }
        // Pool with scale = sign, no shift, no dropout: the dense pass's winners.
        let aff = Affine::new(sign.clone(), vec![0.0; g.c]);
        let (mut y, mut index_d, mut value_d) = (
            vec![0f32; g.pooled_len()],
            vec![0u8; g.pooled_len()],
            vec![0f32; g.pooled_len()],
        );
        plan.pool_train(
            &e,
            g,
            &aff,
            &DropoutMask::none(),
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

/// An input BatchNorm (per-bin gamma and beta) and its normalised input `xhat`, and the
/// conv-1 input `z = gamma * xhat + beta` it gives.
fn normalised_input(
    g: crnn_kernels::Geometry,
    seed: u64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let xhat: Vec<f32> = wide_noise(seed, g.n * g.f * g.t);
    let gamma: Vec<f32> = noise(seed + 1, g.f).iter().map(|v| 0.5 + v.abs()).collect();
    let beta = noise(seed + 2, g.f);
    let z = xhat
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = (i / g.t) % g.f;
            gamma[f].mul_add(x, beta[f])
        })
        .collect();
    (xhat, gamma, beta, z)
}

#[test]
fn training_backward_equals_dense_passes_and_conv_backward() {
    let plan = best();
    let mut geometries = geometries();
    // One frame and two frames: the column-sum edge cases.
    let g = |n, f, t, c, pf, pt| crnn_kernels::Geometry { n, f, t, c, pf, pt };
    geometries.push(g(2, 6, 2, 16, 2, 2));
    geometries.push(g(2, 6, 1, 8, 2, 1));
    for (k, g) in geometries.into_iter().enumerate() {
        let (xhat, gamma_in, beta_in, z) = normalised_input(g, 30 + k as u64);
        let plane = Plane {
            z: &z,
            f: g.f,
            t: g.t,
        };
        let conv = conv_for(g.c, 40 + k as u64);
        let sign: Vec<f32> = (0..g.c)
            .map(|c| if c % 4 == 2 { -1.0 } else { 1.0 })
            .collect();
        let (index, value, _) = common::block1_forward(&plan, plane, &conv, g, &sign);
        let mut gp = noise(50 + k as u64, g.pooled_len());
        let mean = noise(51, g.c);
        let invstd: Vec<f32> = noise(52, g.c).iter().map(|v| 1.0 + v.abs()).collect();
        let mask = DropoutMask::new(0.2, 9);
        let sums = plan
            .pooled_grad(&mut gp, &value, g.c, (&mean, &invstd), &mask)
            .unwrap();
        let gamma: Vec<f32> = sign.iter().map(|s| s * 0.8).collect();
        let bn = BnBackward::new(&gamma, &mean, &invstd, &sums, g.positions());
        let gi = GradIn {
            conv: &conv,
            g,
            bn: &bn,
            gp: &gp,
            index: &index,
        };
        let norm = InputNorm {
            xhat: &xhat,
            gamma: &gamma_in,
            beta: &beta_in,
        };
        let got = plan.conv1_grads(plane, gi, norm).unwrap();

        // Dense: the conv-output gradient, then conv 1's backward in f64, then the input
        // BatchNorm's gradients from the input gradient.
        let mut dx = dense_conv(&plane, &conv, g);
        let _ = plan.elu_with_stats(&mut dx, g).unwrap();
        let want_bias = plan
            .conv_output_grad(&mut dx, (&gp, &index), g, &bn)
            .unwrap();
        let mut want_kernel = vec![0f64; 9 * g.c];
        let mut dz = vec![0f64; g.n * g.f * g.t];
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
                                dz[(n * g.f + ff - 1) * g.t + tt - 1] +=
                                    d * conv.taps[tap * g.c + o] as f64;
                            }
                        }
                    }
                }
            }
        }
        let (mut want_gamma, mut want_beta) = (vec![0f64; g.f], vec![0f64; g.f]);
        for (i, d) in dz.iter().enumerate() {
            let f = (i / g.t) % g.f;
            want_gamma[f] += d * xhat[i] as f64;
            want_beta[f] += d;
        }
        let close = |a: &[f64], b: &[f64], what: &str| {
            let scale = b.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-5 * scale,
                    "{g:?} {what}[{i}]: {x} vs {y}"
                );
            }
        };
        close(&got.kernel, &want_kernel, "kernel");
        close(&got.bias, &want_bias, "bias");
        close(&got.in_gamma, &want_gamma, "input gamma");
        close(&got.in_beta, &want_beta, "input beta");
    }
}

#[test]
fn inference_equals_conv_then_dense_pool() {
    let plan = best();
    for (k, g) in geometries().into_iter().enumerate() {
        let z: Vec<f32> = wide_noise(60 + k as u64, g.n * g.f * g.t);
        let plane = Plane {
            z: &z,
            f: g.f,
            t: g.t,
        };
        let conv = conv_for(g.c, 70 + k as u64);
        let scale: Vec<f32> = wide_noise(71, g.c);
        let aff = Affine::new(scale, noise(72, g.c));
        let mut y = vec![0f32; g.pooled_len()];
        plan.conv1_eval(plane, &conv, g, &aff, &mut y).unwrap();
        let x = dense_conv(&plane, &conv, g);
        let mut want = vec![0f32; g.pooled_len()];
        plan.pool_elu_affine(&x, g, &aff, &mut want).unwrap();
        assert_eq!(bits(&y), bits(&want), "{g:?}");
    }
}

#[test]
fn a_plane_that_does_not_fit_is_an_error() {
    let plan = best();
    let g = geometries()[0];
    let z = vec![0f32; g.n * g.f * g.t];
    let plane = Plane {
        z: &z,
        f: g.f + 1,
        t: g.t,
    };
    let conv = conv_for(g.c, 1);
    let aff = Affine::new(vec![1.0; g.c], vec![0.0; g.c]);
    let err = plan
        .conv1_eval(plane, &conv, g, &aff, &mut vec![0f32; g.pooled_len()])
        .unwrap_err();
    assert!(err.to_string().contains("block 1"), "{err}");
}
