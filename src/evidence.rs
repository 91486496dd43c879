//! How sure a number is: the song-level bootstrap intervals of a run, the pooled predictions
//! of a k-fold run (`pooled.json`), and pooling over seeds for the summary.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use eval::{BootstrapParams, Interval, SongPredictions, cluster_bootstrap};
use serde::{Deserialize, Serialize};

use crate::run_report::{RunReport, SongRecord};

/// Song-level F1 of one artist with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ArtistF1 {
    /// F1 over the pooled songs.
    pub value: f64,
    /// 95 % song-level bootstrap interval, over the resamples in which the artist has songs.
    pub ci95: [f64; 2],
    /// Test songs of the artist.
    pub songs: u64,
    /// Resamples in which the artist had test songs.
    pub resamples_used: usize,
}

/// The intervals of one set of test songs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Song-level weighted F1 (paper's vote).
    pub song_f1: Interval,
    /// Slice-level weighted F1.
    pub slice_f1: Interval,
    /// Song-level F1 per artist (artists with test songs).
    pub per_artist: BTreeMap<String, ArtistF1>,
    /// The bootstrap's settings.
    pub bootstrap: BootstrapParams,
}

/// The songs as the bootstrap takes them (labels by `classes`' order).
pub fn predictions(songs: &[SongRecord], classes: &[String]) -> Result<SongPredictions> {
    let index = |name: &str, song: &str| {
        classes
            .iter()
            .position(|c| c == name)
            .with_context(|| format!("song {song}: artist {name:?} is not one of the classes"))
    };
    let mut data = SongPredictions::new(classes.len());
    for s in songs {
        let label = index(&s.artist, &s.song)?;
        let predicted = index(&s.predicted, &s.song)?;
        if s.slice_predicted.len() != classes.len() {
            bail!(
                "song {}: {} slice counts for {} classes (a report from before intervals existed?)",
                s.song,
                s.slice_predicted.len(),
                classes.len()
            );
        }
        let slices = s
            .slice_predicted
            .iter()
            .enumerate()
            .flat_map(|(p, &n)| std::iter::repeat_n((label, p), n as usize));
        data.push_song(label, predicted, slices)?;
    }
    Ok(data)
}

/// The song-level bootstrap of `songs`.
pub fn evidence(
    songs: &[SongRecord],
    classes: &[String],
    params: &BootstrapParams,
) -> Result<Evidence> {
    let data = predictions(songs, classes)?;
    let r = cluster_bootstrap(&data, params)?;
    let per_artist = r
        .per_class
        .iter()
        .zip(classes)
        .filter_map(|(c, name)| {
            c.map(|c| {
                (
                    name.clone(),
                    ArtistF1 {
                        value: c.f1.value,
                        ci95: c.f1.ci95,
                        songs: c.support,
                        resamples_used: c.resamples_used,
                    },
                )
            })
        })
        .collect();
    Ok(Evidence {
        song_f1: r.song_f1,
        slice_f1: r.slice_f1,
        per_artist,
        bootstrap: *params,
    })
}

/// One fold of a pooled k-fold run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldSummary {
    /// Fold (0-based).
    pub fold: usize,
    /// Test songs with slices.
    pub test_songs: usize,
    /// Song-level weighted F1 of the fold alone (paper's vote).
    pub song_f1: f64,
    /// Slice-level weighted F1 of the fold alone.
    pub slice_f1: f64,
    /// Epoch whose weights were tested.
    pub best_epoch: serde_json::Value,
    /// Seconds for the fold's training and evaluation.
    pub seconds: f64,
}

/// `pooled.json`: the test songs of every fold of one k-fold run and the intervals over them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pooled {
    /// Split family (`song-kfold`, `album-kfold`).
    pub split: String,
    /// Slice length.
    pub slice_frames: usize,
    /// Seed.
    pub seed: u64,
    /// Number of folds.
    pub folds: usize,
    /// Classes in label order.
    pub classes: Vec<String>,
    /// One entry per test song of every fold (`song`, `artist`, `predicted` by the paper's
    /// vote, `fold`, `n_slices`, `correct_slices`, and the slice counts per class).
    pub songs: Vec<SongRecord>,
    /// `song_f1`, `slice_f1` (`{value, ci95}`), `per_artist` and `bootstrap`.
    #[serde(flatten)]
    pub evidence: Evidence,
    /// Artists without test songs in some folds, and those folds.
    pub folds_without_test_songs: BTreeMap<String, Vec<usize>>,
    /// Per fold: its own scores, best epoch and time.
    pub per_fold: Vec<FoldSummary>,
    /// The training settings of the folds (monitor, epochs, ...).
    pub training: serde_json::Value,
    /// Seconds of all folds together.
    pub seconds: f64,
    /// The model ([`RunReport::model`]).
    #[serde(default = "crate::experiment::paper_variant")]
    pub model: String,
}

/// Pools the reports of every fold of one k-fold run (all of them, each once).
pub fn pool_folds(reports: &[RunReport], params: &BootstrapParams) -> Result<Pooled> {
    let first = reports.first().context("no fold reports to pool")?;
    let folds = first
        .folds
        .context("the reports are not of a k-fold split")?;
    let mut have: Vec<usize> = reports.iter().filter_map(|r| r.fold).collect();
    have.sort_unstable();
    if have != (0..folds).collect::<Vec<_>>() {
        bail!("pooling needs folds 0..{folds} once each, got {have:?}");
    }
    let mut songs = Vec::new();
    let mut missing: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut per_fold = Vec::new();
    for r in reports {
        if r.classes != first.classes {
            bail!(
                "fold {:?} has other classes than fold {:?}: folds cannot be pooled",
                r.fold,
                first.fold
            );
        }
        if r.songs.is_empty() {
            bail!(
                "fold {:?} of {} has no per-song records (written before intervals existed): delete its report.json to evaluate it again",
                r.fold,
                r.split
            );
        }
        let fold = r.fold.unwrap_or(0);
        for c in &r.classes {
            if !r.songs.iter().any(|s| &s.artist == c) {
                missing.entry(c.clone()).or_default().push(fold);
            }
        }
        songs.extend(r.songs.iter().cloned().map(|mut s| {
            s.fold = Some(fold);
            s
        }));
        per_fold.push(FoldSummary {
            fold,
            test_songs: r.songs.len(),
            song_f1: r.song_level_paper_vote.weighted_f1,
            slice_f1: r.slice_level.weighted_f1,
            best_epoch: r.training["best_epoch"].clone(),
            seconds: r.seconds,
        });
    }
    per_fold.sort_by_key(|f| f.fold);
    songs.sort_by(|a, b| (a.fold, &a.song).cmp(&(b.fold, &b.song)));
    let evidence = evidence(&songs, &first.classes, params)?;
    Ok(Pooled {
        split: first.split.clone(),
        slice_frames: first.slice_frames,
        seed: first.seed,
        folds,
        classes: first.classes.clone(),
        songs,
        evidence,
        folds_without_test_songs: missing,
        per_fold,
        training: first.training["config"].clone(),
        seconds: reports.iter().map(|r| r.seconds).sum(),
        model: first.model.clone(),
    })
}

/// Reads every `pooled.json` under `out`.
pub fn collect_pooled(out: &Path) -> Result<Vec<Pooled>> {
    let mut found = Vec::new();
    for p in crate::run_report::find_files(out, "pooled.json") {
        let text = std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?;
        found.push(serde_json::from_str(&text).with_context(|| format!("{}", p.display()))?);
    }
    Ok(found)
}

/// One run's test songs and its classes, as [`pool_runs`] takes them.
pub type RunSongs<'a> = (&'a [SongRecord], &'a [String]);

/// The intervals over the test songs of several runs together (for example one per seed):
/// each (run, song) is one unit of the bootstrap. `None` if the runs disagree on the classes
/// or lack per-song records.
pub fn pool_runs(
    runs: &[(&[SongRecord], &[String])],
    params: &BootstrapParams,
) -> Option<Evidence> {
    let classes = runs.first()?.1;
    if runs.iter().any(|(s, c)| *c != classes || s.is_empty()) {
        return None;
    }
    let songs: Vec<SongRecord> = runs.iter().flat_map(|(s, _)| s.iter().cloned()).collect();
    evidence(&songs, classes, params).ok()
}

/// `0.512 [0.441, 0.583]`.
pub fn format_interval(i: &Interval) -> String {
    format!("{:.3} [{:.3}, {:.3}]", i.value, i.ci95[0], i.ci95[1])
}
