//! Helpers shared by the root package's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/audio-io/tests/fixtures")
        .join(name)
}

/// root/<artist>/<album>/<file>, copied from the audio-io fixtures: every format family people's
/// libraries hold, plus `band/loops/notes.m4a`, a text file. Returns the audio files' paths and
/// the text file's.
pub fn mixed_library(root: &Path) -> (Vec<PathBuf>, PathBuf) {
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
    let audio = files
        .iter()
        .map(|(artist, album, file)| {
            let dir = root.join(artist).join(album);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(fixture(file), dir.join(file)).unwrap();
            dir.join(file)
        })
        .collect();
    let text = root.join("band/loops/notes.m4a");
    std::fs::write(&text, "not audio, just text\n".repeat(10)).unwrap();
    (audio, text)
}

/// A list file of three artists of the real `small` tier (fetched with apt on first use):
/// 32 songs, ~80 minutes of music, at `dir/subset.tsv`.
pub fn small_subset(dir: &Path) -> PathBuf {
    // One fetch at a time: the tests of one binary run on threads, and the first fetch
    // writes the corpus that the others then find ready.
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let corpus = {
        let _turn = FETCH.lock().unwrap_or_else(|e| e.into_inner());
        artist_crnn::data::open_corpus(None, artist_crnn::data::Tier::Small)
            .expect("the small tier (needs apt and network on first use)")
    };
    let keep = ["eric_matyas", "roberto_lorenz", "sean_hawk"];
    let list = dir.join("subset.tsv");
    let lines: String = corpus
        .tracks
        .iter()
        .filter(|t| keep.contains(&t.artist.as_str()))
        .map(|t| {
            format!(
                "{}\t{}\t{}\n",
                std::fs::canonicalize(&t.path).unwrap().display(),
                t.artist,
                t.album
            )
        })
        .collect();
    std::fs::write(&list, lines).unwrap();
    list
}
