//! The `tch` path against the CPU path on the golden inputs: on CPU libtorch always, and on
//! CUDA too when a GPU is visible. f32 FFT within 5e-3 dB, f64 FFT within 2e-5 dB.
#![cfg(feature = "tch")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use melspec::torch::TorchMelSpectrogram;
use melspec::{FftPrecision, MelConfig, MelSpectrogram, PadMode};
use ndarray::{Array1, Array2};
use ndarray_npy::read_npy;

/// The CPU, and CUDA device 0 when one is visible; without one, a line on the terminal (past
/// the test harness's capture) says that `test` ran on the CPU only.
fn devices(test: &str) -> Vec<tch::Device> {
    use std::io::Write as _;
    let mut d = vec![tch::Device::Cpu];
    if tch::Cuda::is_available() {
        d.push(tch::Device::Cuda(0));
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "{test}: CUDA skipped (no CUDA device visible to libtorch); checked on the CPU only"
        );
    }
    d
}

fn to_array(t: &tch::Tensor) -> Array2<f32> {
    let t = t.to_device(tch::Device::Cpu).contiguous();
    let (r, c) = t.size2().unwrap();
    let v: Vec<f32> = Vec::<f32>::try_from(t.view([-1])).unwrap();
    Array2::from_shape_vec((r as usize, c as usize), v).unwrap()
}

#[test]
fn device_path_matches_cpu_path() {
    for device in devices("device_path_matches_cpu_path") {
        for (precision, tol) in [(FftPrecision::F32, 5e-3f32), (FftPrecision::F64, 2e-5)] {
            for pad in [PadMode::Reflect, PadMode::Constant] {
                let config = MelConfig {
                    fft_precision: precision,
                    pad_mode: pad,
                    ..MelConfig::default()
                };
                let cpu = MelSpectrogram::new(MelConfig {
                    fft_precision: FftPrecision::F64,
                    ..config.clone()
                })
                .unwrap();
                let dev = TorchMelSpectrogram::new(config, device).unwrap();
                for case in [
                    "chirp", "sines", "noise", "silence", "impulse", "short", "tiny",
                ] {
                    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                        .join(format!("tests/golden/inputs/{case}.input.npy"));
                    let y: Array1<f32> = read_npy(path).unwrap();
                    let want = cpu.db(y.as_slice().unwrap()).unwrap();
                    let got = to_array(&dev.db(y.as_slice().unwrap()).unwrap());
                    assert_eq!(got.dim(), want.dim(), "{device:?} {case}");
                    let d = got
                        .iter()
                        .zip(&want)
                        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    eprintln!("{device:?} {precision:?} {pad:?} {case}: max |dB diff| {d:.2e}");
                    assert!(
                        d <= tol,
                        "{device:?} {precision:?} {pad:?} {case}: {d:e} dB"
                    );
                }
            }
        }
    }
}

#[test]
fn device_errors_are_typed() {
    let dev = TorchMelSpectrogram::new(MelConfig::default(), tch::Device::Cpu).unwrap();
    assert!(matches!(dev.power(&[]), Err(melspec::Error::EmptySignal)));
    assert!(matches!(
        dev.power(&[f32::INFINITY]),
        Err(melspec::Error::NonFinite { .. })
    ));
}
