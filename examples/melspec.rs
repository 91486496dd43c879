//! Log-mel spectrograms of audio files, as the paper computes them, saved as `.npy`.
//!
//! ```text
//! cargo run --release --example melspec -- [--pad-mode reflect|constant] [--power]
//!     [--device cpu|cuda] --out-dir DIR FILE...
//! ```
//! Writes `DIR/<file stem>.npy`: float32 `[n_mels, frames]`, dB by default (paper settings:
//! 16 kHz mono, n_fft 2048, hop 512, 128 Slaney mels, ref 1.0, top_db 80 over the whole file),
//! mel power with `--power`. Readable with `numpy.load`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use artist_crnn::cli::{choose_device, write_atomic};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use melspec::torch::TorchMelSpectrogram;
use melspec::{MelConfig, MelSpectrogram, PadMode};
use ndarray::Array2;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Pad {
    /// Mirror padding: librosa <= 0.8, the paper.
    Reflect,
    /// Zero padding: librosa >= 0.9.
    Constant,
}

/// Log-mel spectrograms of audio files (MP3, Ogg Vorbis, FLAC, WAV), saved as float32 .npy.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Centre padding of the STFT.
    #[arg(long, value_enum, default_value = "reflect")]
    pad_mode: Pad,
    /// Write mel power instead of dB.
    #[arg(long)]
    power: bool,
    /// Where to compute: cpu, cuda or cuda:N. Default: CUDA when available, else CPU.
    #[arg(long)]
    device: Option<String>,
    /// Output folder (created if missing).
    #[arg(long)]
    out_dir: PathBuf,
    /// Audio files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = choose_device(args.device.as_deref())?;
    let config = MelConfig {
        pad_mode: match args.pad_mode {
            Pad::Reflect => PadMode::Reflect,
            Pad::Constant => PadMode::Constant,
        },
        ..MelConfig::default()
    };
    let cpu = MelSpectrogram::new(config.clone())?;
    let gpu = match device {
        tch::Device::Cpu => None,
        d => Some(TorchMelSpectrogram::new(config.clone(), d)?),
    };
    let load_options = audio_io::LoadOptions {
        target_sample_rate_hz: Some(config.sample_rate_hz),
        ..Default::default()
    };
    let bar = ProgressBar::new(args.files.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let (mut done, mut failed, mut audio_s) = (0usize, 0usize, 0f64);
    for file in &args.files {
        bar.set_message(file.display().to_string());
        match convert(file, &args, &load_options, &cpu, gpu.as_ref()) {
            Ok(seconds) => {
                done += 1;
                audio_s += seconds;
            }
            Err(e) => {
                failed += 1;
                bar.suspend(|| eprintln!("error: {e:#}"));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "melspec: {done} file(s) written to {} ({audio_s:.1} s of audio in {:.2} s on {device:?}), {failed} failed",
        args.out_dir.display(),
        start.elapsed().as_secs_f64()
    );
    if failed > 0 {
        bail!(
            "{failed} of {} file(s) could not be converted",
            args.files.len()
        );
    }
    Ok(())
}

fn convert(
    file: &std::path::Path,
    args: &Args,
    load_options: &audio_io::LoadOptions,
    cpu: &MelSpectrogram,
    gpu: Option<&TorchMelSpectrogram>,
) -> Result<f64> {
    let audio = audio_io::load(file, load_options)?;
    let mel: Array2<f32> = match gpu {
        None if args.power => cpu.power(&audio.samples)?,
        None => cpu.db(&audio.samples)?,
        Some(g) => {
            let t = if args.power {
                g.power(&audio.samples)?
            } else {
                g.db(&audio.samples)?
            };
            let t = t.to_device(tch::Device::Cpu);
            let (rows, cols) = t.size2()?;
            let v = Vec::<f32>::try_from(t.contiguous().view([-1]))?;
            Array2::from_shape_vec((rows as usize, cols as usize), v)?
        }
    };
    let stem = file
        .file_stem()
        .with_context(|| format!("{}: no file name", file.display()))?
        .to_string_lossy();
    let out = args.out_dir.join(format!("{stem}.npy"));
    write_atomic(&out, |tmp| {
        ndarray_npy::write_npy(tmp, &mel).with_context(|| format!("writing {}", tmp.display()))
    })?;
    Ok(audio.duration_s())
}
