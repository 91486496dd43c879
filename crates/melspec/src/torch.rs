//! The same computation on a [`tch::Device`] (feature `tch`): CPU libtorch or CUDA.
//!
//! The signal is padded on the host with numpy's repeated-reflect rule (torch's own reflect pad
//! refuses signals shorter than `n_fft / 2`), uploaded, cut into frames with `unfold`, windowed
//! with the CPU plan's window, transformed with `fft_rfft`, and multiplied by the CPU plan's
//! exact filterbank; the dB floor is per call (pass a whole track). With
//! [`FftPrecision::F64`](crate::FftPrecision) the FFT runs in float64 and matches the CPU path to
//! ~1e-6 dB; with `F32` (cuFFT / MKL float) to ~1e-3 dB.

use tch::{Device, Kind, Tensor};

use crate::spectrogram::padded_signal;
use crate::{FftPrecision, MelConfig, MelSpectrogram, Result};

/// A mel-spectrogram plan whose window and filterbank live on a torch device.
#[derive(Debug)]
pub struct TorchMelSpectrogram {
    plan: MelSpectrogram,
    device: Device,
    kind: Kind,
    window: Tensor,
    /// `[n_bins, n_mels]`, so frames `[T, n_bins]` multiply into `[T, n_mels]`.
    filterbank_t: Tensor,
}

impl TorchMelSpectrogram {
    /// Validates `config`, builds the CPU plan and uploads its window and filterbank.
    pub fn new(config: MelConfig, device: Device) -> Result<Self> {
        let plan = MelSpectrogram::new(config)?;
        let kind = match plan.config().fft_precision {
            FftPrecision::F64 => Kind::Double,
            FftPrecision::F32 => Kind::Float,
        };
        let window = Tensor::f_from_slice(plan.window())?
            .f_to_kind(kind)?
            .f_to_device(device)?;
        let fb = plan.filterbank();
        let flat: Vec<f32> = fb.iter().copied().collect();
        let filterbank_t = Tensor::f_from_slice(&flat)?
            .f_reshape([fb.nrows() as i64, fb.ncols() as i64])?
            .f_to_kind(kind)?
            .f_transpose(0, 1)?
            .f_contiguous()?
            .f_to_device(device)?;
        Ok(Self {
            plan,
            device,
            kind,
            window,
            filterbank_t,
        })
    }

    /// The device the computation runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The configuration.
    pub fn config(&self) -> &MelConfig {
        self.plan.config()
    }

    /// Mel power spectrogram `[n_mels, frames]`, f32, on the device.
    pub fn power(&self, samples: &[f32]) -> Result<Tensor> {
        let c = self.plan.config();
        let padded = padded_signal(c, samples)?;
        let y = Tensor::f_from_slice(&padded)?
            .f_to_device(self.device)?
            .f_to_kind(self.kind)?;
        let frames = y.f_unfold(0, c.n_fft as i64, c.hop_length as i64)?; // [T, n_fft]
        let spec = frames
            .f_mul(&self.window)?
            .f_fft_rfft(None::<i64>, -1, "backward")?;
        // librosa rounds the spectrum to complex64 before |.|: do the same.
        let parts = spec
            .f_view_as_real()?
            .f_to_kind(Kind::Float)?
            .f_to_kind(self.kind)?;
        let power2 = parts.f_square()?.f_sum_dim_intlist(-1, false, self.kind)?; // |X|^2
        let p = if c.power == 2.0 {
            power2
        } else {
            power2.f_sqrt()?.f_pow_tensor_scalar(f64::from(c.power))?
        };
        let p = p.f_to_kind(Kind::Float)?.f_to_kind(self.kind)?;
        let mel = p.f_matmul(&self.filterbank_t)?; // [T, n_mels]
        Ok(mel
            .f_to_kind(Kind::Float)?
            .f_transpose(0, 1)?
            .f_contiguous()?)
    }

    /// Log-mel spectrogram in dB `[n_mels, frames]`, f32, on the device; the `top_db` floor is
    /// taken over the whole signal given.
    pub fn db(&self, samples: &[f32]) -> Result<Tensor> {
        let c = self.plan.config();
        let s = self.power(samples)?;
        let offset = 10.0 * c.amin.max(c.ref_power.abs()).log10();
        let db = s
            .f_clamp_min(c.amin)?
            .f_log10()?
            .f_mul_scalar(10.0)?
            .f_sub_scalar(offset)?;
        match c.top_db {
            Some(top) => {
                let floor = db.f_max()?.f_sub_scalar(top)?;
                Ok(db.f_maximum(&floor)?)
            }
            None => Ok(db),
        }
    }
}
