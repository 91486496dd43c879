//! The one format list against what is written and what is built: both READMEs carry the
//! generated table, and every enabled format decodes a committed fixture.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use audio_io::formats::{self, FORMATS};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn readmes_carry_the_generated_table() {
    let mut checked = Vec::new();
    for readme in [
        crate_dir().join("README.md"),
        crate_dir().join("../../README.md"),
    ] {
        let Ok(text) = std::fs::read_to_string(&readme) else {
            // The crate outside this workspace has no workspace README: say so on the
            // terminal, past the test harness's capture.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "readmes_carry_the_generated_table: skipped {} (not present: the crate is built outside its workspace)",
                readme.display()
            );
            continue;
        };
        let regenerated = formats::with_table(&text)
            .unwrap_or_else(|| panic!("{}: no generated format table", readme.display()));
        assert!(
            regenerated == text,
            "{}: the format table is stale; run `cargo run -p audio-io --example formats -- --write`",
            readme.display()
        );
        checked.push(readme);
    }
    assert!(!checked.is_empty());
    println!("format tables up to date in {checked:?}");
}

#[test]
fn every_enabled_format_decodes_a_fixture() {
    let fixtures = crate_dir().join("tests/fixtures");
    // One fixture per format name (a container's extension alone cannot tell Vorbis from Opus).
    let sample = |name: &str| match name {
        "MP3" => "fanfare.mp3",
        "Ogg Vorbis" => "fanfare.ogg",
        "Ogg Opus" => "guitar_mono.opus",
        "FLAC" => "loop_amen.flac",
        "WAV" => "house_lo.wav",
        "MP4/M4A" => "amen_alac.m4a",
        "ADTS AAC" => "amen_adts.aac",
        "Matroska/WebM" => "amen_opus.webm",
        other => panic!("format {other:?} has no fixture: add one and a parity test"),
    };
    for f in FORMATS {
        let file = sample(f.name);
        let ext = file.rsplit('.').next().unwrap();
        assert!(f.extensions.contains(&ext), "{}: {file}", f.name);
        let result = audio_io::load(fixtures.join(file), &audio_io::LoadOptions::default());
        if f.enabled {
            let audio = result.unwrap_or_else(|e| panic!("{}: {e}", f.name));
            assert!(!audio.samples.is_empty());
        } else {
            assert!(
                result.is_err(),
                "{} is listed as disabled but decodes",
                f.name
            );
        }
    }
}
