//! Bad input gives a typed error that names the file; nothing panics. The damaged files are
//! made on the fly from the committed fixtures, so none is stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use audio_io::{Error, LoadOptions, load};
use common::{assert_names_file, corrupted, fixture, truncated, write};

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "empty.mp3", b"");
    let err = load(&p, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::EmptyFile { .. }), "{err}");
    assert_names_file(&err, &p);
}

#[test]
fn random_bytes_and_text_named_mp3() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 12345u64;
    let noise: Vec<u8> = (0..20_000)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    for (name, bytes) in [
        ("noise.mp3", noise.as_slice()),
        ("noise.ogg", noise.as_slice()),
        ("notes.mp3", b"These are my notes, not an MP3.\n".as_slice()),
        ("noext", noise.as_slice()),
    ] {
        let p = write(dir.path(), name, bytes);
        let err = load(&p, &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedFormat { .. }),
            "{name}: {err}"
        );
        assert_names_file(&err, &p);
    }
}

#[test]
fn zero_length_audio() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("silence-0.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(&p, spec)
        .unwrap()
        .finalize()
        .unwrap();
    let err = load(&p, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NoSamples { .. }), "{err}");
    assert_names_file(&err, &p);
}

#[test]
fn truncated_streams_are_detected_where_the_format_allows() {
    let dir = tempfile::tempdir().unwrap();
    // Ogg/FLAC/WAV end inside a page or packet; the tagged MP3 falls short of its LAME count.
    for name in [
        "fanfare.ogg",
        "loop_amen.flac",
        "house_lo.wav",
        "fanfare.mp3",
    ] {
        let p = truncated(dir.path(), name);
        let err = load(&p, &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Truncated { .. }), "{name}: {err}");
        assert_names_file(&err, &p);
        // On request, the decodable part is kept.
        let options = LoadOptions {
            allow_truncated: true,
            ..LoadOptions::default()
        };
        let part = load(&p, &options).unwrap();
        let full = load(fixture(name), &LoadOptions::default()).unwrap();
        assert!(part.samples.len() < full.samples.len() * 3 / 4, "{name}");
        assert!(part.samples.len() > full.samples.len() / 4, "{name}");
    }
}

#[test]
fn unsupported_codecs_are_named() {
    // AC-3 in Matroska: the container is read, the codec is not.
    let p = fixture("amen_ac3.mka");
    let err = load(&p, &LoadOptions::default()).unwrap_err();
    match &err {
        Error::UnsupportedCodec { codec, .. } => assert_eq!(codec, "AC-3"),
        other => panic!("expected UnsupportedCodec, got {other}"),
    }
    assert_names_file(&err, &p);
    // The message lists what is supported, from the one format list.
    assert!(
        err.to_string().contains(&audio_io::formats::summary()),
        "{err}"
    );
}

#[test]
fn damaged_packets_inside_a_good_stream_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    // MP3: the demuxer resynchronises after the damage; three 576-sample frames are lost.
    let p = corrupted(dir.path(), "guitar_16k_mono_32kbps.mp3");
    let clean = load(
        fixture("guitar_16k_mono_32kbps.mp3"),
        &LoadOptions::default(),
    )
    .unwrap();
    let damaged = load(&p, &LoadOptions::default()).unwrap();
    assert!(damaged.lost_frames > 0, "damage not counted");
    assert_eq!(
        damaged.samples.len() as u64 + damaged.lost_frames,
        clean.samples.len() as u64
    );

    // FLAC: one 4096-frame block is lost (5.3 % of this short file): rejected by default ...
    let p = corrupted(dir.path(), "loop_amen.flac");
    let err = load(&p, &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Damaged {
                lost_frames: 4096,
                ..
            }
        ),
        "{err}"
    );
    assert_names_file(&err, &p);
    // ... kept, with the loss counted, under a looser limit.
    let options = LoadOptions {
        max_damaged_fraction: 0.1,
        target_sample_rate_hz: None,
        ..LoadOptions::default()
    };
    let a = load(&p, &options).unwrap();
    assert_eq!(a.lost_frames, 4096);
    assert_eq!(a.samples.len(), 77_321 - 4096);
}

#[test]
fn missing_file_directory_and_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.mp3");
    let err = load(&missing, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_names_file(&err, &missing);
    let err = load(dir.path(), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let bad = LoadOptions {
        target_sample_rate_hz: Some(0),
        ..LoadOptions::default()
    };
    assert!(matches!(
        load(fixture("fanfare.ogg"), &bad),
        Err(Error::InvalidOptions { .. })
    ));
}

#[test]
fn every_prefix_of_a_file_is_handled_without_panic() {
    // A coarse sweep over cut points (the fuzz target does the fine-grained version).
    for name in [
        "guitar_16k_mono_32kbps.mp3",
        "fanfare.ogg",
        "loop_amen.flac",
        "house_lo.wav",
    ] {
        common::sweep_prefixes(name);
    }
}

#[test]
fn a_codec_panic_is_contained_as_an_error() {
    // Found by `cargo fuzz run decode`: an MS-ADPCM WAV whose coefficients overflow an i32
    // multiplication inside symphonia-codec-adpcm 0.6.1 (a panic with overflow checks on).
    let p = fixture("fuzz_crash_ms_adpcm_overflow.wav");
    let result = std::panic::catch_unwind(|| load(&p, &LoadOptions::default()));
    let result = result.expect("the panic escaped audio_io::load");
    if let Err(e) = result {
        assert_names_file(&e, &p);
    }
}
