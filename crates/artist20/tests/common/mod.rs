//! Helpers shared by the tests: the libhdf5 turn-taking lock, a sine WAV writer for
//! synthetic corpora, and synthetic corpora without files for the split tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use artist20::{Corpus, Track};

/// libhdf5 is one global library (its file locks too); these tests take turns with it.
static HDF5: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    HDF5.lock().unwrap_or_else(|e| e.into_inner())
}

/// A 16 kHz mono 16-bit WAV of a sine at `freq` Hz, amplitude 0.3.
pub fn wav(path: &Path, seconds: f32, freq: f32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(seconds * 16_000.0) as usize {
        let x = (2.0 * std::f32::consts::PI * freq * i as f32 / 16_000.0).sin() * 0.3;
        w.write_sample((x * 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// A corpus of `artists` artists without files; artist `a` has `albums(a)` albums of
/// `songs(a, b)` songs.
pub fn corpus(
    artists: usize,
    albums: impl Fn(usize) -> usize,
    songs: impl Fn(usize, usize) -> usize,
) -> Corpus {
    let mut tracks = Vec::new();
    for a in 0..artists {
        for b in 0..albums(a) {
            for s in 0..songs(a, b) {
                let rel = format!("artist_{a:02}/album_{b}/song_{s:02}.mp3");
                tracks.push(Track {
                    path: PathBuf::from(&rel),
                    rel_path: rel,
                    artist: format!("artist_{a:02}"),
                    album: format!("album_{b}"),
                });
            }
        }
    }
    tracks.sort_by(|x, y| x.rel_path.cmp(&y.rel_path));
    Corpus {
        source: PathBuf::from("synthetic"),
        tracks,
        skipped: Vec::new(),
    }
}
