//! CRNN2D throughput in slices/s: a training step (batch 16, forward + backward + Keras Adam,
//! [`crnn::train_step`]) and inference (batch 256, eval mode, no grad) for 94-frame (3 s)
//! slices, on the CPU with 2 libtorch threads, with the fused CPU kernels (`cpu_fused-<isa>`:
//! every instruction set this CPU has, the best first) and with one libtorch op per layer
//! (`cpu_libtorch-ops`, the reference path), and the best instruction set with oneDNN's direct
//! convolutions instead of Winograd (`cpu_fused-<isa>-direct`); and on CUDA when present. The Keras/TF and
//! PyTorch peers are `benches/peers/` at the workspace root; `scripts/bench-crnn.sh` runs
//! this bench and them in one go.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use crnn::crnn_kernels::Isa;
use crnn::{ConvAlgorithm, ConvBackend, Crnn2d, CrnnConfig, KerasAdam, TrainConfig, train_step};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor, nn};

fn bench_device(
    c: &mut Criterion,
    device: Device,
    (backend, algorithm): (ConvBackend, ConvAlgorithm),
    frames: i64,
) {
    tch::manual_seed(0);
    let cfg = CrnnConfig::paper(20, frames as usize);
    let vs = nn::VarStore::new(device);
    let mut model = Crnn2d::new(&vs.root(), &cfg).expect("paper config");
    model.set_backend(backend).expect("backend available");
    model.set_conv_algorithm(algorithm);
    let mut adam = KerasAdam::new(&vs, &TrainConfig::default());
    let x = Tensor::randn([16, 1, 128, frames], (Kind::Float, device)) * 10.0 - 40.0;
    let y = Tensor::randint(20, [16], (Kind::Int64, device));
    let path = match device {
        Device::Cpu if algorithm == ConvAlgorithm::Direct => format!("cpu_{backend}-direct"),
        Device::Cpu => format!("cpu_{backend}"),
        d => format!("{d:?}"),
    };
    let mut g = c.benchmark_group(format!("crnn_{frames}_frames"));
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(16));
    let mut key = 0u64;
    g.bench_function(BenchmarkId::new("train_step_b16", &path), |b| {
        b.iter(|| {
            key += 1;
            train_step(&model, &mut adam, &x, &y, key)
                .expect("train step")
                .loss
        })
    });
    let xi = Tensor::randn([256, 1, 128, frames], (Kind::Float, device)) * 10.0 - 40.0;
    g.throughput(Throughput::Elements(256));
    g.bench_function(BenchmarkId::new("inference_b256", &path), |b| {
        b.iter(|| {
            tch::no_grad(|| {
                model
                    .forward_t(&xi, false)
                    .softmax(-1, Kind::Float)
                    .double_value(&[0, 0])
            })
        })
    });
    g.finish();
}

fn main() {
    crnn::recycle_large_allocations();
    tch::set_num_threads(2);
    let mut c = Criterion::default().configure_from_args();
    // `CRNN_BENCH_ISAS=avx2` (comma-separated) limits the fused runs.
    let only: Option<Vec<Isa>> = std::env::var("CRNN_BENCH_ISAS").ok().map(|v| {
        v.split(',')
            .filter_map(|n| Isa::from_name(n).ok())
            .collect()
    });
    let winograd = ConvAlgorithm::Winograd;
    let isas: Vec<Isa> = Isa::available()
        .into_iter()
        .rev()
        .filter(|&isa| only.as_ref().is_none_or(|o| o.contains(&isa)) && isa != Isa::Portable)
        .collect();
    for &isa in &isas {
        bench_device(
            &mut c,
            Device::Cpu,
            (ConvBackend::FusedCpu(isa), winograd),
            94,
        );
    }
    // The fast path's convolutions against oneDNN's direct ones, on the best instruction set.
    if let Some(&isa) = isas.first() {
        let direct = (ConvBackend::FusedCpu(isa), ConvAlgorithm::Direct);
        bench_device(&mut c, Device::Cpu, direct, 94);
    }
    bench_device(
        &mut c,
        Device::Cpu,
        (ConvBackend::LibtorchOps, winograd),
        94,
    );
    if tch::Cuda::is_available() {
        bench_device(
            &mut c,
            Device::Cuda(0),
            (ConvBackend::LibtorchOps, winograd),
            94,
        );
    }
    c.final_summary();
}
