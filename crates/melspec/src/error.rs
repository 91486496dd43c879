//! The one error type of this crate.

/// Why a configuration or a signal was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`MelConfig`](crate::MelConfig) field breaks a rule.
    #[error("invalid MelConfig.{field}: {rule}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// The rule broken, with the value given.
        rule: String,
    },
    /// The signal has no samples.
    #[error("the signal is empty (0 samples)")]
    EmptySignal,
    /// Without centring, a frame needs `n_fft` samples.
    #[error("signal of {n_samples} samples is shorter than n_fft = {n_fft} (center = false)")]
    SignalTooShort {
        /// Samples given.
        n_samples: usize,
        /// Samples needed.
        n_fft: usize,
    },
    /// A sample is NaN or infinite.
    #[error("sample {index} is not finite ({value})")]
    NonFinite {
        /// Its index.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// The FFT library failed.
    #[error("FFT failed: {0}")]
    Fft(String),
    /// libtorch failed (feature `tch`).
    #[cfg(feature = "tch")]
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
