//! Scanning rules and slicing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use artist20::{Corpus, SkipReason, SliceIndex, SliceMode};
use ndarray::Array2;

#[test]
fn scan_sorts_skips_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for f in [
        "b_artist/al1/02.mp3",
        "b_artist/al1/01.ogg",
        "a_artist/x/cd1/t.flac",
        "a_artist/x/notes.txt",
        "a_artist/x/.hidden.mp3",
        "a_artist/loose.mp3",
        ".git/x/y.mp3",
        "README.md",
    ] {
        let path = p.join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }
    let c = Corpus::scan(p).unwrap();
    let rels: Vec<&str> = c.tracks.iter().map(|t| t.rel_path.as_str()).collect();
    assert_eq!(
        rels,
        vec![
            "a_artist/x/cd1/t.flac",
            "b_artist/al1/01.ogg",
            "b_artist/al1/02.mp3"
        ]
    );
    assert_eq!(c.tracks[0].album, "x");
    assert_eq!(c.artists(), vec!["a_artist", "b_artist"]);
    assert_eq!(c.labels(), vec![0, 1, 1]);
    assert_eq!(c.tracks[2].file_name(), "02.mp3");
    let counts: std::collections::BTreeMap<SkipReason, usize> =
        c.skipped_counts().into_iter().collect();
    assert_eq!(counts[&SkipReason::Hidden], 2);
    assert_eq!(counts[&SkipReason::NotAudio], 1);
    assert_eq!(counts[&SkipReason::OutsideAlbum], 2);
}

#[test]
fn list_file_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.tsv");
    std::fs::write(
        &list,
        "# comment\nmusic/a.mp3\tzed\tfirst\nmusic/b.mp3\tann\n\n",
    )
    .unwrap();
    let c = Corpus::from_list(&list).unwrap();
    assert_eq!(c.tracks.len(), 2);
    assert_eq!(c.tracks[1].album, "unknown");
    assert_eq!(c.artists(), vec!["ann", "zed"]);
    std::fs::write(&list, "only-one-field\n").unwrap();
    assert!(
        Corpus::from_list(&list)
            .unwrap_err()
            .to_string()
            .contains("line 1")
    );
    std::fs::write(&list, "a.mp3\tx\na.mp3\ty\n").unwrap();
    assert!(
        Corpus::from_list(&list)
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    assert!(Corpus::scan(&dir.path().join("missing")).is_err());
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Corpus::scan(empty.path()),
        Err(artist20::Error::EmptyCorpus { .. })
    ));
}

#[test]
fn paper_slicing_drops_the_last_full_window() {
    assert_eq!(SliceMode::Paper.count(940, 94), 9);
    assert_eq!(SliceMode::AllFull.count(940, 94), 10);
    assert_eq!(SliceMode::Paper.count(187, 94), 0); // under 2L: the song vanishes
    assert_eq!(SliceMode::AllFull.count(187, 94), 1);
    let features = vec![
        Some(Array2::from_shape_fn((4, 10), |(m, t)| {
            (m * 100 + t) as f32
        })),
        None,
        Some(Array2::zeros((4, 5))),
    ];
    let idx = SliceIndex::new(&features, &[0, 1, 2], 3, SliceMode::Paper).unwrap();
    assert_eq!(idx.len(), 2); // floor(10/3) - 1 = 2 from track 0; none from 1 (no features) and 2 (5 < 6)
    assert_eq!(idx.dropped, vec![1, 2]);
    let v = idx.view(&features, 1).unwrap();
    assert_eq!(v.dim(), (4, 3));
    assert_eq!(v[[2, 0]], 203.0);
    assert!(idx.view(&features, 5).is_none());
    let all = SliceIndex::new(&features, &[0, 2], 3, SliceMode::AllFull).unwrap();
    assert_eq!(all.len(), 4);
}
