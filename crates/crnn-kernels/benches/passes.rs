//! Each fused pass on the paper's shapes (batch 16 of 94-frame slices; inference on a
//! micro-batch of 8), once per instruction set this CPU runs, on one thread (`Serial`): the
//! per-core speed of the AVX-512, AVX2+FMA and portable builds of the same code.
//! `cargo bench -p crnn-kernels`; `-- conv1` etc. to filter.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use crnn_kernels::{
    Affine, Conv1, DropoutMask, Geometry, GradIn, InputNorm, Isa, Plan, Plane, PooledOut, Winners,
    WinogradShape,
};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{bn_backward, noise, wide_noise};

fn geometry(n: usize, f: usize, t: usize, c: usize, pf: usize, pt: usize) -> Geometry {
    Geometry { n, f, t, c, pf, pt }
}

fn bench_isa(c: &mut Criterion, isa: Isa) {
    let plan = Plan::detect().with_isa(isa).expect("available");
    let mut group = c.benchmark_group(format!("passes_{isa}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    // Block 1: batch 16, 128 x 94, 64 channels, pool 2x2.
    let g1 = geometry(16, 128, 94, 64, 2, 2);
    let z: Vec<f32> = wide_noise(1, g1.n * g1.f * g1.t);
    let plane = Plane {
        z: &z,
        f: g1.f,
        t: g1.t,
    };
    let conv = Conv1 {
        c: 64,
        taps: noise(2, 9 * 64).iter().map(|v| v * 0.5).collect(),
        bias: noise(3, 64).iter().map(|v| v * 0.1).collect(),
    };
    let sign: Vec<f32> = (0..64)
        .map(|c| if c % 3 == 0 { -1.0 } else { 1.0 })
        .collect();
    let (mut index, mut value) = (vec![0u8; g1.pooled_len()], vec![0f32; g1.pooled_len()]);
    group.throughput(Throughput::Elements(g1.len() as u64));
    group.bench_function("conv1_train_forward_b16", |b| {
        b.iter(|| {
            plan.conv1_train_forward(
                plane,
                &conv,
                g1,
                &sign,
                Winners {
                    index: &mut index,
                    value: &mut value,
                },
            )
            .expect("pass")
        })
    });
    let gp = noise(4, g1.pooled_len());
    let bn1 = bn_backward(5, 64);
    let xhat = noise(21, z.len());
    let (gamma_in, beta_in) = (noise(22, g1.f), noise(23, g1.f));
    group.bench_function("conv1_grads_b16", |b| {
        b.iter(|| {
            plan.conv1_grads(
                plane,
                GradIn {
                    conv: &conv,
                    g: g1,
                    bn: &bn1,
                    gp: &gp,
                    index: &index,
                },
                InputNorm {
                    xhat: &xhat,
                    gamma: &gamma_in,
                    beta: &beta_in,
                },
            )
            .expect("pass")
        })
    });
    let g1e = Geometry { n: 8, ..g1 };
    let ze = &z[..g1e.n * g1e.f * g1e.t];
    let aff1 = Affine::new(noise(9, 64), noise(10, 64));
    let mut y1 = vec![0f32; g1e.pooled_len()];
    group.throughput(Throughput::Elements(g1e.len() as u64));
    group.bench_function("conv1_eval_b8", |b| {
        b.iter(|| {
            plan.conv1_eval(
                Plane {
                    z: ze,
                    f: g1e.f,
                    t: g1e.t,
                },
                &conv,
                g1e,
                &aff1,
                &mut y1,
            )
            .expect("pass")
        })
    });

    // Block 2's element-wise passes: batch 16, 64 x 47, 128 channels, pool 4x2.
    let g2 = geometry(16, 64, 47, 128, 4, 2);
    let x: Vec<f32> = noise(11, g2.len()).iter().map(|v| v * 3.0).collect();
    let mut e = x.clone();
    group.throughput(Throughput::Elements(g2.len() as u64));
    group.bench_function("elu_with_stats_block2_b16", |b| {
        b.iter(|| {
            e.copy_from_slice(&x);
            plan.elu_with_stats(&mut e, g2).expect("pass")
        })
    });
    let aff2 = Affine::new(noise(12, 128), noise(13, 128));
    let mask = DropoutMask::new(0.1, 5);
    let (mut y, mut index2, mut value2) = (
        vec![0f32; g2.pooled_len()],
        vec![0u8; g2.pooled_len()],
        vec![0f32; g2.pooled_len()],
    );
    group.bench_function("pool_train_block2_b16", |b| {
        b.iter(|| {
            plan.pool_train(
                &e,
                g2,
                &aff2,
                &mask,
                PooledOut {
                    y: &mut y,
                    index: &mut index2,
                    value: &mut value2,
                },
            )
            .expect("pass")
        })
    });
    let bn2 = bn_backward(14, 128);
    let gp2 = noise(18, g2.pooled_len());
    let mut d = e.clone();
    group.bench_function("conv_output_grad_block2_b16", |b| {
        b.iter(|| {
            d.copy_from_slice(&e);
            plan.conv_output_grad(&mut d, (&gp2, &index2), g2, &bn2)
                .expect("pass")
        })
    });
    let g2e = Geometry { n: 8, ..g2 };
    let mut yi = vec![0f32; g2e.pooled_len()];
    group.throughput(Throughput::Elements(g2e.len() as u64));
    group.bench_function("pool_elu_affine_block2_b8", |b| {
        b.iter(|| {
            plan.pool_elu_affine(black_box(&x[..g2e.len()]), g2e, &aff2, &mut yi)
                .expect("pass")
        })
    });
    let mut dp = gp2.clone();
    let (mean, invstd) = (noise(19, 128), noise(20, 128));
    group.throughput(Throughput::Elements(g2.pooled_len() as u64));
    group.bench_function("pooled_grad_block2_b16", |b| {
        b.iter(|| {
            dp.copy_from_slice(&gp2);
            plan.pooled_grad(&mut dp, &value2, 128, (&mean, &invstd), &mask)
                .expect("pass")
        })
    });

    // Winograd transforms of conv 2 (64 -> 128 channels on 64 x 47), batch 16, the whole
    // batch as one chunk of tile rows.
    let wg = WinogradShape {
        n: 16,
        h: 64,
        w: 47,
    };
    let rows = 0..wg.tile_rows();
    let x = noise(21, wg.len(64));
    let mut v = vec![0f32; wg.domain_len(&rows, 64)];
    group.throughput(Throughput::Elements(wg.len(64) as u64));
    group.bench_function("winograd_input_conv2_b16", |b| {
        b.iter(|| {
            plan.winograd_input(&x, wg, 64, rows.clone(), &mut v)
                .expect("pass")
        })
    });
    let m = noise(22, wg.domain_len(&rows, 128));
    let bias = noise(23, 128);
    let mut y = vec![0f32; wg.len(128)];
    group.throughput(Throughput::Elements(wg.len(128) as u64));
    group.bench_function("winograd_output_conv2_b16", |b| {
        b.iter(|| {
            plan.winograd_output(&m, wg, 128, Some(&bias), rows.clone(), &mut y)
                .expect("pass")
        })
    });
    let mut dm = vec![0f32; wg.domain_len(&rows, 128)];
    group.bench_function("winograd_output_grad_conv2_b16", |b| {
        b.iter(|| {
            plan.winograd_output_grad(&y, wg, 128, rows.clone(), &mut dm)
                .expect("pass")
        })
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    for isa in Isa::available().into_iter().rev() {
        bench_isa(&mut c, isa);
    }
    c.final_summary();
}
