//! Helpers shared by the bad-input tests: fixtures, scratch files, the "names the file" check.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use audio_io::Error;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The first half of a fixture's bytes.
pub fn truncated(dir: &Path, name: &str) -> PathBuf {
    let bytes = std::fs::read(fixture(name)).unwrap();
    write(dir, &format!("cut-{name}"), &bytes[..bytes.len() / 2])
}

/// A fixture with 400 bytes in the middle overwritten by a fixed pseudo-random pattern.
pub fn corrupted(dir: &Path, name: &str) -> PathBuf {
    let mut bytes = std::fs::read(fixture(name)).unwrap();
    let mid = bytes.len() / 2;
    let mut state = 0x2545_f491_u32;
    for b in &mut bytes[mid..mid + 400] {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        *b = (state >> 24) as u8;
    }
    write(dir, &format!("damaged-{name}"), &bytes)
}

pub fn assert_names_file(err: &Error, path: &Path) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name the file: {msg}"
    );
}

/// Loads every prefix at ~37 cut points and every one of the first 64; none may panic.
pub fn sweep_prefixes(name: &str) {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let step = (bytes.len() / 37).max(1);
    let cuts = (0..bytes.len().min(64)).chain((0..bytes.len()).step_by(step));
    for cut in cuts {
        let r = audio_io::load_bytes(
            name,
            bytes[..cut].to_vec(),
            &audio_io::LoadOptions::default(),
        );
        if let Err(e) = r {
            assert!(e.to_string().contains(name), "{e}");
        }
    }
}
