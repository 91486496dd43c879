//! The symphonia decode loop: packets -> mono f32 blocks, streamed into a [`MonoSink`].

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::OnceLock;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::codecs::registry::CodecRegistry;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use crate::mp4::{self, EditTrim};
use crate::resample::MonoSink;
use crate::{Audio, Error, LoadOptions, Result};

/// symphonia's enabled decoders plus libopus (with the `opus` feature).
fn codecs() -> &'static CodecRegistry {
    static REGISTRY: OnceLock<CodecRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut registry);
        #[cfg(feature = "opus")]
        registry.register_audio_decoder::<crate::opus::OpusDecoder>();
        registry
    })
}

/// The MP4 facts symphonia does not act on, checked before decoding: a missing index, a
/// video-only file, a protected track. Returns the box tree for the edit list.
fn check_mp4<S: Read + Seek>(path: &Path, source: &mut S) -> Result<Option<mp4::Mp4Info>> {
    let demux = |e: std::io::Error| Error::Demux {
        path: path.to_path_buf(),
        reason: format!("MP4 box tree: {e}"),
    };
    let info = mp4::inspect(source).map_err(demux)?;
    source.seek(SeekFrom::Start(0)).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let Some(info) = info else {
        return Ok(None);
    };
    if !info.has_moov {
        return Err(Error::IncompleteContainer {
            path: path.to_path_buf(),
            reason: "MP4 without its index (no whole 'moov' box); ffmpeg and iTunes write it \
                     after the audio, so a cut-off download or copy loses it"
                .to_string(),
        });
    }
    if let Some(t) = info.audio.iter().find(|t| t.protected) {
        return Err(Error::Protected {
            path: path.to_path_buf(),
            scheme: format!(
                "MP4 sample entry '{}'",
                String::from_utf8_lossy(&t.sample_entry)
            ),
        });
    }
    if info.audio.is_empty() {
        return Err(Error::NoAudioTrack {
            path: path.to_path_buf(),
        });
    }
    Ok(Some(info))
}

/// An Ogg file whose first packet is an "OpusHead" that audio-io's parser refuses: named as a
/// broken header (symphonia's reader would not map the stream and the file would look like no
/// audio at all).
#[cfg(feature = "opus")]
fn check_ogg_opus_head<S: Read + Seek>(path: &Path, source: &mut S) -> Result<()> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    // An Ogg page is at most 27 + 255 + 255 * 255 bytes.
    let mut first = Vec::with_capacity(1 << 16);
    source
        .by_ref()
        .take(27 + 255 + 255 * 255)
        .read_to_end(&mut first)
        .map_err(io)?;
    source.seek(SeekFrom::Start(0)).map_err(io)?;
    if let Some(head) = crate::opus::ogg_opus_head(&first) {
        crate::opus::OpusHead::parse(&head).map_err(|reason| Error::InvalidStream {
            path: path.to_path_buf(),
            reason: format!("broken Opus identification header: {reason}"),
        })?;
    }
    Ok(())
}

/// Decodes `source` (described by `path` in errors, its extension used as a hint) to mono.
pub(crate) fn decode<S: MediaSource + 'static>(
    path: &Path,
    mut source: S,
    options: &LoadOptions,
) -> Result<Audio> {
    let mp4_info = check_mp4(path, &mut source)?;
    #[cfg(feature = "opus")]
    check_ogg_opus_head(path, &mut source)?;
    let mp4_cut_short = mp4_info.as_ref().is_some_and(|i| i.cut_short);
    let mss = MediaSourceStream::new(Box::new(source), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| Error::UnsupportedFormat {
            path: path.to_path_buf(),
            reason: probe_reason(&e),
        })?;

    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| Error::NoAudioTrack {
            path: path.to_path_buf(),
        })?;
    let track_id = track.id;
    let expected_frames = track.num_frames;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| Error::NoAudioTrack {
            path: path.to_path_buf(),
        })?
        .clone();
    let pre_skip = check_opus_header(path, &params)?;
    let decoder_options = AudioDecoderOptions::default().gapless(options.gapless);
    let mut decoder = codecs()
        .make_audio_decoder(&params, &decoder_options)
        .map_err(|_| Error::UnsupportedCodec {
            path: path.to_path_buf(),
            codec: codec_name(&params),
        })?;

    let mut source_rate = params.sample_rate;
    let mut source_channels = params.channels.as_ref().map(|c| c.count());
    let mut sink: Option<MonoSink> = None;
    let mut interleaved: Vec<f32> = Vec::new();
    let mut mono: Vec<f32> = Vec::new();
    let mut stats = DamageStats::default();
    let mut truncated = false;
    let mut trim: Option<Trimmer> = None;
    if options.gapless {
        // The Opus decoder drops the pre-skip; the container counts it in its length.
        stats.trimmed_frames = u64::from(pre_skip);
    }

    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) | Err(SymError::ResetRequired) => break,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                truncated = true;
                break;
            }
            // symphonia's MP4 reader reports reading past a cut-off 'mdat' as malformed.
            Err(_) if mp4_cut_short => {
                truncated = true;
                break;
            }
            Err(e) => {
                return Err(Error::Demux {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                });
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        stats.see_packet(packet.pts.get(), packet.dur.get());
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            // A damaged packet inside a good stream: skip it, count it, go on.
            Err(SymError::DecodeError(_)) | Err(SymError::IoError(_)) => {
                stats.skip_packet(packet.dur.get());
                continue;
            }
            Err(e) => {
                return Err(Error::Demux {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                });
            }
        };
        if buf.frames() == 0 {
            continue;
        }
        let spec = buf.spec();
        let rate = spec.rate();
        let channels = spec.channels().count();
        if channels == 0 || rate == 0 {
            return Err(Error::InvalidStream {
                path: path.to_path_buf(),
                reason: format!("decoded block has {channels} channels at {rate} Hz"),
            });
        }
        match source_rate {
            Some(r) if r != rate && sink.is_some() => {
                return Err(Error::InvalidStream {
                    path: path.to_path_buf(),
                    reason: format!("sample rate changes mid-stream ({r} Hz -> {rate} Hz)"),
                });
            }
            _ => source_rate = Some(rate),
        }
        source_channels = Some(channels);
        buf.copy_to_vec_interleaved(&mut interleaved);
        downmix(&interleaved, channels, &mut mono);
        if options.gapless
            && let Some(info) = &mp4_info
        {
            let t = trim.get_or_insert_with(|| Trimmer::new(info.trim(track_id, rate)));
            stats.trimmed_frames += t.apply(&mut mono);
        }
        if options.quantize_to_i16 {
            quantize_i16(&mut mono);
        }
        stats.decoded_frames += mono.len() as u64;
        let sink = match &mut sink {
            Some(s) => s,
            None => sink.insert(MonoSink::new(
                path,
                rate,
                options.target_sample_rate_hz.unwrap_or(rate),
                options.resampler,
                expected_frames,
            )?),
        };
        sink.push(path, &mono)?;
    }

    let lost_frames = stats.check(path, expected_frames, truncated, options)?;
    let (Some(sink), Some(source_rate)) = (sink, source_rate) else {
        // Cut off before anything decoded (symphonia's MP4 reader reads nothing of a file whose
        // 'mdat' is cut): say so even when the caller allows truncation.
        if truncated {
            return Err(Error::Truncated {
                path: path.to_path_buf(),
                decoded_frames: 0,
                announced_frames: expected_frames,
            });
        }
        return Err(Error::NoSamples {
            path: path.to_path_buf(),
        });
    };
    let sample_rate_hz = options.target_sample_rate_hz.unwrap_or(source_rate);
    let samples = sink.finish(path)?;
    if samples.is_empty() {
        return Err(Error::NoSamples {
            path: path.to_path_buf(),
        });
    }
    Ok(Audio {
        samples,
        sample_rate_hz,
        source_sample_rate_hz: source_rate,
        source_channels: source_channels.unwrap_or(1),
        source_frames: stats.decoded_frames,
        skipped_packets: stats.skipped_packets,
        lost_frames,
    })
}

/// What decoding lost: packets the decoder rejected, and stretches the demuxer skipped while
/// resynchronising over damaged data (seen as jumps in the packet timestamps).
#[derive(Debug, Default)]
struct DamageStats {
    packets: u64,
    skipped_packets: u64,
    skipped_frames: u64,
    gap_frames: u64,
    decoded_frames: u64,
    next_pts: Option<i64>,
    /// Frames dropped by an MP4 edit list (encoder delay and padding): not damage, but counted
    /// against the frame count the header announces.
    trimmed_frames: u64,
}

impl DamageStats {
    fn see_packet(&mut self, pts: i64, dur: u64) {
        self.packets += 1;
        // Before the first audible frame, timestamps jump over trimmed encoder delay (Vorbis
        // pre-roll, MP3 gapless): that is not damage.
        if let Some(next) = self.next_pts
            && pts > next
            && self.decoded_frames > 0
        {
            self.gap_frames += (pts - next) as u64;
        }
        self.next_pts = Some(pts.saturating_add(i64::try_from(dur).unwrap_or(i64::MAX)));
    }

    fn skip_packet(&mut self, dur: u64) {
        self.skipped_packets += 1;
        self.skipped_frames += dur;
    }

    /// Frames lost inside the stream: skipped packets and resynchronisation gaps.
    fn damaged_frames(&self) -> u64 {
        self.skipped_frames + self.gap_frames
    }

    /// Rejects a stream that ends before its data does or that lost too much to damage;
    /// otherwise returns the frames lost (damage plus a small shortfall against the header).
    fn check(
        &self,
        path: &Path,
        announced: Option<u64>,
        hit_eof: bool,
        options: &LoadOptions,
    ) -> Result<u64> {
        let damaged = self.damaged_frames();
        let seen = self.decoded_frames + damaged + self.trimmed_frames;
        let shortfall = announced.map_or(0, |n| n.saturating_sub(seen));
        let max = f64::from(options.max_damaged_fraction);
        // Ends inside a packet or page (Ogg, FLAC, WAV), or well before the frame count the
        // header announces (MP3 with a Xing/LAME tag or a CBR size estimate, FLAC, WAV).
        let short_of_header = announced.is_some_and(|n| shortfall as f64 > max * n as f64);
        if !options.allow_truncated && (hit_eof || short_of_header) {
            return Err(Error::Truncated {
                path: path.to_path_buf(),
                decoded_frames: self.decoded_frames,
                announced_frames: announced,
            });
        }
        if damaged > 0 && damaged as f64 > max * seen as f64 {
            return Err(Error::Damaged {
                path: path.to_path_buf(),
                lost_frames: damaged,
                total_frames: seen,
                skipped_packets: self.skipped_packets,
                max_fraction: options.max_damaged_fraction,
            });
        }
        Ok(damaged + shortfall)
    }
}

/// Applies an MP4 edit list to the mono stream at the source rate: drops `skip` frames, then
/// keeps `keep` (the presented duration) and drops the rest (the encoder's padding).
#[derive(Debug)]
struct Trimmer {
    skip_left: u64,
    keep_left: Option<u64>,
}

impl Trimmer {
    fn new(trim: Option<EditTrim>) -> Self {
        let t = trim.unwrap_or(EditTrim {
            skip: 0,
            keep: None,
        });
        Self {
            skip_left: t.skip,
            keep_left: t.keep,
        }
    }

    /// Trims `mono` in place; returns the frames dropped.
    fn apply(&mut self, mono: &mut Vec<f32>) -> u64 {
        let before = mono.len() as u64;
        let skip = self.skip_left.min(before);
        self.skip_left -= skip;
        mono.drain(..skip as usize);
        if let Some(keep) = &mut self.keep_left {
            let n = (*keep).min(mono.len() as u64);
            mono.truncate(n as usize);
            *keep -= n;
        }
        before - mono.len() as u64
    }
}

/// An Opus stream's identification header, checked with audio-io's own parser so that a
/// broken header is named as such (libopus would only refuse to start). Returns the pre-skip
/// (0 for other codecs).
fn check_opus_header(
    path: &Path,
    params: &symphonia::core::codecs::audio::AudioCodecParameters,
) -> Result<u16> {
    use symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS;
    if params.codec != CODEC_ID_OPUS {
        return Ok(0);
    }
    #[cfg(feature = "opus")]
    {
        let head = params.extra_data.as_deref().unwrap_or_default();
        let head = crate::opus::OpusHead::parse(head).map_err(|reason| Error::InvalidStream {
            path: path.to_path_buf(),
            reason: format!("broken Opus identification header: {reason}"),
        })?;
        Ok(head.pre_skip)
    }
    #[cfg(not(feature = "opus"))]
    Err(Error::UnsupportedCodec {
        path: path.to_path_buf(),
        codec: "Opus (audio-io was built without its `opus` feature)".to_string(),
    })
}

/// Channel mean in f32, summed in channel order then divided: `np.mean(y, axis=0)` of librosa.
fn downmix(interleaved: &[f32], channels: usize, mono: &mut Vec<f32>) {
    mono.clear();
    if channels == 1 {
        mono.extend_from_slice(interleaved);
        return;
    }
    let n = channels as f32;
    mono.extend(interleaved.chunks_exact(channels).map(|frame| {
        let mut acc = frame[0];
        for &x in &frame[1..] {
            acc += x;
        }
        acc / n
    }));
}

/// Rounds to 16-bit PCM and back (`round(x * 32768)`, clipped, `/ 32768`): the int16 path of
/// librosa 0.5.1's audioread/ffmpeg decoder that the paper's features went through.
fn quantize_i16(mono: &mut [f32]) {
    for x in mono {
        *x = (*x * 32768.0).round().clamp(-32768.0, 32767.0) / 32768.0;
    }
}

fn probe_reason(e: &SymError) -> String {
    match e {
        SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "no known container signature before the end of the file".to_string()
        }
        other => other.to_string(),
    }
}

fn codec_name(params: &symphonia::core::codecs::audio::AudioCodecParameters) -> String {
    use symphonia::core::codecs::audio::well_known::*;
    let known = [
        (CODEC_ID_OPUS, "Opus"),
        (CODEC_ID_AAC, "AAC"),
        (CODEC_ID_SPEEX, "Speex"),
        (CODEC_ID_AC3, "AC-3"),
        (CODEC_ID_EAC3, "E-AC-3"),
        (CODEC_ID_WMA, "WMA"),
        (CODEC_ID_ALAC, "ALAC"),
        (CODEC_ID_WAVPACK, "WavPack"),
        (CODEC_ID_MONKEYS_AUDIO, "Monkey's Audio"),
        (CODEC_ID_MP1, "MPEG-1 Layer I"),
        (CODEC_ID_MP2, "MPEG-1 Layer II"),
    ];
    known
        .iter()
        .find(|(id, _)| *id == params.codec)
        .map(|(_, name)| (*name).to_string())
        .unwrap_or_else(|| format!("codec id {}", params.codec))
}
