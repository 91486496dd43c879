//! [`MelConfig`]: every parameter of the computation, with the paper's values as `Default`.

use crate::{Error, Result};

/// How the signal is extended by `n_fft / 2` samples at each end when `center` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum PadMode {
    /// Mirror without repeating the edge sample, again and again when the pad is longer than
    /// the signal (numpy's `np.pad(mode="reflect")`): librosa <= 0.8, so the paper's librosa 0.5.1.
    #[default]
    Reflect,
    /// Zeros: librosa >= 0.9.
    Constant,
}

/// The mel scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum MelScale {
    /// Slaney's Auditory Toolbox scale: linear below 1 kHz, logarithmic above (librosa
    /// `htk=False`).
    #[default]
    Slaney,
    /// `2595 log10(1 + f / 700)` (librosa `htk=True`).
    Htk,
}

/// How each mel filter is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum MelNorm {
    /// Area normalisation: each triangle times `2 / (f_hi - f_lo)` (librosa `norm="slaney"`).
    #[default]
    Slaney,
    /// Peak-1 triangles (librosa `norm=None`).
    None,
}

/// Precision of the FFT on the CPU path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum FftPrecision {
    /// f64 FFT of the f64-windowed frame, rounded once to f32: librosa's own precision
    /// (mel power within 2e-6 relative, dB within 2e-5 of librosa).
    #[default]
    F64,
    /// f32 FFT: about 1.4x faster, within ~1.4e-3 dB of librosa after the top_db clip, but
    /// near-silent bins can be far off in relative terms.
    F32,
}

/// Parameters of a (log-)mel spectrogram. `Default` is the paper's setting (librosa 0.5.1
/// through `librosa.feature.melspectrogram(y, sr=16000)` + `logamplitude(ref_power=1.0)`).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MelConfig {
    /// Sample rate of the input, Hz.
    ///
    /// Default: `16000` (paper).
    pub sample_rate_hz: u32,
    /// FFT size, samples.
    ///
    /// Default: `2048` (paper).
    pub n_fft: usize,
    /// Hop between frames, samples.
    ///
    /// Default: `512` (paper; 31.25 frames per second at 16 kHz).
    pub hop_length: usize,
    /// Window length, samples (`<= n_fft`; the window is zero-padded to `n_fft`, centred).
    ///
    /// Default: `2048` (paper).
    pub win_length: usize,
    /// Centre frame `t` on sample `t * hop_length` by padding `n_fft / 2` at each end.
    ///
    /// Default: `true` (paper).
    pub center: bool,
    /// Padding used when `center` is on.
    ///
    /// Default: [`PadMode::Reflect`] (paper; librosa >= 0.9 uses [`PadMode::Constant`]).
    pub pad_mode: PadMode,
    /// Exponent of the magnitude: 2 gives power, 1 magnitude.
    ///
    /// Default: `2.0` (paper).
    pub power: f32,
    /// Number of mel bands.
    ///
    /// Default: `128` (paper).
    pub n_mels: usize,
    /// Lowest filter edge, Hz.
    ///
    /// Default: `0.0` (paper).
    pub fmin_hz: f64,
    /// Highest filter edge, Hz; `None` means `sample_rate_hz / 2`.
    ///
    /// Default: `None` (paper: 8000 Hz).
    pub fmax_hz: Option<f64>,
    /// Mel scale.
    ///
    /// Default: [`MelScale::Slaney`] (paper).
    pub mel_scale: MelScale,
    /// Filter normalisation.
    ///
    /// Default: [`MelNorm::Slaney`] (paper).
    pub norm: MelNorm,
    /// dB reference: `10 log10(max(amin, S)) - 10 log10(max(amin, ref_power))`.
    ///
    /// Default: `1.0` (paper: absolute dB).
    pub ref_power: f64,
    /// Floor applied before the logarithm.
    ///
    /// Default: `1e-10` (paper).
    pub amin: f64,
    /// Clip dB values below `max - top_db`, the max taken over the whole signal passed in
    /// (the paper: the whole song, before slicing). `None` disables the clip.
    ///
    /// Default: `Some(80.0)` (paper).
    pub top_db: Option<f64>,
    /// FFT precision of the CPU path.
    ///
    /// Default: [`FftPrecision::F64`] (librosa's precision).
    pub fft_precision: FftPrecision,
}

impl Default for MelConfig {
    fn default() -> Self {
        Self {
            sample_rate_hz: 16_000,
            n_fft: 2048,
            hop_length: 512,
            win_length: 2048,
            center: true,
            pad_mode: PadMode::Reflect,
            power: 2.0,
            n_mels: 128,
            fmin_hz: 0.0,
            fmax_hz: None,
            mel_scale: MelScale::Slaney,
            norm: MelNorm::Slaney,
            ref_power: 1.0,
            amin: 1e-10,
            top_db: Some(80.0),
            fft_precision: FftPrecision::F64,
        }
    }
}

impl MelConfig {
    /// The paper's setting with librosa >= 0.9's zero padding.
    pub fn librosa_current() -> Self {
        Self {
            pad_mode: PadMode::Constant,
            ..Self::default()
        }
    }

    /// `fmax_hz`, or the Nyquist frequency when it is `None`.
    pub fn fmax_or_nyquist(&self) -> f64 {
        self.fmax_hz.unwrap_or(f64::from(self.sample_rate_hz) / 2.0)
    }

    /// Number of FFT bins, `1 + n_fft / 2`.
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Frames a signal of `n_samples` gives: `1 + n_samples / hop` when centred (even
    /// `n_fft`), `1 + (n_samples - n_fft) / hop` otherwise; 0 when too short.
    pub fn n_frames(&self, n_samples: usize) -> usize {
        if self.center {
            let padded = n_samples + 2 * (self.n_fft / 2);
            if n_samples == 0 || padded < self.n_fft {
                return 0;
            }
            1 + (padded - self.n_fft) / self.hop_length
        } else if n_samples < self.n_fft {
            0
        } else {
            1 + (n_samples - self.n_fft) / self.hop_length
        }
    }

    /// Frames per second of audio.
    pub fn frames_per_second(&self) -> f64 {
        f64::from(self.sample_rate_hz) / self.hop_length as f64
    }

    /// Checks every rule; [`MelSpectrogram::new`](crate::MelSpectrogram::new) calls it.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, rule: String| Err(Error::InvalidConfig { field, rule });
        if self.sample_rate_hz == 0 {
            return bad("sample_rate_hz", "must be > 0".into());
        }
        if self.n_fft < 2 || !self.n_fft.is_multiple_of(2) {
            return bad(
                "n_fft",
                format!("must be even and >= 2, got {}", self.n_fft),
            );
        }
        if self.hop_length == 0 {
            return bad("hop_length", "must be > 0".into());
        }
        if self.win_length == 0 || self.win_length > self.n_fft {
            return bad(
                "win_length",
                format!(
                    "must be in 1..=n_fft ({}), got {}",
                    self.n_fft, self.win_length
                ),
            );
        }
        if !(self.power.is_finite() && self.power > 0.0) {
            return bad(
                "power",
                format!("must be finite and > 0, got {}", self.power),
            );
        }
        if self.n_mels == 0 {
            return bad("n_mels", "must be > 0".into());
        }
        let nyquist = f64::from(self.sample_rate_hz) / 2.0;
        let fmax = self.fmax_or_nyquist();
        if !(self.fmin_hz.is_finite() && self.fmin_hz >= 0.0) {
            return bad(
                "fmin_hz",
                format!("must be finite and >= 0, got {}", self.fmin_hz),
            );
        }
        if !(fmax.is_finite() && fmax > self.fmin_hz && fmax <= nyquist) {
            return bad(
                "fmax_hz",
                format!("must be in (fmin_hz, sample_rate_hz / 2 = {nyquist}], got {fmax}"),
            );
        }
        if !(self.ref_power.is_finite() && self.ref_power > 0.0) {
            return bad(
                "ref_power",
                format!("must be finite and > 0, got {}", self.ref_power),
            );
        }
        if !(self.amin.is_finite() && self.amin > 0.0) {
            return bad("amin", format!("must be finite and > 0, got {}", self.amin));
        }
        if let Some(t) = self.top_db
            && !(t.is_finite() && t >= 0.0)
        {
            return bad("top_db", format!("must be finite and >= 0, got {t}"));
        }
        Ok(())
    }
}
