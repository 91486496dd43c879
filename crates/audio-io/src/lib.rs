#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod decode;
mod error;
pub mod formats;
mod mp4;
#[cfg(feature = "opus")]
mod opus;
mod resample;

use std::path::Path;

pub use error::{Error, Result};

/// The sample rate of the paper's features: artist20 is 16 kHz mono.
pub const PAPER_SAMPLE_RATE_HZ: u32 = 16_000;

/// Which resampler converts the source rate to the target rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resampler {
    /// libsoxr with the HQ recipe, as `librosa.load(res_type="soxr_hq")` (librosa's default):
    /// bit-identical output. Streams: memory stays proportional to the output. Needs the
    /// `soxr` feature (default) and the system libsoxr.
    #[cfg(feature = "soxr")]
    #[default]
    SoxrHq,
    /// rubato's synchronous FFT resampler: pure Rust, no C library, but **not** librosa-equal
    /// (max |diff| ~2e-2, RMS ~5-9 % of the signal). Holds the whole source-rate signal.
    #[cfg_attr(not(feature = "soxr"), default)]
    Rubato,
}

/// How [`load`] decodes.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Output sample rate; `None` keeps the file's own rate.
    ///
    /// Default: `Some(16_000)` (paper).
    pub target_sample_rate_hz: Option<u32>,
    /// The resampler used when the file's rate differs from the target.
    ///
    /// Default: [`Resampler::SoxrHq`] (librosa's `soxr_hq`).
    pub resampler: Resampler,
    /// Trim encoder delay and padding where the file says how much (LAME/Xing gapless tag in
    /// MP3, Vorbis/Opus/FLAC granule positions and the Opus pre-skip, the MP4 edit list). With it, the sample count equals `librosa.load`
    /// (libsndfile/mpg123), which trims tagged MP3s too; untagged MP3s (artist20's 16 kHz
    /// 32 kbps files) keep their 1105-sample codec delay in both.
    ///
    /// Default: `true`.
    pub gapless: bool,
    /// Round every sample to 16-bit PCM and back before resampling: the int16 path of librosa
    /// 0.5.1's audioread/ffmpeg decoder, for bit-level replication of the paper's features.
    /// Moves mel dB by ~0.003 dB on average (max ~0.5 dB in quiet cells).
    ///
    /// Default: `false`.
    pub quantize_to_i16: bool,
    /// Keep what decodes when a stream ends inside its data (a cut-off file) instead of
    /// returning [`Error::Truncated`].
    ///
    /// Default: `false`.
    pub allow_truncated: bool,
    /// Largest fraction of the stream that may be lost to damage (packets the decoder rejects,
    /// data the demuxer skips to resynchronise) before the file is rejected as
    /// [`Error::Damaged`]. Below it the loss is skipped and counted in [`Audio::lost_frames`].
    /// Also the slack allowed between the decoded length and a header's announced length
    /// before [`Error::Truncated`].
    ///
    /// Default: `0.05`.
    pub max_damaged_fraction: f32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            target_sample_rate_hz: Some(PAPER_SAMPLE_RATE_HZ),
            resampler: Resampler::default(),
            gapless: true,
            quantize_to_i16: false,
            allow_truncated: false,
            max_damaged_fraction: 0.05,
        }
    }
}

impl LoadOptions {
    fn validate(&self) -> Result<()> {
        if self.target_sample_rate_hz == Some(0) {
            return Err(Error::InvalidOptions {
                reason: "target_sample_rate_hz must be > 0".to_string(),
            });
        }
        if !(0.0..=1.0).contains(&self.max_damaged_fraction) {
            return Err(Error::InvalidOptions {
                reason: format!(
                    "max_damaged_fraction must be in [0, 1], got {}",
                    self.max_damaged_fraction
                ),
            });
        }
        Ok(())
    }
}

/// A decoded mono signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Mono samples (channel mean), nominally in [-1, 1].
    pub samples: Vec<f32>,
    /// Rate of `samples`.
    pub sample_rate_hz: u32,
    /// The file's own sample rate.
    pub source_sample_rate_hz: u32,
    /// The file's channel count (before the mono mix).
    pub source_channels: usize,
    /// Frames decoded at the source rate.
    pub source_frames: u64,
    /// Packets that failed to decode and were skipped (their audio is missing).
    pub skipped_packets: u64,
    /// Source-rate frames lost to damage: skipped packets, stretches the demuxer jumped over to
    /// resynchronise, and any shortfall against the length the header announces. The signal is
    /// shorter by this much; nothing is zero-filled.
    pub lost_frames: u64,
}

impl Audio {
    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate_hz)
    }
}

/// Decodes an audio file (any format of [`formats::FORMATS`] this build enables: MP3, Ogg
/// Vorbis/Opus, FLAC, WAV, MP4/M4A, ADTS AAC, Matroska/WebM) to mono f32 at
/// [`LoadOptions::target_sample_rate_hz`], as `librosa.load(path, sr=16000)` does.
///
/// Errors name the file: unreadable, empty, not audio, unsupported codec, truncated or missing
/// its index, protected, corrupt, or holding no samples. A damaged packet in an otherwise good
/// stream is skipped and counted.
pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Audio> {
    let path = path.as_ref();
    options.validate()?;
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "is a directory"),
        });
    }
    if meta.len() == 0 {
        return Err(Error::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    contain_panics(path, || decode::decode(path, file, options))
}

/// Decodes audio held in memory. `name` is used in errors and its extension as a format hint.
pub fn load_bytes(name: impl AsRef<Path>, bytes: Vec<u8>, options: &LoadOptions) -> Result<Audio> {
    let name = name.as_ref();
    options.validate()?;
    if bytes.is_empty() {
        return Err(Error::EmptyFile {
            path: name.to_path_buf(),
        });
    }
    contain_panics(name, || {
        decode::decode(name, std::io::Cursor::new(bytes), options)
    })
}

/// Runs a decode, turning a panic inside a codec into [`Error::DecoderPanic`]: crafted input
/// can trip arithmetic-overflow checks in symphonia's decoders (found by fuzzing: MS-ADPCM),
/// and a bad file must give an error, not abort the caller.
fn contain_panics(path: &Path, decode: impl FnOnce() -> Result<Audio>) -> Result<Audio> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        Err(Error::DecoderPanic {
            path: path.to_path_buf(),
            message,
        })
    })
}
