//! Train / validation / test splits, deterministic for a seed on any machine (they depend
//! only on the sorted track list and a ChaCha8 stream, never on directory order).

use std::collections::BTreeSet;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Corpus, Error, Result};

/// Which split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitKind {
    /// The paper's song split: stratified by artist, 10 % of songs to test, then 10 % of the
    /// rest to validation (two `train_test_split(..., stratify=y)` calls; sizes rounded up as
    /// scikit-learn does). Albums are shared between sets (the "producer effect").
    Song,
    /// The paper's album split: per artist one album to test, one to validation, the rest to
    /// training (seeded shuffle of the artist's albums).
    Album,
    /// artist20's official album lists (`a20-{trn,val,tst}-albums.list`).
    Official,
    /// Album k-fold (artist20's 6-fold jackknife is `folds: 6`): per artist the albums are
    /// shuffled and dealt to the folds; fold `fold`'s albums are the test set, 10 % of the
    /// remaining songs (stratified) the validation set.
    AlbumFold {
        /// Number of folds.
        folds: usize,
        /// Which fold is the test set (0-based).
        fold: usize,
    },
    /// Song k-fold: every song of the corpus is in the test set of exactly one fold, each
    /// artist's songs spread over the folds as evenly as possible (a difference of at most one
    /// song), validation a stratified `val_fraction` of the other folds' songs. The algorithm
    /// is in [`song_fold_assignment`](crate::song_fold_assignment)'s module docs.
    SongKFold {
        /// Number of folds (>= 2).
        folds: usize,
        /// Which fold is the test set (0-based).
        fold: usize,
    },
    /// Album k-fold, artist20's jackknife: fold `i` tests album `i` of every artist, validates
    /// on another album and trains on the rest; every artist needs >= 3 albums, else the split
    /// is refused with the artists that fall short named.
    AlbumKFold {
        /// Number of folds (>= 3; artist20: 6).
        folds: usize,
        /// Which fold is the test set (0-based).
        fold: usize,
    },
}

impl SplitKind {
    /// Short name: `song`, `album`, `official`, `album-fold-<fold>-of-<folds>`,
    /// `song-kfold-<fold>-of-<folds>`, `album-kfold-<fold>-of-<folds>`.
    pub fn name(&self) -> String {
        match self {
            SplitKind::Song => "song".into(),
            SplitKind::Album => "album".into(),
            SplitKind::Official => "official".into(),
            SplitKind::AlbumFold { folds, fold } => format!("album-fold-{fold}-of-{folds}"),
            SplitKind::SongKFold { folds, fold } => format!("song-kfold-{fold}-of-{folds}"),
            SplitKind::AlbumKFold { folds, fold } => format!("album-kfold-{fold}-of-{folds}"),
        }
    }

    /// The split called `name` (as [`name`](Self::name) writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        let fold_of = |rest: &str| -> Option<(usize, usize)> {
            let (fold, folds) = rest.split_once("-of-")?;
            Some((fold.parse().ok()?, folds.parse().ok()?))
        };
        Some(match name {
            "song" => SplitKind::Song,
            "album" => SplitKind::Album,
            "official" => SplitKind::Official,
            _ => {
                for (prefix, make) in [
                    (
                        "song-kfold-",
                        (|folds, fold| SplitKind::SongKFold { folds, fold })
                            as fn(usize, usize) -> SplitKind,
                    ),
                    ("album-kfold-", |folds, fold| SplitKind::AlbumKFold {
                        folds,
                        fold,
                    }),
                    ("album-fold-", |folds, fold| SplitKind::AlbumFold {
                        folds,
                        fold,
                    }),
                ] {
                    if let Some((fold, folds)) = name.strip_prefix(prefix).and_then(fold_of) {
                        return Some(make(folds, fold));
                    }
                }
                return None;
            }
        })
    }

    /// The split's name without its fold: `song-kfold` for every fold of song k-fold, the
    /// [`name`](Self::name) of splits without folds.
    pub fn family(&self) -> &'static str {
        match self {
            SplitKind::Song => "song",
            SplitKind::Album => "album",
            SplitKind::Official => "official",
            SplitKind::AlbumFold { .. } => "album-fold",
            SplitKind::SongKFold { .. } => "song-kfold",
            SplitKind::AlbumKFold { .. } => "album-kfold",
        }
    }

    /// `(fold, folds)` of a k-fold split.
    pub fn fold(&self) -> Option<(usize, usize)> {
        match *self {
            SplitKind::AlbumFold { folds, fold }
            | SplitKind::SongKFold { folds, fold }
            | SplitKind::AlbumKFold { folds, fold } => Some((fold, folds)),
            _ => None,
        }
    }
}

/// What the album split does with artists that have too few albums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlbumFallback {
    /// Refuse, naming the artists with fewer than 3 albums.
    #[default]
    Strict,
    /// Keep only artists with >= 3 albums (1 test, 1 validation, >= 1 training album).
    EligibleArtists,
    /// Keep artists with >= 2 albums: one album to test, the rest to training, and validation
    /// drawn as 10 % of the training songs (stratified). The test set stays album-disjoint.
    ValidationFromTrain,
}

/// Split settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitOptions {
    /// Fraction of songs to test (song split).
    ///
    /// Default: `0.1` (paper).
    pub test_fraction: f64,
    /// Fraction of the remaining songs to validation (song split; album fallbacks).
    ///
    /// Default: `0.1` (paper).
    pub val_fraction: f64,
    /// Album split with too few albums.
    ///
    /// Default: [`AlbumFallback::Strict`].
    pub album_fallback: AlbumFallback,
}

impl Default for SplitOptions {
    fn default() -> Self {
        Self {
            test_fraction: 0.1,
            val_fraction: 0.1,
            album_fallback: AlbumFallback::Strict,
        }
    }
}

/// A split of a corpus's tracks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Which split.
    pub kind: SplitKind,
    /// Its seed.
    pub seed: u64,
    /// Class names in label order (all artists, or the eligible ones).
    pub classes: Vec<String>,
    /// Training track indices (into `corpus.tracks`), sorted.
    pub train: Vec<usize>,
    /// Validation track indices, sorted.
    pub val: Vec<usize>,
    /// Test track indices, sorted.
    pub test: Vec<usize>,
    /// Label of each corpus track in this split (`None`: artist excluded).
    pub labels: Vec<Option<usize>>,
    /// Artists left out, with why.
    pub excluded_artists: Vec<(String, String)>,
    /// What was done beyond the plain rule (fallbacks, tracks outside the lists).
    pub notes: Vec<String>,
}

impl Split {
    /// Label of track `i`; `None` if its artist is not in this split.
    pub fn label(&self, i: usize) -> Option<usize> {
        self.labels.get(i).copied().flatten()
    }
}

/// scikit-learn's `_approximate_mode`: split `n_draws` over classes in proportion to
/// `counts`, the largest remainders first, ties broken at random.
pub(crate) fn approximate_mode(
    counts: &[usize],
    n_draws: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    let total: usize = counts.iter().sum();
    if total == 0 {
        return vec![0; counts.len()];
    }
    let continuous: Vec<f64> = counts
        .iter()
        .map(|&c| c as f64 / total as f64 * n_draws as f64)
        .collect();
    let mut floored: Vec<usize> = continuous.iter().map(|c| c.floor() as usize).collect();
    let mut need = n_draws.saturating_sub(floored.iter().sum());
    let remainder: Vec<f64> = continuous
        .iter()
        .zip(&floored)
        .map(|(c, f)| c - *f as f64)
        .collect();
    let mut values: Vec<f64> = remainder.clone();
    values.sort_by(|a, b| b.total_cmp(a));
    values.dedup();
    for v in values {
        if need == 0 {
            break;
        }
        let mut inds: Vec<usize> = (0..counts.len()).filter(|&i| remainder[i] == v).collect();
        inds.shuffle(rng);
        for &i in inds.iter().take(need) {
            floored[i] += 1;
        }
        need = need.saturating_sub(inds.len());
    }
    floored
}

/// The distinct labels in ascending order, and the items of each.
pub(crate) fn group_by_class(
    items: &[usize],
    labels: &[usize],
) -> (BTreeSet<usize>, Vec<Vec<usize>>) {
    let classes: BTreeSet<usize> = labels.iter().copied().collect();
    let by_class = classes
        .iter()
        .map(|c| {
            items
                .iter()
                .zip(labels)
                .filter(|(_, l)| *l == c)
                .map(|(i, _)| *i)
                .collect()
        })
        .collect();
    (classes, by_class)
}

/// scikit-learn's stratified `train_test_split(items, test_size=fraction, stratify=labels)`:
/// `n_test = ceil(fraction * n)`; returns (train, test).
fn stratified(
    items: &[usize],
    labels: &[usize],
    fraction: f64,
    rng: &mut ChaCha8Rng,
    what: &str,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let n = items.len();
    let n_test = (fraction * n as f64).ceil() as usize;
    let n_train = n - n_test.min(n);
    let (classes, by_class) = group_by_class(items, labels);
    let fail = |reason: String| Error::Split {
        split: what.to_string(),
        reason,
    };
    if let Some(small) = by_class.iter().position(|v| v.len() < 2) {
        return Err(fail(format!(
            "class {} has {} song(s); stratification needs >= 2 per class",
            classes.iter().nth(small).copied().unwrap_or(0),
            by_class[small].len()
        )));
    }
    if n_test < classes.len() || n_train < classes.len() {
        return Err(fail(format!(
            "{n_test} test and {n_train} training songs for {} classes: each set needs >= 1 per class (scikit-learn rule)",
            classes.len()
        )));
    }
    let counts: Vec<usize> = by_class.iter().map(|v| v.len()).collect();
    let n_i = approximate_mode(&counts, n_train, rng);
    let remaining: Vec<usize> = counts.iter().zip(&n_i).map(|(c, t)| c - t).collect();
    let t_i = approximate_mode(&remaining, n_test, rng);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (k, members) in by_class.iter().enumerate() {
        let mut m = members.clone();
        m.shuffle(rng);
        train.extend_from_slice(&m[..n_i[k]]);
        test.extend_from_slice(&m[n_i[k]..n_i[k] + t_i[k]]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok((train, test))
}

/// Makes the split `kind` of `corpus` for `seed`.
pub fn make_split(
    corpus: &Corpus,
    kind: SplitKind,
    seed: u64,
    options: &SplitOptions,
) -> Result<Split> {
    for (field, f) in [
        ("test_fraction", options.test_fraction),
        ("val_fraction", options.val_fraction),
    ] {
        if !(f > 0.0 && f < 1.0) {
            return Err(Error::Invalid {
                field,
                rule: format!("must be in (0, 1), got {f}"),
            });
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let all_artists = corpus.artists();
    let labels_all = corpus.labels();
    let name = kind.name();
    let mut notes = Vec::new();
    let mut excluded = Vec::new();
    // (test, val, train) track sets, and the artists kept.
    let (kept, train, val, test): (Vec<String>, Vec<usize>, Vec<usize>, Vec<usize>) = match kind {
        SplitKind::Song => {
            let items: Vec<usize> = (0..corpus.tracks.len()).collect();
            let (rest, test) =
                stratified(&items, &labels_all, options.test_fraction, &mut rng, &name)?;
            let rest_labels: Vec<usize> = rest.iter().map(|&i| labels_all[i]).collect();
            let (train, val) =
                stratified(&rest, &rest_labels, options.val_fraction, &mut rng, &name)?;
            (all_artists.clone(), train, val, test)
        }
        SplitKind::Album | SplitKind::AlbumFold { .. } => {
            let (folds, fold) = match kind {
                SplitKind::AlbumFold { folds, fold } => {
                    if folds < 2 || fold >= folds {
                        return Err(Error::Invalid {
                            field: "album fold",
                            rule: format!(
                                "need 2 <= folds and fold < folds, got fold {fold} of {folds}"
                            ),
                        });
                    }
                    (folds, fold)
                }
                _ => (0, 0),
            };
            let min_albums = match (kind, options.album_fallback) {
                (SplitKind::AlbumFold { .. }, _) => 2,
                (_, AlbumFallback::ValidationFromTrain) => 2,
                _ => 3,
            };
            let albums = corpus.albums_by_artist();
            let short: Vec<(String, usize)> = albums
                .iter()
                .filter(|(_, a)| a.len() < min_albums)
                .map(|(n, a)| (n.clone(), a.len()))
                .collect();
            if !short.is_empty()
                && matches!(kind, SplitKind::Album)
                && options.album_fallback == AlbumFallback::Strict
            {
                let list: Vec<String> = short.iter().map(|(n, k)| format!("{n} ({k})")).collect();
                let eligible = albums.len() - short.len();
                let two_plus = albums.iter().filter(|(_, a)| a.len() >= 2).count();
                return Err(Error::Split {
                    split: name,
                    reason: format!(
                        "{} of {} artists have fewer than 3 albums (1 test, 1 validation, >= 1 training): {}. \
                         Fallbacks: EligibleArtists keeps the {eligible} artists with >= 3 albums; \
                         ValidationFromTrain keeps the {two_plus} with >= 2 albums and draws validation from training songs.",
                        short.len(),
                        albums.len(),
                        list.join(", ")
                    ),
                });
            }
            for (artist, k) in &short {
                excluded.push((
                    artist.clone(),
                    format!("{k} album(s), the split needs {min_albums}"),
                ));
            }
            let kept: Vec<String> = albums
                .iter()
                .filter(|(_, a)| a.len() >= min_albums)
                .map(|(n, _)| n.clone())
                .collect();
            if kept.len() < 2 {
                return Err(Error::Split {
                    split: name,
                    reason: format!(
                        "only {} artist(s) have >= {min_albums} albums; a classifier needs >= 2",
                        kept.len()
                    ),
                });
            }
            let (mut test_albums, mut val_albums) = (BTreeSet::new(), BTreeSet::new());
            for (artist, list) in albums.iter().filter(|(n, _)| kept.contains(n)) {
                let mut shuffled = list.clone();
                shuffled.shuffle(&mut rng);
                match kind {
                    SplitKind::AlbumFold { .. } => {
                        for (i, album) in shuffled.iter().enumerate() {
                            if i % folds == fold {
                                test_albums.insert((artist.clone(), album.clone()));
                            }
                        }
                        if shuffled.len() <= fold {
                            notes.push(format!(
                                "{artist}: {} albums, so no test album in fold {fold}",
                                shuffled.len()
                            ));
                        }
                    }
                    _ => {
                        test_albums.insert((artist.clone(), shuffled[0].clone()));
                        if min_albums == 3 {
                            val_albums.insert((artist.clone(), shuffled[1].clone()));
                        }
                    }
                }
            }
            let in_kept = |i: &usize| kept.contains(&corpus.tracks[*i].artist);
            let key = |i: usize| {
                (
                    corpus.tracks[i].artist.clone(),
                    corpus.tracks[i].album.clone(),
                )
            };
            let test: Vec<usize> = (0..corpus.tracks.len())
                .filter(in_kept)
                .filter(|&i| test_albums.contains(&key(i)))
                .collect();
            let mut val: Vec<usize> = (0..corpus.tracks.len())
                .filter(in_kept)
                .filter(|&i| val_albums.contains(&key(i)))
                .collect();
            let mut train: Vec<usize> = (0..corpus.tracks.len())
                .filter(in_kept)
                .filter(|&i| !test_albums.contains(&key(i)) && !val_albums.contains(&key(i)))
                .collect();
            if val_albums.is_empty() {
                let labels: Vec<usize> = train.iter().map(|&i| labels_all[i]).collect();
                let (t, v) = stratified(&train, &labels, options.val_fraction, &mut rng, &name)?;
                train = t;
                val = v;
                notes.push(format!(
                    "validation: {} % of the training songs (stratified), not a held-out album",
                    (options.val_fraction * 100.0).round()
                ));
            }
            (kept, train, val, test)
        }
        SplitKind::SongKFold { folds, fold } | SplitKind::AlbumKFold { folds, fold } => {
            let (kept, train, val, test, fold_notes) = match kind {
                SplitKind::SongKFold { .. } => {
                    crate::kfold::song_kfold(corpus, folds, fold, seed, options)?
                }
                _ => crate::kfold::album_kfold(corpus, folds, fold, seed)?,
            };
            notes.extend(fold_notes);
            (kept, train, val, test)
        }
        SplitKind::Official => {
            let lists = corpus.official_lists().ok_or_else(|| Error::Split {
                split: name.clone(),
                reason:
                    "a20-{trn,val,tst}-albums.list not found next to the corpus (artist20 only)"
                        .into(),
            })?;
            let set = |l: &[(String, String)]| l.iter().cloned().collect::<BTreeSet<_>>();
            let (tr, va, te) = (set(&lists.train), set(&lists.val), set(&lists.test));
            let (mut train, mut val, mut test, mut outside) = (vec![], vec![], vec![], 0usize);
            for (i, t) in corpus.tracks.iter().enumerate() {
                let k = (t.artist.clone(), t.album.clone());
                if te.contains(&k) {
                    test.push(i);
                } else if va.contains(&k) {
                    val.push(i);
                } else if tr.contains(&k) {
                    train.push(i);
                } else {
                    outside += 1;
                }
            }
            if outside > 0 {
                notes.push(format!(
                    "{outside} track(s) in albums that no list names were left out"
                ));
            }
            (all_artists.clone(), train, val, test)
        }
    };
    let labels: Vec<Option<usize>> = corpus
        .tracks
        .iter()
        .map(|t| kept.binary_search(&t.artist).ok())
        .collect();
    for (set, what) in [(&train, "training"), (&val, "validation"), (&test, "test")] {
        let present: BTreeSet<usize> = set.iter().filter_map(|&i| labels[i]).collect();
        if present.len() < kept.len() {
            let missing: Vec<&str> = kept
                .iter()
                .enumerate()
                .filter(|(k, _)| !present.contains(k))
                .map(|(_, a)| a.as_str())
                .collect();
            notes.push(format!("no {what} songs for: {}", missing.join(", ")));
        }
    }
    Ok(Split {
        kind,
        seed,
        classes: kept,
        train,
        val,
        test,
        labels,
        excluded_artists: excluded,
        notes,
    })
}
