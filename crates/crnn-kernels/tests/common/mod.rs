//! Helpers shared by the integration tests: test data, a rayon runner, and the plans of every
//! instruction set this CPU runs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;

use crnn_kernels::{
    Affine, BnBackward, ChannelSums, Conv1, Geometry, Isa, Parallel, Plan, Plane, Winners,
};

/// A deterministic pseudo-random sequence in [-1, 1).
pub fn noise(seed: u64, len: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// [`noise`] doubled: uniform in [-2, 2) (the doubling is exact, so the bits are noise's).
pub fn wide_noise(seed: u64, len: usize) -> Vec<f32> {
    noise(seed, len).iter().map(|v| v * 2.0).collect()
}

/// BatchNorm backward coefficients from `noise(seed .. seed + 4)`, the two offsets scaled to
/// 1 %.
pub fn bn_backward(seed: u64, c: usize) -> BnBackward {
    BnBackward {
        scale: noise(seed, c),
        mean: noise(seed + 1, c),
        c0: noise(seed + 2, c).iter().map(|v| v * 0.01).collect(),
        c1: noise(seed + 3, c).iter().map(|v| v * 0.01).collect(),
    }
}

/// A conv 1 of `c` channels: taps from `noise(seed)` x 0.7, bias from `noise(seed + 1)` x 0.3.
pub fn conv_for(c: usize, seed: u64) -> Conv1 {
    Conv1 {
        c,
        taps: noise(seed, 9 * c).iter().map(|v| v * 0.7).collect(),
        bias: noise(seed + 1, c).iter().map(|v| v * 0.3).collect(),
    }
}

/// Block 1's training forward: the winners' window indices and values, and the sums.
pub fn block1_forward(
    plan: &Plan,
    plane: Plane<'_>,
    conv: &Conv1,
    g: Geometry,
    sign: &[f32],
) -> (Vec<u8>, Vec<f32>, ChannelSums) {
    let (mut index, mut value) = (vec![0u8; g.pooled_len()], vec![0f32; g.pooled_len()]);
    let sums = plan
        .conv1_train_forward(
            plane,
            conv,
            g,
            sign,
            Winners {
                index: &mut index,
                value: &mut value,
            },
        )
        .unwrap();
    (index, value, sums)
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

pub fn bits64(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Jobs on a rayon pool of `threads` threads.
pub struct Rayon(pub rayon::ThreadPool);

impl Rayon {
    pub fn new(threads: usize) -> Self {
        Self(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap(),
        )
    }
}

impl Parallel for Rayon {
    fn for_each(&self, n: usize, job: &(dyn Fn(usize) + Sync)) -> Result<(), String> {
        use rayon::prelude::*;
        self.0.install(|| (0..n).into_par_iter().for_each(job));
        Ok(())
    }
}

/// The plan of `isa` on 2 rayon threads, 16 jobs.
pub fn plan(isa: Isa) -> Plan {
    Plan::detect()
        .with_isa(isa)
        .unwrap()
        .with_jobs(16)
        .unwrap()
        .with_parallel(Arc::new(Rayon::new(2)))
}

/// The portable plan, and one plan per other instruction set this CPU runs. Writes to the
/// terminal (not the captured test output) which were compared and which were skipped, and
/// why, so a run on a CPU without AVX-512 says so.
pub fn plans_to_compare(test: &str) -> (Plan, Vec<Plan>) {
    let (mut ran, mut skipped) = (vec![], vec![]);
    for isa in Isa::ALL.into_iter().filter(|&i| i != Isa::Portable) {
        match isa.missing() {
            None => ran.push(isa),
            Some(why) => skipped.push(format!("{isa} ({why})")),
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "{test}: compared {} against portable bit for bit; skipped: {}",
        if ran.is_empty() {
            "nothing".to_string()
        } else {
            ran.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
        },
        if skipped.is_empty() {
            "none".to_string()
        } else {
            skipped.join("; ")
        }
    );
    (plan(Isa::Portable), ran.into_iter().map(plan).collect())
}

/// Block geometries whose sizes do not divide by the pools, with partial channel groups.
pub fn dense_geometries() -> Vec<Geometry> {
    let g = |n, f, t, c, pf, pt| Geometry { n, f, t, c, pf, pt };
    vec![
        g(3, 8, 10, 5, 2, 2),
        g(2, 9, 7, 16, 4, 2),
        g(1, 4, 5, 33, 4, 2),
        g(4, 16, 23, 8, 4, 2),
    ]
}

/// Block-1 geometries.
pub fn conv1_geometries() -> Vec<Geometry> {
    let g = |n, f, t, c, pf, pt| Geometry { n, f, t, c, pf, pt };
    vec![
        g(2, 8, 10, 16, 2, 2),
        g(3, 9, 7, 5, 2, 2),
        g(2, 12, 11, 70, 4, 2),
        g(1, 16, 23, 64, 2, 2),
    ]
}

pub fn at(g: Geometry, n: usize, f: usize, t: usize, c: usize) -> usize {
    ((n * g.f + f) * g.t + t) * g.c + c
}

pub fn pooled_at(g: Geometry, n: usize, fo: usize, to: usize, c: usize) -> usize {
    ((n * g.fo() + fo) * g.to() + to) * g.c + c
}

/// Mixed signs, including a zero scale.
pub fn affine_for(g: Geometry, seed: u64) -> Affine {
    let s = noise(seed, 2 * g.c);
    let mut scale: Vec<f32> = s[..g.c].iter().map(|v| v * 2.0).collect();
    scale[0] = 0.0;
    if g.c > 1 {
        scale[1] = -scale[1].abs() - 0.1;
    }
    Affine::new(scale, s[g.c..].to_vec())
}
