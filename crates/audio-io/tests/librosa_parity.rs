//! Decoded samples against `librosa.load` 0.11 (libsndfile 1.2.2 / mpg123, soxr_hq).
//!
//! The references in `tests/fixtures/` were made by `tests/fixtures/make_reference.py`; they hold
//! the first, a middle and the last 4096 samples of each decode plus whole-signal moments, which
//! pin the sample count, the alignment and the values.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use audio_io::{LoadOptions, load};
use ndarray::Array2;
use ndarray_npy::read_npy;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Compares one decode with its reference: sample count, max |diff| over the three windows
/// (`tol`), and the whole-signal sum and energy (mean |diff| within `tol`).
fn check(file: &str, tag: &str, options: &LoadOptions, tol: f32) -> f32 {
    let r = &reference()["files"][file][tag];
    let audio = load(fixtures().join(file), options).unwrap();
    let n = r["n_samples"].as_u64().unwrap() as usize;
    assert_eq!(
        audio.samples.len(),
        n,
        "{file} @ {tag}: sample count differs from librosa"
    );
    assert_eq!(
        u64::from(audio.sample_rate_hz),
        r["sample_rate_hz"].as_u64().unwrap()
    );
    let rows: Array2<f32> = read_npy(fixtures().join(format!("{file}.{tag}.npy"))).unwrap();
    let w = rows.ncols();
    let mid = r["mid_offset"].as_u64().unwrap() as usize;
    let ours = [
        &audio.samples[..w],
        &audio.samples[mid..mid + w],
        &audio.samples[n - w..],
    ];
    let mut max_diff = 0f32;
    for (row, got) in rows.rows().into_iter().zip(ours) {
        for (a, b) in row.iter().zip(got) {
            max_diff = max_diff.max((a - b).abs());
        }
    }
    assert!(
        max_diff <= tol,
        "{file} @ {tag}: max |diff| {max_diff:e} > {tol:e}"
    );
    let y: Vec<f64> = audio.samples.iter().map(|&x| f64::from(x)).collect();
    let sum: f64 = y.iter().sum();
    let sum_sq: f64 = y.iter().map(|x| x * x).sum();
    let energy_ref = r["sum_sq"].as_f64().unwrap();
    assert!(
        (sum - r["sum"].as_f64().unwrap()).abs() <= (f64::from(tol) + 1e-6) * n as f64,
        "{file} @ {tag}: sum {sum} vs {}",
        r["sum"]
    );
    assert!(
        (sum_sq - energy_ref).abs() <= (f64::from(tol) + 1e-6) * energy_ref.max(1.0),
        "{file} @ {tag}: energy {sum_sq} vs {energy_ref}"
    );
    eprintln!("{file} @ {tag}: n={n} max|diff|={max_diff:e}");
    max_diff
}

fn native() -> LoadOptions {
    LoadOptions {
        target_sample_rate_hz: None,
        ..LoadOptions::default()
    }
}

#[test]
fn mp3_with_lame_gapless_tag_matches_librosa() {
    // 44.1 kHz stereo 128 kbps with a LAME "Info" tag: delay and padding trimmed by both.
    check("fanfare.mp3", "native", &native(), 3e-7);
    check("fanfare.mp3", "16000", &LoadOptions::default(), 3e-7);
}

#[test]
fn mp3_without_tag_keeps_codec_delay_like_librosa() {
    // artist20's format: 16 kHz mono 32 kbps, frames too small for a LAME tag. libsndfile and
    // symphonia both keep the 1105-sample delay: 6 s of audio decodes to 97,344 samples.
    check(
        "guitar_16k_mono_32kbps.mp3",
        "16000",
        &LoadOptions::default(),
        3e-7,
    );
    check("guitar_16k_mono_32kbps.mp3", "native", &native(), 3e-7);
}

#[test]
fn ogg_vorbis_matches_librosa() {
    check("fanfare.ogg", "native", &native(), 1e-7);
    check("fanfare.ogg", "16000", &LoadOptions::default(), 1e-7);
}

#[test]
fn flac_matches_librosa_exactly() {
    check("loop_amen.flac", "native", &native(), 0.0);
    check("loop_amen.flac", "16000", &LoadOptions::default(), 0.0);
}

#[test]
fn unsigned_8bit_wav_matches_librosa_exactly() {
    check("house_lo.wav", "native", &native(), 0.0);
    check("house_lo.wav", "16000", &LoadOptions::default(), 0.0);
}

#[test]
fn ms_adpcm_wav_matches_librosa_within_adpcm_rounding() {
    // Same length and alignment; the two MS-ADPCM decoders round predictor steps differently
    // (2.7e-4 max per sample, 3.3e-4 relative in energy).
    check("secosmic_lo.wav", "native", &native(), 5e-4);
    check("secosmic_lo.wav", "16000", &LoadOptions::default(), 5e-4);
}

#[test]
fn load_bytes_equals_load() {
    let path = fixtures().join("fanfare.ogg");
    let a = load(&path, &LoadOptions::default()).unwrap();
    let b = audio_io::load_bytes(
        &path,
        std::fs::read(&path).unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(a, b);
}

#[test]
fn paper_int16_quantisation_is_a_16_bit_grid() {
    let options = LoadOptions {
        quantize_to_i16: true,
        ..native()
    };
    let a = load(fixtures().join("guitar_16k_mono_32kbps.mp3"), &options).unwrap();
    assert!(a.samples.iter().all(|&x| (x * 32768.0).fract() == 0.0));
}

#[test]
fn rubato_resampler_gives_librosa_length_but_not_its_values() {
    let options = LoadOptions {
        resampler: audio_io::Resampler::Rubato,
        ..LoadOptions::default()
    };
    let a = load(fixtures().join("fanfare.ogg"), &options).unwrap();
    let b = load(fixtures().join("fanfare.ogg"), &LoadOptions::default()).unwrap();
    assert_eq!(a.samples.len(), b.samples.len());
    let num: f64 = a
        .samples
        .iter()
        .zip(&b.samples)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum();
    let den: f64 = b.samples.iter().map(|&y| f64::from(y).powi(2)).sum();
    let rel_rms = (num / den).sqrt();
    // Same signal (a 10 % RMS difference at most) through a different filter.
    assert!(
        rel_rms < 0.1,
        "rubato vs soxr relative RMS difference {rel_rms}"
    );
}

// ---- Formats whose reference is ffmpeg's decoder (see make_reference.py for why) ----------

#[test]
fn alac_in_mp4_is_lossless_and_matches_ffmpeg_exactly() {
    // Lossless: equal to ffmpeg's decode bit for bit, and to the FLAC it was made from.
    check("amen_alac.m4a", "native", &native(), 0.0);
    check("amen_alac.m4a", "16000", &LoadOptions::default(), 0.0);
    let alac = load(fixtures().join("amen_alac.m4a"), &native()).unwrap();
    let flac = load(fixtures().join("loop_amen.flac"), &native()).unwrap();
    assert_eq!(alac.samples.len(), 13_230, "0.3 s at 44.1 kHz");
    assert_eq!(alac.samples[..], flac.samples[..alac.samples.len()]);
}

#[test]
fn aac_in_mp4_matches_ffmpeg_with_the_edit_list_applied() {
    // AAC-LC, ffmpeg's encoder: 1024 frames of encoder delay and the end padding removed as
    // the edit list says (0.5 s = 22,050 frames; ffmpeg 5.1 keeps the padding, the reference is
    // cut to the edit). Two float AAC decoders (symphonia, ffmpeg): same alignment, values
    // within float rounding of the inverse MDCT.
    check("amen_aac.m4a", "native", &native(), AAC_TOL);
    check("amen_aac.m4a", "16000", &LoadOptions::default(), AAC_TOL);
}

#[test]
fn adts_aac_matches_ffmpeg() {
    // ADTS has no edit list: both decoders keep the 1024-frame delay and the padding.
    check("amen_adts.aac", "native", &native(), AAC_TOL);
    check("amen_adts.aac", "16000", &LoadOptions::default(), AAC_TOL);
}

#[test]
fn ogg_opus_matches_libopus_through_ffmpeg() {
    // libopus here (1.6.1, built by opusic-sys) and in the reference (Debian's 1.3.1 under
    // ffmpeg): the same normative decoder in float, pre-skip and end trim as RFC 7845.
    check("amen_opus.ogg", "native", &native(), OPUS_TOL);
    check("amen_opus.ogg", "16000", &LoadOptions::default(), OPUS_TOL);
    // Mono, 16 kHz input rate, several pages: still decoded at 48 kHz, then soxr.
    check("guitar_mono.opus", "native", &native(), OPUS_TOL);
    check(
        "guitar_mono.opus",
        "16000",
        &LoadOptions::default(),
        OPUS_TOL,
    );
    // 5.1, channel mapping family 1: four streams, two coupled.
    check("amen_51.opus", "native", &native(), OPUS_TOL);
    check("amen_51.opus", "16000", &LoadOptions::default(), OPUS_TOL);
}

#[test]
fn opus_without_gapless_keeps_pre_skip_and_padding() {
    let trimmed = load(fixtures().join("amen_opus.ogg"), &native()).unwrap();
    let raw = load(
        fixtures().join("amen_opus.ogg"),
        &LoadOptions {
            gapless: false,
            ..native()
        },
    )
    .unwrap();
    // 26 packets of 20 ms decode to 24,960 frames; 312 of pre-skip and 648 of padding go.
    assert_eq!(trimmed.samples.len(), 24_000);
    assert_eq!(raw.samples.len() % 960, 0, "whole packets");
    assert!(raw.samples.len() > trimmed.samples.len() + 312);
    assert_eq!(raw.samples[312..312 + 24_000], trimmed.samples[..]);
}

#[test]
fn opus_in_webm_decodes_with_its_pre_skip_removed() {
    // Matroska's CodecPrivate is the same OpusHead: the decoder drops the pre-skip. symphonia
    // 0.6 does not read Matroska's DiscardPadding, so the last packet's padding stays (< 20 ms);
    // the Ogg file of the same encode is the reference for the rest.
    let webm = load(fixtures().join("amen_opus.webm"), &native()).unwrap();
    let ogg = load(fixtures().join("amen_opus.ogg"), &native()).unwrap();
    assert_eq!(webm.source_sample_rate_hz, 48_000);
    assert!(webm.samples.len() >= 24_000 && webm.samples.len() < 24_000 + 960);
    let d = webm.samples[..24_000]
        .iter()
        .zip(&ogg.samples)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    // The same encoder settings on the same input give the same packets.
    assert!(d <= OPUS_TOL, "webm vs ogg max |diff| {d:e}");
}

/// Two float AAC decoders (symphonia, ffmpeg 5.1): measured max |diff| 2.4e-7 (MP4) and 3.0e-7
/// (ADTS at 16 kHz), a few float ulps of a full-scale sample from differently ordered IMDCT
/// sums; 1e-6 leaves room for other compilers' FMA contraction and stays 30x below one 16-bit
/// step.
const AAC_TOL: f32 = 1e-6;
/// Two libopus releases in float (1.6.1 here, Debian's 1.3.1 under ffmpeg): measured max
/// |diff| 1.4e-5 to 1.8e-5 over the three files. libsndfile's libopus 1.4 differs from 1.3.1 by
/// the same 1.5e-5, so it is the release, not the wrapper. The bound is one 16-bit PCM step
/// (2^-15 = 3.05e-5): what an int16 decode could not even represent.
const OPUS_TOL: f32 = 1.0 / 32768.0;
