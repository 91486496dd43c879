//! Streaming sample-rate conversion of the mono signal.

use std::path::Path;

use crate::{Error, Resampler, Result};

/// Where decoded mono samples go: straight to the output, or through a resampler.
pub(crate) struct MonoSink {
    from_hz: u32,
    to_hz: u32,
    kind: SinkKind,
}

enum SinkKind {
    /// Source rate equals the target rate (or no target): samples are the output.
    Direct(Vec<f32>),
    /// libsoxr HQ, fed packet by packet: memory stays proportional to the output.
    #[cfg(feature = "soxr")]
    Soxr {
        soxr: soxr::Soxr<soxr::format::Mono<f32>>,
        out: Vec<f32>,
        scratch: Vec<f32>,
        ratio: f64,
        consumed: u64,
    },
    /// rubato's FFT resampler; it needs the whole signal, so the source-rate signal is kept.
    Rubato { input: Vec<f32> },
}

impl MonoSink {
    pub(crate) fn new(
        path: &Path,
        from_hz: u32,
        to_hz: u32,
        resampler: Resampler,
        expected_frames: Option<u64>,
    ) -> Result<Self> {
        let ratio = f64::from(to_hz) / f64::from(from_hz);
        let capacity = expected_frames
            .map(|n| (n as f64 * ratio).ceil() as usize + 16)
            .unwrap_or(0)
            .min(1 << 28);
        let kind = if from_hz == to_hz {
            SinkKind::Direct(Vec::with_capacity(capacity))
        } else {
            match resampler {
                #[cfg(feature = "soxr")]
                Resampler::SoxrHq => {
                    let soxr =
                        soxr::Soxr::new(f64::from(from_hz), f64::from(to_hz)).map_err(|e| {
                            Error::Resample {
                                path: path.to_path_buf(),
                                from_hz,
                                to_hz,
                                reason: e.as_str().to_string(),
                            }
                        })?;
                    SinkKind::Soxr {
                        soxr,
                        out: Vec::with_capacity(capacity),
                        scratch: Vec::new(),
                        ratio,
                        consumed: 0,
                    }
                }
                Resampler::Rubato => SinkKind::Rubato {
                    input: Vec::with_capacity(expected_frames.unwrap_or(0).min(1 << 28) as usize),
                },
            }
        };
        Ok(Self {
            from_hz,
            to_hz,
            kind,
        })
    }

    /// Feeds one block of mono samples at the source rate.
    pub(crate) fn push(&mut self, path: &Path, block: &[f32]) -> Result<()> {
        let (from_hz, to_hz) = (self.from_hz, self.to_hz);
        match &mut self.kind {
            SinkKind::Direct(out) => out.extend_from_slice(block),
            #[cfg(feature = "soxr")]
            SinkKind::Soxr {
                soxr,
                out,
                scratch,
                ratio,
                consumed,
            } => {
                *consumed += block.len() as u64;
                let mut rest = block;
                while !rest.is_empty() {
                    let room = (rest.len() as f64 * *ratio).ceil() as usize + 64;
                    scratch.resize(room, 0.0);
                    let done = soxr
                        .process(rest, scratch)
                        .map_err(|e| soxr_error(path, from_hz, to_hz, e))?;
                    out.extend_from_slice(&scratch[..done.output_frames]);
                    rest = &rest[done.input_frames..];
                }
            }
            SinkKind::Rubato { input } => input.extend_from_slice(block),
        }
        Ok(())
    }

    /// Flushes the resampler and returns the signal, `ceil(n * to / from)` samples long as
    /// `librosa.load` makes it (`fix_length` after `soxr.resample`).
    pub(crate) fn finish(self, path: &Path) -> Result<Vec<f32>> {
        let (from_hz, to_hz) = (self.from_hz, self.to_hz);
        let target_len = |n: u64| (n as u128 * to_hz as u128).div_ceil(from_hz as u128) as usize;
        match self.kind {
            SinkKind::Direct(out) => Ok(out),
            #[cfg(feature = "soxr")]
            SinkKind::Soxr {
                mut soxr,
                mut out,
                mut scratch,
                consumed,
                ..
            } => {
                scratch.resize(4096, 0.0);
                loop {
                    let n = soxr
                        .drain(&mut scratch)
                        .map_err(|e| soxr_error(path, from_hz, to_hz, e))?;
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&scratch[..n]);
                }
                out.resize(target_len(consumed), 0.0);
                Ok(out)
            }
            SinkKind::Rubato { input } => {
                let n = input.len();
                let mut out =
                    rubato_resample(&input, from_hz, to_hz).map_err(|reason| Error::Resample {
                        path: path.to_path_buf(),
                        from_hz,
                        to_hz,
                        reason,
                    })?;
                out.resize(target_len(n as u64), 0.0);
                Ok(out)
            }
        }
    }
}

#[cfg(feature = "soxr")]
fn soxr_error(path: &Path, from_hz: u32, to_hz: u32, e: soxr::Error) -> Error {
    Error::Resample {
        path: path.to_path_buf(),
        from_hz,
        to_hz,
        reason: e.as_str().to_string(),
    }
}

fn rubato_resample(
    input: &[f32],
    from_hz: u32,
    to_hz: u32,
) -> std::result::Result<Vec<f32>, String> {
    use rubato::Resampler as _;
    use rubato::audioadapter_buffers::direct::InterleavedSlice;
    if input.is_empty() {
        return Ok(Vec::new());
    }
    let mut resampler = rubato::Fft::<f32>::new(
        from_hz as usize,
        to_hz as usize,
        1024,
        1,
        rubato::FixedSync::Input,
    )
    .map_err(|e| e.to_string())?;
    let needed = resampler.process_all_needed_output_len(input.len());
    let mut out = vec![0.0f32; needed];
    let inp = InterleavedSlice::new(input, 1, input.len()).map_err(|e| e.to_string())?;
    let mut outp = InterleavedSlice::new_mut(&mut out, 1, needed).map_err(|e| e.to_string())?;
    let (_, produced) = resampler
        .process_all_into_buffer(&inp, &mut outp, input.len(), None)
        .map_err(|e| e.to_string())?;
    out.truncate(produced);
    Ok(out)
}
