//! Helpers shared by the root package's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/audio-io/tests/fixtures")
        .join(name)
}

/// root/<artist>/<album>/<file>, copied from the audio-io fixtures: every format family people's
/// libraries hold, plus `band/loops/notes.m4a`, a text file. Returns the audio file names.
pub fn mixed_library(root: &Path) -> Vec<&'static str> {
    let files = [
        ("guitarist", "first", "guitar_mono.m4a"),
        ("guitarist", "first", "guitar_mono.opus"),
        ("guitarist", "first", "guitar_16k_mono_32kbps.mp3"),
        ("band", "loops", "fanfare.ogg"),
        ("band", "loops", "loop_amen.flac"),
        ("band", "loops", "house_lo.wav"),
        ("band", "loops", "amen_alac.m4a"),
        ("band", "loops", "amen_51.opus"),
    ];
    for (artist, album, file) in files {
        let dir = root.join(artist).join(album);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(fixture(file), dir.join(file)).unwrap();
    }
    std::fs::write(
        root.join("band/loops/notes.m4a"),
        "not audio, just text\n".repeat(10),
    )
    .unwrap();
    files.iter().map(|f| f.2).collect()
}
