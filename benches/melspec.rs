//! Log-mel spectrogram throughput, reported in audio-seconds per second (criterion's
//! "elements"), on one thread and on all, for both FFT precisions, plus the libtorch path on
//! CPU (and CUDA when present). The librosa peer on the same signal:
//! `benches/librosa_melspec_timing.py`; `scripts/bench-melspec.sh` runs both in one go.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use melspec::torch::TorchMelSpectrogram;
use melspec::{FftPrecision, MelConfig, MelSpectrogram};

#[path = "signal.rs"]
mod signal;

const SECONDS: usize = 600;

fn cpu(c: &mut Criterion) {
    let y = signal::bench_noise(SECONDS * 16_000);
    let mut g = c.benchmark_group("melspec_db_600s");
    g.throughput(Throughput::Elements(SECONDS as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    let all = rayon::current_num_threads();
    for precision in [FftPrecision::F64, FftPrecision::F32] {
        let plan = MelSpectrogram::new(MelConfig {
            fft_precision: precision,
            ..MelConfig::default()
        })
        .expect("paper config is valid");
        for threads in [1, all] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            let id = BenchmarkId::new(format!("cpu_{precision:?}"), format!("{threads}_threads"));
            g.bench_with_input(id, &y, |b, y| {
                b.iter(|| pool.install(|| plan.db(y).expect("db")))
            });
        }
    }
    let mut devices = vec![tch::Device::Cpu];
    if tch::Cuda::is_available() {
        devices.push(tch::Device::Cuda(0));
    }
    for device in devices {
        for precision in [FftPrecision::F64, FftPrecision::F32] {
            let plan = TorchMelSpectrogram::new(
                MelConfig {
                    fft_precision: precision,
                    ..MelConfig::default()
                },
                device,
            )
            .expect("paper config is valid");
            let id = BenchmarkId::new(format!("tch_{precision:?}"), format!("{device:?}"));
            g.bench_with_input(id, &y, |b, y| {
                b.iter(|| {
                    let t = plan.db(y).expect("db");
                    // Wait for the device: copy the result back, as a caller would.
                    Vec::<f32>::try_from(t.to_device(tch::Device::Cpu).view([-1])).expect("copy")
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, cpu);
criterion_main!(benches);
