//! Split properties over many synthetic corpora and seeds: no track in two sets, no album in
//! two sets for album splits, stratification, determinism, and honest refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::corpus;

use std::collections::{BTreeMap, BTreeSet};

use artist20::{AlbumFallback, Corpus, Error, SplitKind, SplitOptions, make_split};

fn check_disjoint(c: &Corpus, s: &artist20::Split) {
    let sets = [&s.train, &s.val, &s.test];
    let mut seen = BTreeSet::new();
    for set in sets {
        for &i in set {
            assert!(seen.insert(i), "track {} in two sets", c.tracks[i].rel_path);
            assert!(s.label(i).is_some(), "track of an excluded artist in a set");
        }
    }
}

fn albums_of(c: &Corpus, set: &[usize]) -> BTreeSet<(String, String)> {
    set.iter()
        .map(|&i| (c.tracks[i].artist.clone(), c.tracks[i].album.clone()))
        .collect()
}

#[test]
fn song_split_is_disjoint_stratified_and_sklearn_sized() {
    for seed in 0..40u64 {
        let c = corpus(20, |a| 1 + a % 6, |a, b| 3 + (a * 7 + b * 3) % 9);
        let n = c.tracks.len();
        let s = make_split(&c, SplitKind::Song, seed, &SplitOptions::default()).unwrap();
        check_disjoint(&c, &s);
        assert_eq!(s.train.len() + s.val.len() + s.test.len(), n);
        let n_test = (0.1 * n as f64).ceil() as usize;
        assert_eq!(s.test.len(), n_test);
        assert_eq!(s.val.len(), (0.1 * (n - n_test) as f64).ceil() as usize);
        // Stratified: each artist's test share is within one song of 10 %.
        let mut per: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for i in 0..n {
            per.entry(s.label(i).unwrap()).or_default().0 += 1;
        }
        for &i in &s.test {
            per.entry(s.label(i).unwrap()).or_default().1 += 1;
        }
        for (artist, (total, test)) in per {
            let want = total as f64 * n_test as f64 / n as f64;
            assert!(
                (test as f64 - want).abs() <= 1.0 + 1e-9,
                "seed {seed} artist {artist}: {test} of {total}"
            );
        }
    }
}

#[test]
fn same_seed_same_split_other_seed_other_split() {
    let c = corpus(8, |_| 4, |_, _| 6);
    for kind in [
        SplitKind::Song,
        SplitKind::Album,
        SplitKind::AlbumFold { folds: 4, fold: 1 },
    ] {
        let a = make_split(&c, kind, 21, &SplitOptions::default()).unwrap();
        let b = make_split(&c, kind, 21, &SplitOptions::default()).unwrap();
        assert_eq!(a, b);
        let others: Vec<_> = (0..5)
            .map(|s| {
                make_split(&c, kind, 100 + s, &SplitOptions::default())
                    .unwrap()
                    .test
            })
            .collect();
        assert!(
            others.iter().any(|t| *t != a.test),
            "{kind:?}: the seed changes nothing"
        );
    }
}

#[test]
fn album_split_keeps_albums_whole() {
    for seed in 0..30u64 {
        let c = corpus(12, |a| 3 + a % 4, |a, b| 2 + (a + b) % 5);
        let s = make_split(&c, SplitKind::Album, seed, &SplitOptions::default()).unwrap();
        check_disjoint(&c, &s);
        let (tr, va, te) = (
            albums_of(&c, &s.train),
            albums_of(&c, &s.val),
            albums_of(&c, &s.test),
        );
        assert!(
            tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te),
            "seed {seed}"
        );
        // One test and one validation album per artist.
        assert_eq!(te.len(), 12);
        assert_eq!(va.len(), 12);
        assert_eq!(s.train.len() + s.val.len() + s.test.len(), c.tracks.len());
    }
}

#[test]
fn album_split_names_the_artists_it_cannot_serve() {
    let c = corpus(5, |a| [1, 2, 3, 4, 2][a], |_, _| 5);
    let err = make_split(&c, SplitKind::Album, 0, &SplitOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Split { .. }));
    for name in ["artist_00 (1)", "artist_01 (2)", "artist_04 (2)"] {
        assert!(msg.contains(name), "{msg}");
    }
    assert!(
        msg.contains("EligibleArtists") && msg.contains("ValidationFromTrain"),
        "{msg}"
    );

    let eligible = make_split(
        &c,
        SplitKind::Album,
        0,
        &SplitOptions {
            album_fallback: AlbumFallback::EligibleArtists,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(eligible.classes, vec!["artist_02", "artist_03"]);
    assert_eq!(eligible.excluded_artists.len(), 3);
    check_disjoint(&c, &eligible);

    let from_train = make_split(
        &c,
        SplitKind::Album,
        0,
        &SplitOptions {
            album_fallback: AlbumFallback::ValidationFromTrain,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(from_train.classes.len(), 4);
    check_disjoint(&c, &from_train);
    let (tr, te) = (
        albums_of(&c, &from_train.train),
        albums_of(&c, &from_train.test),
    );
    assert!(tr.is_disjoint(&te));
    assert!(
        from_train.notes.iter().any(|n| n.contains("validation")),
        "{:?}",
        from_train.notes
    );
}

#[test]
fn album_folds_partition_the_albums() {
    let c = corpus(6, |_| 6, |_, _| 4);
    let mut tested = BTreeSet::new();
    for fold in 0..6 {
        let s = make_split(
            &c,
            SplitKind::AlbumFold { folds: 6, fold },
            7,
            &SplitOptions::default(),
        )
        .unwrap();
        check_disjoint(&c, &s);
        let te = albums_of(&c, &s.test);
        assert_eq!(te.len(), 6, "one test album per artist in fold {fold}");
        assert!(albums_of(&c, &s.train).is_disjoint(&te));
        for a in te {
            assert!(tested.insert(a), "album tested twice");
        }
    }
    assert_eq!(
        tested.len(),
        36,
        "every album is tested exactly once over the folds"
    );
    assert!(
        make_split(
            &c,
            SplitKind::AlbumFold { folds: 6, fold: 6 },
            0,
            &SplitOptions::default()
        )
        .is_err()
    );
}

#[test]
fn official_split_reads_the_lists() {
    let dir = tempfile::tempdir().unwrap();
    for (a, albums) in [("aa", ["x", "y", "z"]), ("bb", ["p", "q", "r"])] {
        for al in albums {
            let d = dir.path().join(a).join(al);
            std::fs::create_dir_all(&d).unwrap();
            for s in 0..3 {
                std::fs::write(d.join(format!("{s}.mp3")), b"x").unwrap();
            }
        }
    }
    std::fs::write(dir.path().join("a20-trn-albums.list"), "aa/x\nbb/p\n").unwrap();
    std::fs::write(dir.path().join("a20-val-albums.list"), "aa/y\nbb/q\n").unwrap();
    std::fs::write(dir.path().join("a20-tst-albums.list"), "aa/z\n").unwrap();
    let c = Corpus::scan(dir.path()).unwrap();
    let s = make_split(&c, SplitKind::Official, 0, &SplitOptions::default()).unwrap();
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (6, 6, 3));
    assert!(
        s.notes.iter().any(|n| n.contains("3 track(s)")),
        "{:?}",
        s.notes
    ); // bb/r is in no list
    // Without lists the split is refused, not guessed.
    std::fs::remove_file(dir.path().join("a20-tst-albums.list")).unwrap();
    let c = Corpus::scan(dir.path()).unwrap();
    assert!(make_split(&c, SplitKind::Official, 0, &SplitOptions::default()).is_err());
}

#[test]
fn tiny_classes_are_refused_with_a_reason() {
    let c = corpus(3, |_| 1, |a, _| if a == 2 { 1 } else { 10 });
    let err = make_split(&c, SplitKind::Song, 0, &SplitOptions::default()).unwrap_err();
    assert!(err.to_string().contains(">= 2 per class"), "{err}");
}
