//! CRNN2D throughput in slices/s: a training step (batch 16, forward + backward + Keras Adam)
//! and inference (batch 256, eval mode, no grad) for 94-frame (3 s) slices, on the CPU with
//! 2 libtorch threads (and on CUDA when present). The Keras/TF and PyTorch peers are
//! `benches/peers/` at the workspace root; `scripts/bench-crnn.sh` runs all of them in one go.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use crnn::{Crnn2d, CrnnConfig, KerasAdam, TrainConfig, keras_categorical_crossentropy};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor, nn};

fn bench_device(c: &mut Criterion, device: Device, frames: i64) {
    tch::manual_seed(0);
    let cfg = CrnnConfig::paper(20, frames as usize);
    let vs = nn::VarStore::new(device);
    let mut model = Crnn2d::new(&vs.root(), &cfg).expect("paper config");
    model.set_channels_last(device == Device::Cpu);
    let mut adam = KerasAdam::new(&vs, &TrainConfig::default());
    let x = Tensor::randn([16, 1, 128, frames], (Kind::Float, device)) * 10.0 - 40.0;
    let y = Tensor::randint(20, [16], (Kind::Int64, device));
    let mut g = c.benchmark_group(format!("crnn_{frames}_frames"));
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(16));
    g.bench_function(
        BenchmarkId::new("train_step_b16", format!("{device:?}")),
        |b| {
            b.iter(|| {
                let probs = model.forward_t(&x, true).softmax(-1, Kind::Float);
                let loss = keras_categorical_crossentropy(&probs, &y, 20);
                adam.backward_step(&loss);
                loss.double_value(&[])
            })
        },
    );
    let xi = Tensor::randn([256, 1, 128, frames], (Kind::Float, device)) * 10.0 - 40.0;
    g.throughput(Throughput::Elements(256));
    g.bench_function(
        BenchmarkId::new("inference_b256", format!("{device:?}")),
        |b| {
            b.iter(|| {
                tch::no_grad(|| {
                    model
                        .forward_t(&xi, false)
                        .softmax(-1, Kind::Float)
                        .double_value(&[0, 0])
                })
            })
        },
    );
    g.finish();
}

fn main() {
    crnn::recycle_large_allocations();
    tch::set_num_threads(2);
    let mut c = Criterion::default().configure_from_args();
    bench_device(&mut c, Device::Cpu, 94);
    if tch::Cuda::is_available() {
        bench_device(&mut c, Device::Cuda(0), 94);
    }
    c.final_summary();
}
