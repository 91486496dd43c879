//! A folder holding every kind of file people's libraries have (`.m4a`, `.opus`, `.mp3`,
//! `.ogg`, `.flac`, `.wav`, and a text file named `.m4a`) goes through `prepare`'s library call:
//! every audio file is decoded into the store, the bad one is named with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use artist20::{Corpus, FeatureConfig};
use common::mixed_library;

#[test]
fn prepare_reads_a_mixed_library_and_names_the_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("library");
    let (audio, _) = mixed_library(&root);
    let corpus = Corpus::open(&root).unwrap();
    assert_eq!(
        corpus.tracks.len(),
        audio.len() + 1,
        "every file is taken as a track"
    );
    let store = dir.path().join("features.h5");
    let report =
        artist_crnn::data::prepare_store(&corpus, &store, &FeatureConfig::default(), false)
            .unwrap();
    assert_eq!(report.computed, audio.len(), "{:?}", report.failed);
    assert_eq!(report.failed.len(), 1);
    let bad = &report.failed[0];
    assert!(bad.rel_path.ends_with("notes.m4a"), "{}", bad.rel_path);
    assert!(
        bad.error.contains("not a supported audio file"),
        "{}",
        bad.error
    );
    // A second run is a no-op, the failure still reported.
    let again = artist_crnn::data::prepare_store(&corpus, &store, &FeatureConfig::default(), false)
        .unwrap();
    assert!(again.noop);
    assert_eq!((again.reused, again.failed.len()), (audio.len(), 1));
}
