//! The one error type of this crate. Every variant names the file it is about.

use std::path::PathBuf;

/// Why a file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file has zero bytes.
    #[error("{path}: the file is empty (0 bytes)")]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// No supported container was recognised (random bytes, a text file, an unknown format).
    #[error(
        "{path}: not a supported audio file ({reason}); supported: {}",
        crate::formats::summary()
    )]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// What the format probe said.
        reason: String,
    },
    /// The container holds no audio track.
    #[error("{path}: the file has no audio track")]
    NoAudioTrack {
        /// The file.
        path: PathBuf,
    },
    /// The container was recognised but its codec cannot be decoded (e.g. AC-3, WMA, HE-AAC
    /// with SBR that symphonia does not read, or Opus in a build without the `opus` feature).
    #[error(
        "{path}: unsupported audio codec {codec}; supported: {}",
        crate::formats::summary()
    )]
    UnsupportedCodec {
        /// The file.
        path: PathBuf,
        /// The codec, as symphonia names it.
        codec: String,
    },
    /// The stream ends before its data does: inside a packet or page, or well short of the
    /// frame count its header announces (a cut-off download or copy).
    #[error(
        "{path}: truncated stream: it ends after {decoded_frames} decoded frames{} \
         (set LoadOptions::allow_truncated to keep the decodable part)",
        .announced_frames.map(|n| format!(" of the {n} its header announces")).unwrap_or_default()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Frames (per channel, at the source rate) decoded before the end.
        decoded_frames: u64,
        /// Frames the container header announces, where it does.
        announced_frames: Option<u64>,
    },
    /// Too much of the stream was lost to damage for the file to be trusted.
    #[error(
        "{path}: damaged stream: {lost_frames} of {total_frames} frames lost \
         ({skipped_packets} undecodable packets plus data skipped while resynchronising); \
         limit: {max_fraction} of the stream (LoadOptions::max_damaged_fraction)"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Frames lost (source rate).
        lost_frames: u64,
        /// Frames decoded plus lost.
        total_frames: u64,
        /// Packets the decoder rejected.
        skipped_packets: u64,
        /// The allowed fraction.
        max_fraction: f32,
    },
    /// The container or demuxer failed in a way that cannot be skipped.
    #[error("{path}: cannot demux: {reason}")]
    Demux {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The container's index is missing or cut off (an MP4 whose 'moov' box was not written or
    /// not copied): nothing can be decoded without it.
    #[error("{path}: incomplete container: {reason}")]
    IncompleteContainer {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The audio is encrypted (DRM), such as an iTunes Store `.m4p` (FairPlay, sample entry
    /// `drms`) or a CENC-encrypted MP4 (`enca`, `sinf`): it cannot be decoded without the key.
    #[error("{path}: the audio is protected by DRM ({scheme}) and cannot be decoded")]
    Protected {
        /// The file.
        path: PathBuf,
        /// How the protection shows.
        scheme: String,
    },
    /// The file decodes to zero samples.
    #[error("{path}: the file holds no audio samples (zero-length audio)")]
    NoSamples {
        /// The file.
        path: PathBuf,
    },
    /// A stream property that the loader needs is missing or changes mid-stream.
    #[error("{path}: {reason}")]
    InvalidStream {
        /// The file.
        path: PathBuf,
        /// The rule that was broken.
        reason: String,
    },
    /// The decoder library panicked on this file (a malformed stream that trips one of its
    /// internal checks); the panic was contained.
    #[error("{path}: the decoder failed on malformed data ({message})")]
    DecoderPanic {
        /// The file.
        path: PathBuf,
        /// The panic message.
        message: String,
    },
    /// The requested options are not usable.
    #[error("invalid load options: {reason}")]
    InvalidOptions {
        /// The rule that was broken.
        reason: String,
    },
    /// The resampler failed.
    #[error("{path}: resampling {from_hz} Hz -> {to_hz} Hz failed: {reason}")]
    Resample {
        /// The file.
        path: PathBuf,
        /// Source rate.
        from_hz: u32,
        /// Target rate.
        to_hz: u32,
        /// The resampler's message.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
