#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod config;
mod db;
mod error;
mod filters;
mod kernels;
mod spectrogram;
#[cfg(feature = "tch")]
pub mod torch;

pub use config::{FftPrecision, MelConfig, MelNorm, MelScale, PadMode};
pub use db::power_to_db;
pub use error::{Error, Result};
pub use filters::{
    fft_frequencies, hann_window, hz_to_mel, mel_filterbank, mel_frequencies, mel_to_hz,
};
pub use spectrogram::MelSpectrogram;
