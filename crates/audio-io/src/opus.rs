//! Opus through libopus, the reference decoder, plugged into symphonia as a codec: the Ogg (and
//! Matroska) demuxer, its timestamps and end trimming, and audio-io's damage accounting stay the
//! one code path of every format.
//!
//! RFC 7845 as the decoder's part of it: the identification header ("OpusHead", also Matroska's
//! CodecPrivate) gives the channel mapping, the pre-skip and the output gain. Every stream is
//! decoded by libopus's multistream decoder at 48 kHz in `f32` (a mono or stereo stream is one
//! stream of mapping family 0, as opusfile does it). With gapless on, the first `pre_skip`
//! decoded frames are dropped and each packet's end trim (set by the Ogg demuxer from the last
//! page's granule position) is applied, so the sample count is `last granule - pre_skip`, as
//! opusfile, libsndfile and ffmpeg give it. The output gain is applied by libopus
//! (`OPUS_SET_GAIN`).

use std::sync::Mutex;

use symphonia::core::audio::{
    AsGenericAudioBufferRef, AudioBuffer, AudioMut, AudioSpec, Channels, GenericAudioBufferRef,
};
use symphonia::core::codecs::CodecInfo;
use symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS;
use symphonia::core::codecs::audio::{
    AudioCodecParameters, AudioDecoder, AudioDecoderOptions, FinalizeResult,
};
use symphonia::core::codecs::registry::{RegisterableAudioDecoder, SupportedAudioCodec};
use symphonia::core::errors::{Error as SymError, Result as SymResult};
use symphonia::core::packet::PacketRef;

/// Opus always decodes at 48 kHz here (RFC 7845: the granule positions count 48 kHz samples).
pub const OPUS_RATE_HZ: u32 = 48_000;
/// The longest Opus packet: 120 ms at 48 kHz.
const MAX_FRAMES_PER_PACKET: usize = 5760;

/// The identification header of RFC 7845 section 5.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusHead {
    /// Output channels (1-255).
    pub channels: u8,
    /// Frames at 48 kHz to drop from the start of the decoded stream.
    pub pre_skip: u16,
    /// The encoder's input rate (informative only; the decode is at 48 kHz).
    pub input_sample_rate_hz: u32,
    /// Output gain in Q7.8 dB.
    pub output_gain_q8: i16,
    /// Channel mapping family (0: mono/stereo, 1: up to 8 channels in Vorbis order).
    pub mapping_family: u8,
    /// Opus streams in each packet.
    pub streams: u8,
    /// Of them, the coupled (stereo) ones.
    pub coupled: u8,
    /// Output channel -> decoded channel (255: silence).
    pub mapping: Vec<u8>,
}

impl OpusHead {
    /// Parses and checks the header; the error says which rule the bytes break.
    pub fn parse(buf: &[u8]) -> std::result::Result<Self, String> {
        if buf.len() < 19 || &buf[..8] != b"OpusHead" {
            return Err("the identification header is not an 'OpusHead' of 19+ bytes".into());
        }
        let version = buf[8];
        if version >> 4 != 0 {
            return Err(format!(
                "OpusHead version {version} (only 0-15 are readable)"
            ));
        }
        let channels = buf[9];
        if channels == 0 {
            return Err("OpusHead channel count 0".into());
        }
        let pre_skip = u16::from_le_bytes([buf[10], buf[11]]);
        let input_sample_rate_hz = u32::from_le_bytes([buf[12], buf[13], buf[14], buf[15]]);
        let output_gain_q8 = i16::from_le_bytes([buf[16], buf[17]]);
        let mapping_family = buf[18];
        let (streams, coupled, mapping) = if mapping_family == 0 {
            if channels > 2 {
                return Err(format!(
                    "channel mapping family 0 with {channels} channels (1 or 2 allowed)"
                ));
            }
            (1, channels - 1, (0..channels).collect())
        } else {
            let need = 21 + usize::from(channels);
            if buf.len() < need {
                return Err(format!(
                    "OpusHead of {} bytes; family {mapping_family} with {channels} channels needs {need}",
                    buf.len()
                ));
            }
            let (streams, coupled) = (buf[19], buf[20]);
            if streams == 0
                || coupled > streams
                || usize::from(streams) + usize::from(coupled) > 255
            {
                return Err(format!(
                    "OpusHead stream counts {streams} (coupled {coupled}) are invalid"
                ));
            }
            let mapping = buf[21..need].to_vec();
            let decoded = streams + coupled;
            if let Some(bad) = mapping.iter().find(|&&m| m != 255 && m >= decoded) {
                return Err(format!(
                    "OpusHead maps a channel to stream channel {bad} of {decoded}"
                ));
            }
            // Families 2 (ambisonics) and 255 (no layout) are valid RFC 7845/8486 streams, but
            // symphonia's Ogg reader maps only 0 and 1.
            match mapping_family {
                1 if channels > 8 => {
                    return Err(format!(
                        "channel mapping family 1 with {channels} channels (at most 8)"
                    ));
                }
                1 => {}
                f => {
                    return Err(format!(
                        "channel mapping family {f} is not supported (0 and 1 are)"
                    ));
                }
            }
            (streams, coupled, mapping)
        };
        Ok(Self {
            channels,
            pre_skip,
            input_sample_rate_hz,
            output_gain_q8,
            mapping_family,
            streams,
            coupled,
            mapping,
        })
    }
}

/// libopus behind symphonia's [`AudioDecoder`] trait.
pub struct OpusDecoder {
    params: AudioCodecParameters,
    // libopus state is not `Sync`; a decoder is only ever used by one thread at a time.
    inner: Mutex<opus::MSDecoder>,
    channels: usize,
    gapless: bool,
    pre_skip_left: usize,
    scratch: Vec<f32>,
    buf: AudioBuffer<f32>,
}

impl OpusDecoder {
    fn try_new(params: &AudioCodecParameters, opts: &AudioDecoderOptions) -> SymResult<Self> {
        let extra = params.extra_data.as_deref().ok_or(SymError::Unsupported(
            "opus: no OpusHead identification header",
        ))?;
        let head =
            OpusHead::parse(extra).map_err(|_| SymError::DecodeError("opus: invalid OpusHead"))?;
        let mut dec = opus::MSDecoder::new(OPUS_RATE_HZ, head.streams, head.coupled, &head.mapping)
            .map_err(|_| SymError::DecodeError("opus: libopus refused the channel mapping"))?;
        dec.set_gain(i32::from(head.output_gain_q8))
            .map_err(|_| SymError::DecodeError("opus: libopus refused the output gain"))?;
        let channels = usize::from(head.channels);
        let spec = AudioSpec::new(OPUS_RATE_HZ, Channels::Discrete(u16::from(head.channels)));
        let mut params = params.clone();
        params.with_sample_rate(OPUS_RATE_HZ);
        Ok(Self {
            params,
            inner: Mutex::new(dec),
            channels,
            gapless: opts.gapless,
            pre_skip_left: usize::from(head.pre_skip),
            scratch: vec![0.0; MAX_FRAMES_PER_PACKET * channels],
            buf: AudioBuffer::new(spec, MAX_FRAMES_PER_PACKET),
        })
    }

    fn decode_inner(&mut self, packet: &PacketRef<'_>) -> SymResult<()> {
        self.buf.clear();
        if packet.data.is_empty() {
            // An empty Ogg packet is not an Opus packet (RFC 7845 section 3: at least the TOC
            // byte); libopus would read it as a loss and conceal it.
            return Err(SymError::DecodeError("opus: empty packet"));
        }
        let frames = {
            let mut dec = self
                .inner
                .lock()
                .map_err(|_| SymError::DecodeError("opus: decoder state poisoned"))?;
            dec.decode_float(packet.data, &mut self.scratch, false)
                .map_err(|_| SymError::DecodeError("opus: libopus rejected the packet"))?
        };
        let frames = frames.min(MAX_FRAMES_PER_PACKET);
        let (mut start, mut end) = (0, frames);
        if self.gapless {
            end =
                frames.saturating_sub(usize::try_from(packet.trim_end.get()).unwrap_or(usize::MAX));
            start = usize::try_from(packet.trim_start.get())
                .unwrap_or(usize::MAX)
                .min(end);
            let skip = self.pre_skip_left.min(end - start);
            self.pre_skip_left -= skip;
            start += skip;
        }
        let n = end - start;
        self.buf.resize_uninit(n);
        let c = self.channels;
        for ch in 0..c {
            let plane = self
                .buf
                .plane_mut(ch)
                .ok_or(SymError::DecodeError("opus: missing audio plane"))?;
            for (i, out) in plane.iter_mut().enumerate() {
                *out = self.scratch[(start + i) * c + ch];
            }
        }
        Ok(())
    }
}

impl AudioDecoder for OpusDecoder {
    fn reset(&mut self) {
        // After a seek the pre-skip no longer applies (it is a property of the stream start);
        // libopus's own state is reset by recreating nothing: its reset CTL.
        if let Ok(mut dec) = self.inner.lock() {
            let _ = dec.reset_state();
        }
        self.pre_skip_left = 0;
    }

    fn codec_info(&self) -> &CodecInfo {
        &SUPPORTED[0].info
    }

    fn codec_params(&self) -> &AudioCodecParameters {
        &self.params
    }

    fn decode_ref(&mut self, packet: &PacketRef<'_>) -> SymResult<GenericAudioBufferRef<'_>> {
        match self.decode_inner(packet) {
            Ok(()) => Ok(self.buf.as_generic_audio_buffer_ref()),
            Err(e) => {
                self.buf.clear();
                Err(e)
            }
        }
    }

    fn finalize(&mut self) -> FinalizeResult {
        FinalizeResult::default()
    }

    fn last_decoded(&self) -> GenericAudioBufferRef<'_> {
        self.buf.as_generic_audio_buffer_ref()
    }
}

static SUPPORTED: [SupportedAudioCodec; 1] = [SupportedAudioCodec {
    id: CODEC_ID_OPUS,
    info: CodecInfo {
        short_name: "opus",
        long_name: "Opus (libopus)",
        profiles: &[],
    },
}];

impl RegisterableAudioDecoder for OpusDecoder {
    fn try_registry_new(
        params: &AudioCodecParameters,
        opts: &AudioDecoderOptions,
    ) -> SymResult<Box<dyn AudioDecoder>> {
        Ok(Box::new(Self::try_new(params, opts)?))
    }

    fn supported_codecs() -> &'static [SupportedAudioCodec] {
        &SUPPORTED
    }
}

/// The first packet of an Ogg stream if it is an Opus identification header ("OpusHead"):
/// lets the loader name a broken header that symphonia's Ogg reader would silently not map.
pub fn ogg_opus_head(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.get(..4)? != b"OggS" {
        return None;
    }
    let segments = usize::from(*bytes.get(26)?);
    let table = bytes.get(27..27 + segments)?;
    let mut len = 0usize;
    for &lace in table {
        len += usize::from(lace);
        if lace < 255 {
            break;
        }
    }
    let start = 27 + segments;
    let packet = bytes
        .get(start..start + len)
        .or_else(|| bytes.get(start..))?;
    packet.starts_with(b"OpusHead").then(|| packet.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_head_in_the_first_ogg_page() {
        let h = head(2, 0, &[]);
        let mut page = b"OggS".to_vec();
        page.extend_from_slice(&[0u8; 22]);
        page.push(1);
        page.push(h.len() as u8);
        page.extend_from_slice(&h);
        assert_eq!(ogg_opus_head(&page), Some(h.clone()));
        // Cut inside the packet: what there is.
        assert_eq!(ogg_opus_head(&page[..40]), Some(h[..12].to_vec()));
        assert_eq!(ogg_opus_head(b"OggS"), None);
        assert_eq!(ogg_opus_head(b"fLaC\0\0\0\0"), None);
    }

    fn head(channels: u8, family: u8, tail: &[u8]) -> Vec<u8> {
        let mut v = b"OpusHead".to_vec();
        v.extend_from_slice(&[1, channels]);
        v.extend_from_slice(&312u16.to_le_bytes());
        v.extend_from_slice(&44_100u32.to_le_bytes());
        v.extend_from_slice(&(-256i16).to_le_bytes());
        v.push(family);
        v.extend_from_slice(tail);
        v
    }

    #[test]
    fn family_0_is_one_stream() {
        let h = OpusHead::parse(&head(2, 0, &[])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (h.streams, h.coupled, h.mapping.clone()),
            (1, 1, vec![0, 1])
        );
        assert_eq!(
            (h.pre_skip, h.output_gain_q8, h.input_sample_rate_hz),
            (312, -256, 44_100)
        );
        let m = OpusHead::parse(&head(1, 0, &[])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((m.streams, m.coupled, m.mapping), (1, 0, vec![0]));
    }

    #[test]
    fn family_1_reads_the_mapping_table() {
        // 5.1: 4 streams, 2 coupled, Vorbis order.
        let h = OpusHead::parse(&head(6, 1, &[4, 2, 0, 4, 1, 2, 3, 5]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((h.streams, h.coupled), (4, 2));
        assert_eq!(h.mapping, vec![0, 4, 1, 2, 3, 5]);
    }

    #[test]
    fn broken_headers_say_what_is_wrong() {
        let cases: [(Vec<u8>, &str); 8] = [
            (b"OpusHea".to_vec(), "OpusHead"),
            (b"OpusTags........................".to_vec(), "OpusHead"),
            (head(0, 0, &[]), "channel count 0"),
            (head(3, 0, &[]), "family 0 with 3"),
            (head(6, 1, &[4, 2, 0]), "needs 27"),
            (head(2, 1, &[1, 1, 0, 9]), "stream channel 9"),
            (head(2, 7, &[1, 1, 0, 1]), "family 7"),
            (head(2, 255, &[1, 1, 0, 1]), "family 255"),
        ];
        for (bytes, want) in cases {
            let err = OpusHead::parse(&bytes).err().unwrap_or_default();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
        let mut v = head(2, 0, &[]);
        v[8] = 0x10;
        assert!(
            OpusHead::parse(&v)
                .err()
                .unwrap_or_default()
                .contains("version 16")
        );
    }
}
