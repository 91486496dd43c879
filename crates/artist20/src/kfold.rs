//! K-fold splits over a whole corpus: song k-fold (every song tested exactly once, stratified
//! by artist) and album k-fold (artist20's jackknife). Both are deterministic for a seed on any
//! machine: they depend only on the sorted track list and ChaCha8 streams.
//!
//! # Song k-fold, the algorithm
//! 1. A ChaCha8 generator seeded with `seed` (stream 0) shuffles each artist's songs, artists
//!    in sorted name order, each artist's songs in corpus (sorted path) order before the
//!    shuffle.
//! 2. The shuffled songs, artist after artist, are dealt round-robin over the folds: the
//!    `j`-th song of that sequence goes to fold `j mod K`. So every artist's songs are spread
//!    over the folds with a difference of at most one song, and so are the fold sizes.
//! 3. Fold `i` tests its own songs. Its validation set is drawn from the other folds' songs by
//!    the song split's rule (scikit-learn's stratified `train_test_split`, `val_fraction`
//!    rounded up), with a generator seeded with `seed` on stream `1 + i`, so each fold's
//!    validation set does not depend on which other folds were made. Where the corpus is too
//!    small for scikit-learn's rules (fewer validation songs than artists, an artist with one
//!    song left), the same proportional allocation is used without its refusal: an artist
//!    with a single remaining song keeps it for training, and the split's notes name the
//!    artists without validation songs.
//!
//! # Album k-fold (jackknife), the algorithm
//! Every artist needs at least 3 albums, and `K >= 3`. Per artist (sorted), the sorted albums
//! are shuffled (stream 0) and album `j` takes position `j mod K`; an artist with `n` albums
//! occupies positions `0..m`, `m = min(n, K)`. Fold `i` tests the albums at position `i`,
//! validates on those at position `(i + 1) mod m`, and trains on the rest; where `i >= m` the
//! artist has no test album in that fold (the notes say so) and validates on position
//! `i mod m`. With artist20's 6 albums per artist and `K = 6`, fold `i` tests album `i` of
//! every artist, validates on album `i + 1` and trains on the other four.

use std::collections::BTreeSet;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::split::{SplitKind, SplitOptions, approximate_mode, group_by_class};
use crate::{Corpus, Error, Result};

/// Sets of one fold: (kept artists, train, val, test, notes).
pub(crate) type FoldSets = (Vec<String>, Vec<usize>, Vec<usize>, Vec<usize>, Vec<String>);

fn check_fold(kind: SplitKind, folds: usize, fold: usize, min_folds: usize) -> Result<()> {
    if folds < min_folds || fold >= folds {
        return Err(Error::Invalid {
            field: "k-fold",
            rule: format!(
                "{}: need {min_folds} <= folds and fold < folds, got fold {fold} of {folds}",
                kind.family()
            ),
        });
    }
    Ok(())
}

/// The fold (0-based) of every corpus track in song k-fold with `folds` folds.
pub fn song_fold_assignment(corpus: &Corpus, folds: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let labels = corpus.labels();
    let n_artists = corpus.artists().len();
    let mut assignment = vec![0usize; corpus.tracks.len()];
    let mut position = 0usize;
    for artist in 0..n_artists {
        let mut songs: Vec<usize> = (0..corpus.tracks.len())
            .filter(|&i| labels[i] == artist)
            .collect();
        songs.shuffle(&mut rng);
        for s in songs {
            assignment[s] = position % folds.max(1);
            position += 1;
        }
    }
    assignment
}

/// scikit-learn's stratified draw of `ceil(fraction * n)` items (the song split's rule)
/// without its refusals: classes with one item keep it (it goes to the first set), and a draw
/// smaller than the number of classes leaves some classes out of the second set.
pub(crate) fn stratified_lenient(
    items: &[usize],
    labels: &[usize],
    fraction: f64,
    rng: &mut ChaCha8Rng,
) -> (Vec<usize>, Vec<usize>) {
    let (_, by_class) = group_by_class(items, labels);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    let pool: Vec<&Vec<usize>> = by_class.iter().filter(|m| m.len() >= 2).collect();
    for single in by_class.iter().filter(|m| m.len() < 2) {
        first.extend_from_slice(single);
    }
    let pool_n: usize = pool.iter().map(|m| m.len()).sum();
    let n_second = ((fraction * items.len() as f64).ceil() as usize).min(pool_n / 2);
    let counts: Vec<usize> = pool.iter().map(|m| m.len()).collect();
    let n_i = approximate_mode(&counts, pool_n - n_second, rng);
    let remaining: Vec<usize> = counts.iter().zip(&n_i).map(|(c, t)| c - t).collect();
    let t_i = approximate_mode(&remaining, n_second, rng);
    for (k, members) in pool.iter().enumerate() {
        let mut m = (*members).clone();
        m.shuffle(rng);
        first.extend_from_slice(&m[..n_i[k]]);
        second.extend_from_slice(&m[n_i[k]..n_i[k] + t_i[k]]);
    }
    first.sort_unstable();
    second.sort_unstable();
    (first, second)
}

/// Fold `fold` of song k-fold (the module docs give the algorithm).
pub(crate) fn song_kfold(
    corpus: &Corpus,
    folds: usize,
    fold: usize,
    seed: u64,
    options: &SplitOptions,
) -> Result<FoldSets> {
    let kind = SplitKind::SongKFold { folds, fold };
    check_fold(kind, folds, fold, 2)?;
    let artists = corpus.artists();
    if artists.len() < 2 {
        return Err(Error::Split {
            split: kind.name(),
            reason: format!("{} artist(s); a classifier needs >= 2", artists.len()),
        });
    }
    let assignment = song_fold_assignment(corpus, folds, seed);
    let labels = corpus.labels();
    let test: Vec<usize> = (0..corpus.tracks.len())
        .filter(|&i| assignment[i] == fold)
        .collect();
    let rest: Vec<usize> = (0..corpus.tracks.len())
        .filter(|&i| assignment[i] != fold)
        .collect();
    let rest_labels: Vec<usize> = rest.iter().map(|&i| labels[i]).collect();
    let mut vrng = ChaCha8Rng::seed_from_u64(seed);
    vrng.set_stream(1 + fold as u64);
    let (train, val) = stratified_lenient(&rest, &rest_labels, options.val_fraction, &mut vrng);
    let mut notes = Vec::new();
    let short: Vec<String> = artists
        .iter()
        .enumerate()
        .filter_map(|(a, name)| {
            let n = labels.iter().filter(|&&l| l == a).count();
            (n < folds).then(|| format!("{name} ({n})"))
        })
        .collect();
    if !short.is_empty() {
        notes.push(format!(
            "artists with fewer songs than the {folds} folds (not tested in every fold): {}",
            short.join(", ")
        ));
    }
    Ok((artists, train, val, test, notes))
}

/// Fold `fold` of album k-fold, the jackknife (the module docs give the algorithm).
pub(crate) fn album_kfold(
    corpus: &Corpus,
    folds: usize,
    fold: usize,
    seed: u64,
) -> Result<FoldSets> {
    let kind = SplitKind::AlbumKFold { folds, fold };
    check_fold(kind, folds, fold, 3)?;
    let albums = corpus.albums_by_artist();
    let short: Vec<String> = albums
        .iter()
        .filter(|(_, a)| a.len() < 3)
        .map(|(n, a)| format!("{n} ({})", a.len()))
        .collect();
    if !short.is_empty() {
        return Err(Error::Split {
            split: kind.family().to_string(),
            reason: format!(
                "{} of {} artists have fewer than 3 albums (the jackknife tests one album, validates on another and trains on the rest): {}. \
                 Use song k-fold (--split song-kfold) for this corpus.",
                short.len(),
                albums.len(),
                short.join(", ")
            ),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut test_albums, mut val_albums) = (BTreeSet::new(), BTreeSet::new());
    let mut notes = Vec::new();
    for (artist, list) in &albums {
        let mut shuffled = list.clone();
        shuffled.shuffle(&mut rng);
        let m = shuffled.len().min(folds);
        let (test_pos, val_pos) = if fold < m {
            (Some(fold), (fold + 1) % m)
        } else {
            notes.push(format!(
                "{artist}: {} albums, so no test album in fold {fold}",
                shuffled.len()
            ));
            (None, fold % m)
        };
        for (j, album) in shuffled.iter().enumerate() {
            let key = (artist.clone(), album.clone());
            if Some(j % folds) == test_pos {
                test_albums.insert(key);
            } else if j % folds == val_pos {
                val_albums.insert(key);
            }
        }
    }
    let key = |i: usize| {
        (
            corpus.tracks[i].artist.clone(),
            corpus.tracks[i].album.clone(),
        )
    };
    let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..corpus.tracks.len() {
        let k = key(i);
        if test_albums.contains(&k) {
            test.push(i);
        } else if val_albums.contains(&k) {
            val.push(i);
        } else {
            train.push(i);
        }
    }
    let kept = albums.into_iter().map(|(n, _)| n).collect();
    Ok((kept, train, val, test, notes))
}
