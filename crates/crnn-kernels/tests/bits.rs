//! Every instruction set this CPU runs against the portable build, bit for bit, on every
//! pass (each run prints which sets it compared and which it skipped, and why); and the
//! results independent of the runner and its thread count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{affine_for, bits, bits64, noise, plans_to_compare};
use crnn_kernels::{
    DropoutMask, Geometry, GradIn, InputNorm, Plan, Plane, PooledOut, Serial, WinogradShape, elu,
};

/// Everything the dense passes produce on `g`, as bits.
fn dense_outputs(plan: &Plan, g: Geometry, k: u64) -> Vec<(String, Vec<u64>)> {
    let mut out = vec![];
    let mut rec = |name: &str, v: Vec<u64>| out.push((name.to_string(), v));
    let widen = |v: Vec<u32>| v.into_iter().map(u64::from).collect::<Vec<_>>();
    let mut x: Vec<f32> = noise(100 + k, g.len()).iter().map(|v| v * 20.0).collect();
    // A NaN, a value below the expm1 clamp, a tiny one, a negative zero.
    x[3] = f32::NAN;
    x[g.len() / 2] = -200.0;
    x[g.len() / 3] = -1e-30;
    x[g.len() / 4] = -0.0;
    let mut e = x.clone();
    let s = plan.elu_with_stats(&mut e, g).unwrap();
    rec("elu_with_stats values", widen(bits(&e)));
    rec("elu_with_stats sums", bits64(&[s.a, s.b].concat()));
    let e: Vec<f32> = x.iter().map(|&v| elu(v)).collect();
    let aff = affine_for(g, 200 + k);
    let c = g.c;
    let (mut y, mut index, mut value) = (
        vec![0f32; g.pooled_len()],
        vec![0u8; g.pooled_len()],
        vec![0f32; g.pooled_len()],
    );
    plan.pool_train(
        &e,
        g,
        &aff,
        &DropoutMask::new(0.3, 77),
        PooledOut {
            y: &mut y,
            index: &mut index,
            value: &mut value,
        },
    )
    .unwrap();
    rec("pool_train output", widen(bits(&y)));
    rec(
        "pool_train index",
        index.iter().map(|&i| u64::from(i)).collect(),
    );
    rec("pool_train value", widen(bits(&value)));
    let mut yi = vec![0f32; g.pooled_len()];
    plan.pool_elu_affine(&x, g, &aff, &mut yi).unwrap();
    rec("pool_elu_affine", widen(bits(&yi)));
    let gp = noise(300 + k, g.pooled_len());
    let bn = common::bn_backward(1, c);
    let mut d = e.clone();
    let bias = plan
        .conv_output_grad(&mut d, (&gp, &index), g, &bn)
        .unwrap();
    rec("conv_output_grad values", widen(bits(&d)));
    rec("conv_output_grad bias", bits64(&bias));
    let (mean, invstd) = (noise(5, c), noise(6, c));
    for rate in [0.0, 0.3] {
        let mask = DropoutMask::new(rate, 8);
        let mut d = gp.clone();
        let s = plan
            .pooled_grad(&mut d, &value, c, (&mean, &invstd), &mask)
            .unwrap();
        rec(&format!("pooled_grad {rate} values"), widen(bits(&d)));
        rec(
            &format!("pooled_grad {rate} sums"),
            bits64(&[s.a, s.b].concat()),
        );
        let mut y = vec![0f32; value.len()];
        plan.pooled_affine_dropout(&value, c, &aff, &mask, &mut y)
            .unwrap();
        rec(&format!("pooled_affine_dropout {rate}"), widen(bits(&y)));
    }
    out
}

/// Everything the block-1 passes produce on `g`, as bits.
fn conv1_outputs(plan: &Plan, g: Geometry, k: u64) -> Vec<(String, Vec<u64>)> {
    let mut out = vec![];
    let widen = |v: Vec<u32>| v.into_iter().map(u64::from).collect::<Vec<_>>();
    let mut z: Vec<f32> = noise(80 + k, g.n * g.f * g.t)
        .iter()
        .map(|v| v * 3.0)
        .collect();
    z[5] = -60.0;
    let plane = Plane {
        z: &z,
        f: g.f,
        t: g.t,
    };
    let conv = common::conv_for(g.c, 90 + k);
    let sign: Vec<f32> = (0..g.c)
        .map(|c| if c % 3 == 0 { -1.0 } else { 1.0 })
        .collect();
    let (index, value, s) = common::block1_forward(plan, plane, &conv, g, &sign);
    out.push((
        "forward index".into(),
        index.iter().map(|&i| u64::from(i)).collect(),
    ));
    out.push(("forward value".into(), widen(bits(&value))));
    out.push(("forward sums".into(), bits64(&[s.a, s.b].concat())));
    let gp = noise(92, g.pooled_len());
    let bn = common::bn_backward(93, g.c);
    let xhat = noise(98 + k, z.len());
    let (gamma_in, beta_in) = (noise(99, g.f), noise(100, g.f));
    let grads = plan
        .conv1_grads(
            plane,
            GradIn {
                conv: &conv,
                g,
                bn: &bn,
                gp: &gp,
                index: &index,
            },
            InputNorm {
                xhat: &xhat,
                gamma: &gamma_in,
                beta: &beta_in,
            },
        )
        .unwrap();
    out.push(("backward kernel".into(), bits64(&grads.kernel)));
    out.push(("backward bias".into(), bits64(&grads.bias)));
    out.push(("backward input gamma".into(), bits64(&grads.in_gamma)));
    out.push(("backward input beta".into(), bits64(&grads.in_beta)));
    let aff = affine_for(g, 97 + k);
    let mut y = vec![0f32; g.pooled_len()];
    plan.conv1_eval(plane, &conv, g, &aff, &mut y).unwrap();
    out.push(("inference".into(), widen(bits(&y))));
    out
}

/// Everything the Winograd transforms produce, as bits: a batch of odd-sized images with a
/// ragged channel vector, transformed in two chunks of tile rows.
fn winograd_outputs(plan: &Plan, c: usize, k: u64) -> Vec<(String, Vec<u64>)> {
    let widen = |v: Vec<u32>| v.into_iter().map(u64::from).collect::<Vec<_>>();
    let g = WinogradShape { n: 2, h: 7, w: 9 };
    let x = noise(400 + k, g.len(c));
    let bias = noise(401 + k, c);
    let mut out = vec![];
    let mut y = vec![0f32; g.len(c)];
    for rows in [0..3, 3..g.tile_rows()] {
        let mut v = vec![0f32; g.domain_len(&rows, c)];
        plan.winograd_input(&x, g, c, rows.clone(), &mut v).unwrap();
        out.push((format!("winograd_input {rows:?}"), widen(bits(&v))));
        plan.winograd_output_grad(&x, g, c, rows.clone(), &mut v)
            .unwrap();
        out.push((format!("winograd_output_grad {rows:?}"), widen(bits(&v))));
        plan.winograd_output(&v, g, c, Some(&bias), rows, &mut y)
            .unwrap();
    }
    out.push(("winograd_output".into(), widen(bits(&y))));
    out
}

#[test]
fn every_instruction_set_equals_the_portable_build_bit_for_bit_winograd() {
    let (portable, others) = plans_to_compare("winograd transforms");
    for (k, c) in [5usize, 16, 64, 70].into_iter().enumerate() {
        let want = winograd_outputs(&portable, c, k as u64);
        for plan in &others {
            let got = winograd_outputs(plan, c, k as u64);
            assert_same(
                &format!("{} vs portable, {c} channels", plan.isa()),
                &got,
                &want,
            );
        }
    }
}

fn dense_shapes() -> Vec<Geometry> {
    let mut gs = common::dense_geometries();
    let g = |n, f, t, c, pf, pt| Geometry { n, f, t, c, pf, pt };
    // The paper's block 3 (128 channels: two full groups) and a ragged group of 70.
    gs.push(g(2, 16, 11, 128, 4, 2));
    gs.push(g(2, 8, 9, 70, 2, 2));
    gs
}

fn assert_same(what: &str, a: &[(String, Vec<u64>)], b: &[(String, Vec<u64>)]) {
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let first = x.iter().zip(y).position(|(p, q)| p != q);
        assert!(
            first.is_none() && x.len() == y.len(),
            "{what}, {name}: first difference at {first:?}"
        );
    }
}

#[test]
fn every_instruction_set_equals_the_portable_build_bit_for_bit_dense() {
    let (portable, others) = plans_to_compare("dense passes");
    for (k, g) in dense_shapes().into_iter().enumerate() {
        let want = dense_outputs(&portable, g, k as u64);
        for plan in &others {
            let got = dense_outputs(plan, g, k as u64);
            assert_same(&format!("{} vs portable on {g:?}", plan.isa()), &got, &want);
        }
    }
}

#[test]
fn every_instruction_set_equals_the_portable_build_bit_for_bit_block1() {
    let (portable, others) = plans_to_compare("block-1 passes");
    for (k, g) in common::conv1_geometries().into_iter().enumerate() {
        let want = conv1_outputs(&portable, g, k as u64);
        for plan in &others {
            let got = conv1_outputs(plan, g, k as u64);
            assert_same(&format!("{} vs portable on {g:?}", plan.isa()), &got, &want);
        }
    }
}

#[test]
fn results_do_not_depend_on_the_runner_or_its_threads() {
    let base = common::plan(crnn_kernels::Isa::best());
    let g = Geometry {
        n: 3,
        f: 16,
        t: 23,
        c: 64,
        pf: 2,
        pt: 2,
    };
    let want_dense = dense_outputs(&base, g, 1);
    let want_conv1 = conv1_outputs(&base, g, 1);
    for threads in [1, 3] {
        let plan = base
            .clone()
            .with_parallel(Arc::new(common::Rayon::new(threads)));
        assert_same("rayon", &dense_outputs(&plan, g, 1), &want_dense);
        assert_same("rayon", &conv1_outputs(&plan, g, 1), &want_conv1);
    }
    let serial = base.clone().with_parallel(Arc::new(Serial));
    assert_same("serial", &dense_outputs(&serial, g, 1), &want_dense);
    assert_same("serial", &conv1_outputs(&serial, g, 1), &want_conv1);
    let want_winograd = winograd_outputs(&base, 64, 1);
    for threads in [1, 3] {
        let plan = base
            .clone()
            .with_parallel(Arc::new(common::Rayon::new(threads)));
        assert_same("rayon", &winograd_outputs(&plan, 64, 1), &want_winograd);
    }
}
