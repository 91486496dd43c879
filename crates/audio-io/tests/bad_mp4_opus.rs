//! Bad input of the MP4/M4A, ADTS and Opus kinds: typed errors that name the file, no panic.
//! Damaged variants are made on the fly from the committed fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use audio_io::{Error, LoadOptions, load};
use common::{assert_names_file, corrupted, fixture, sweep_prefixes, write};

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(needle)))
}

#[test]
fn mp4_cut_before_its_index_is_incomplete() {
    // ffmpeg (as iTunes) writes 'moov' after the audio: a cut-off download has no index.
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("amen_aac.m4a")).unwrap();
    let moov = find(&bytes, b"moov") - 4;
    for cut in [moov, moov + 40, bytes.len() - 1] {
        let p = write(dir.path(), &format!("cut{cut}.m4a"), &bytes[..cut]);
        let err = load(&p, &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::IncompleteContainer { .. }), "{err}");
        assert!(err.to_string().contains("moov"), "{err}");
        assert_names_file(&err, &p);
    }
}

#[test]
fn mp4_with_its_audio_cut_is_truncated() {
    // 'moov' first (faststart): the index is whole, the samples it points to are not.
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("amen_aac_faststart.m4a")).unwrap();
    let mdat = find(&bytes, b"mdat") + 4;
    let cut = mdat + (bytes.len() - mdat) / 2;
    let p = write(dir.path(), "cut.m4a", &bytes[..cut]);
    let err = load(&p, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
    assert_names_file(&err, &p);
    // symphonia's MP4 reader reads nothing of a file whose 'mdat' is cut, so even with
    // truncation allowed the answer is "truncated", with nothing decoded.
    let options = LoadOptions {
        allow_truncated: true,
        ..LoadOptions::default()
    };
    match load(&p, &options) {
        Err(Error::Truncated { decoded_frames, .. }) => assert_eq!(decoded_frames, 0),
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
fn mp4_with_only_a_video_track_has_no_audio() {
    let p = fixture("video_only.mp4");
    let err = load(&p, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NoAudioTrack { .. }), "{err}");
    assert_names_file(&err, &p);
}

#[test]
fn protected_mp4_is_named_protected() {
    // iTunes Store .m4p: the sample entry is 'drms' (FairPlay); CENC: 'enca'.
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("amen_aac.m4a")).unwrap();
    let stsd = find(&bytes, b"stsd");
    let entry = stsd + find(&bytes[stsd..], b"mp4a");
    for (fourcc, name) in [(b"drms", "song.m4p"), (b"enca", "cenc.m4a")] {
        let mut b = bytes.clone();
        b[entry..entry + 4].copy_from_slice(fourcc);
        let p = write(dir.path(), name, &b);
        let err = load(&p, &LoadOptions::default()).unwrap_err();
        match &err {
            Error::Protected { scheme, .. } => {
                assert!(
                    scheme.contains(std::str::from_utf8(fourcc).unwrap()),
                    "{scheme}"
                )
            }
            other => panic!("expected Protected, got {other}"),
        }
        assert_names_file(&err, &p);
    }
}

#[test]
fn text_named_m4a_or_opus_is_not_audio() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["notes.m4a", "notes.opus", "notes.aac"] {
        let p = write(
            dir.path(),
            name,
            b"Shopping list:\n- milk\n- eggs\n".repeat(20).as_slice(),
        );
        let err = load(&p, &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedFormat { .. }),
            "{name}: {err}"
        );
        assert_names_file(&err, &p);
    }
}

/// Ogg's page CRC (polynomial 0x04c11db7, no reflection, initial value 0).
fn ogg_crc(page: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in page {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// `amen_opus.ogg` with its first page (which holds only the OpusHead packet) rebuilt around
/// `head`, with a correct CRC, so only the header is wrong.
fn with_opus_head(head: &[u8]) -> Vec<u8> {
    let bytes = std::fs::read(fixture("amen_opus.ogg")).unwrap();
    assert_eq!(&bytes[..4], b"OggS");
    let segments = usize::from(bytes[26]);
    assert_eq!(
        segments, 1,
        "the first page holds one packet of one segment"
    );
    let body_len = usize::from(bytes[27]);
    let first_page_len = 28 + body_len;
    let mut page = bytes[..27].to_vec();
    page.push(u8::try_from(head.len()).unwrap());
    page.extend_from_slice(head);
    page[22..26].fill(0);
    let crc = ogg_crc(&page);
    page[22..26].copy_from_slice(&crc.to_le_bytes());
    [page, bytes[first_page_len..].to_vec()].concat()
}

#[test]
fn ogg_opus_with_a_broken_header_is_refused_with_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("amen_opus.ogg")).unwrap();
    let good: Vec<u8> = bytes[28..28 + usize::from(bytes[27])].to_vec();
    assert_eq!(&good[..8], b"OpusHead");
    // The rebuilt page decodes as before.
    let p = write(dir.path(), "same.opus", &with_opus_head(&good));
    assert_eq!(
        load(&p, &LoadOptions::default()).unwrap().samples.len(),
        8000
    );

    // Family 1 whose mapping table points past the decoded channels.
    let mut bad_map = good.clone();
    bad_map[18] = 1;
    bad_map.extend_from_slice(&[1, 1, 0, 5]);
    let p = write(dir.path(), "badmap.opus", &with_opus_head(&bad_map));
    let err = load(&p, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::InvalidStream { .. }), "{err}");
    assert!(
        err.to_string().contains("Opus identification header"),
        "{err}"
    );
    assert!(err.to_string().contains("stream channel 5"), "{err}");
    assert_names_file(&err, &p);

    // A reserved mapping family, a zero channel count, a cut header, a future major version:
    // each is refused as a broken header, with the rule, naming the file.
    let mut family = good.clone();
    family[18] = 7;
    family.extend_from_slice(&[1, 1, 0, 1]);
    let mut zero = good.clone();
    zero[9] = 0;
    let mut version = good.clone();
    version[8] = 0x10;
    for (name, head, rule) in [
        ("family7.opus", family, "family 7"),
        ("zero.opus", zero, "channel count 0"),
        ("short.opus", good[..12].to_vec(), "19+ bytes"),
        ("version.opus", version, "version 16"),
    ] {
        let p = write(dir.path(), name, &with_opus_head(&head));
        let err = load(&p, &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidStream { .. }), "{name}: {err}");
        assert!(err.to_string().contains(rule), "{name}: {err}");
        assert_names_file(&err, &p);
    }
}

#[test]
fn truncated_and_damaged_opus() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::truncated(dir.path(), "guitar_mono.opus");
    let err = load(&p, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
    assert_names_file(&err, &p);
    // 400 damaged bytes in a 3 s file: the pages fail their CRC and are skipped; the gap is
    // counted, the rest decodes.
    let p = corrupted(dir.path(), "guitar_mono.opus");
    let clean = load(fixture("guitar_mono.opus"), &LoadOptions::default()).unwrap();
    match load(&p, &LoadOptions::default()) {
        Ok(a) => {
            assert!(a.lost_frames > 0, "damage not counted");
            assert!(a.samples.len() < clean.samples.len());
        }
        Err(e) => {
            assert!(matches!(e, Error::Damaged { .. }), "{e}");
            assert_names_file(&e, &p);
        }
    }
}

#[test]
fn every_prefix_of_the_new_formats_is_handled_without_panic() {
    for name in [
        "amen_aac.m4a",
        "amen_aac_faststart.m4a",
        "amen_alac.m4a",
        "amen_adts.aac",
        "amen_opus.ogg",
        "amen_51.opus",
        "amen_opus.webm",
        "video_only.mp4",
    ] {
        sweep_prefixes(name);
    }
}
