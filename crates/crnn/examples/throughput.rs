//! Quick throughput check outside criterion:
//! `cargo run --release -p crnn --example throughput -- [--model crnn2d|crnn2d-larger|crnn2d-vgg|crnn1d|rnn|crnn1d-bn|rnn-bn] [--frames 94] [--threads 2] [--no-malloc] [--nchw] [--device cuda] [--only infer|train] [--reps 3] [--libtorch-ops] [--isa avx512|avx2|portable] [--conv winograd|direct] [--epoch-slices 10400]`
//!
//! Besides slices/s it prints the seconds of one training epoch of `--epoch-slices` slices
//! (default 10,400: the default corpus's song split at 3 s) at the measured speed, which is
//! how the GPU-sized models (CRNN2DLarger, CRNN2DVGG) are sized on a CPU without training
//! them. Only CRNN2D has fused CPU kernels; the others run as libtorch ops.
//!
//! The backend is the device's default with the instruction set that `CRNN_KERNELS_ISA`
//! names (`ConvBackend::choose(device, Isa::from_env()?)`) and the conv algorithm that
//! `CRNN_CONV_ALGORITHM` names; `--libtorch-ops`, `--isa` and `--conv` override them. It is printed to stderr, the
//! numbers to stdout (one line, which scripts read).
use std::time::Instant;

use crnn::{
    Architecture, ConvBackend, Crnn2d, KerasAdam, ModelChoice, Network, NetworkSpec, TrainConfig,
    train_step,
};
use tch::{Device, Kind, Tensor, nn};

fn arg(name: &str) -> Option<String> {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flag = |n: &str| std::env::args().any(|a| a == n);
    if !flag("--no-malloc") {
        crnn::recycle_large_allocations();
    }
    let frames: i64 = arg("--frames").map_or(Ok(94), |s| s.parse())?;
    let threads: i32 = arg("--threads").map_or(Ok(2), |s| s.parse())?;
    let device = if arg("--device").as_deref() == Some("cuda") {
        Device::Cuda(0)
    } else {
        Device::Cpu
    };
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let choice = ModelChoice::from_name(arg("--model").as_deref().unwrap_or("crnn2d"))?;
    let arch = choice.architecture;
    let config = choice.config(20, frames as usize);
    let mut model: Box<dyn Network> = if arch == Architecture::Crnn2d {
        let mut m = Crnn2d::new(&vs.root(), &config)?;
        m.set_channels_last(!flag("--nchw") && device == Device::Cpu);
        Box::new(m)
    } else {
        config.build(&vs.root())?
    };
    let epoch_slices: f64 = arg("--epoch-slices").map_or(Ok(10_400.0), |s| s.parse())?;
    if !arch.has_fused_kernels() || flag("--libtorch-ops") {
        model.set_backend(ConvBackend::LibtorchOps)?;
    } else if let Some(isa) = arg("--isa") {
        model.set_backend(ConvBackend::FusedCpu(isa.parse()?))?;
    } else {
        model.set_backend(ConvBackend::choose(
            device,
            crnn::crnn_kernels::Isa::from_env()?,
        )?)?;
    }
    model.set_conv_algorithm(match arg("--conv") {
        Some(conv) => crnn::ConvAlgorithm::from_name(&conv)?,
        None => crnn::ConvAlgorithm::from_env()?,
    });
    let (params, all) = crnn::parameter_counts(&vs);
    eprintln!(
        "{choice} ({params} trained of {all} parameters): backend {}{}, CPU kernels available: {:?}",
        model.backend(),
        match model.as_crnn2d() {
            Some(m) => format!(" ({} 3x3 convolutions)", m.conv_algorithm()),
            None => " (only crnn2d has fused CPU kernels)".to_string(),
        },
        crnn::crnn_kernels::Isa::available()
    );
    let mut adam = KerasAdam::new(&vs, &TrainConfig::default());
    let x = Tensor::randn([16, 1, 128, frames], (Kind::Float, device)) * 10.0 - 40.0;
    let y = Tensor::randint(20, [16], (Kind::Int64, device));
    let xi = Tensor::randn([256, 1, 128, frames], (Kind::Float, device)) * 10.0 - 40.0;
    let infer = |reps: usize| -> Result<f64, crnn::Error> {
        let t = Instant::now();
        for _ in 0..reps {
            tch::no_grad(|| {
                model
                    .f_probabilities_t(&xi, false)
                    .map(|p| p.double_value(&[0, 0]))
            })?;
        }
        Ok((256 * reps) as f64 / t.elapsed().as_secs_f64())
    };
    let only = arg("--only").unwrap_or_default();
    let reps: usize = arg("--reps").map_or(Ok(3), |s| s.parse())?;
    if only == "infer" {
        infer(1)?;
        println!(
            "{choice}, {frames} frames, {threads} threads, {device:?}: inference {:.1} slices/s",
            infer(reps)?
        );
        return Ok(());
    }
    let fresh = if only == "train" {
        0.0
    } else {
        infer(1)?;
        infer(3)?
    };
    let mut key = 0u64;
    let mut step = || -> Result<f64, crnn::Error> {
        key += 1;
        Ok(train_step(&*model, &mut adam, &x, &y, key)?.loss)
    };
    for _ in 0..3 {
        step()?;
    }
    let train_reps = if only == "train" { 10 * reps } else { 30 };
    let t = Instant::now();
    for _ in 0..train_reps {
        step()?;
    }
    let train = 16.0 * train_reps as f64 / t.elapsed().as_secs_f64();
    if only == "train" {
        println!(
            "{choice}, {frames} frames, {threads} threads, {device:?}: train {train:.1} slices/s, {:.0} s per epoch of {epoch_slices} slices",
            epoch_slices / train
        );
        return Ok(());
    }
    let after = infer(3)?;
    println!(
        "{choice}, {frames} frames, {threads} threads, {device:?}: train {train:.1} slices/s ({:.0} s per epoch of {epoch_slices} slices), inference {fresh:.1} (fresh) / {after:.1} (after training) slices/s",
        epoch_slices / train
    );
    Ok(())
}
