//! `report.json` of one run and what it is made of.

use std::path::Path;

use anyhow::{Context, Result};
use artist20::SliceMode;
use eval::{ClassificationReport, Level, TrialRecord};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::experiment::SongKey;

/// Scores of one vote rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LevelReport {
    /// scikit-learn `classification_report(output_dict=True)` layout.
    pub report: serde_json::Value,
    /// The paper's F1 (weighted average).
    pub weighted_f1: f64,
    /// Accuracy.
    pub accuracy: f64,
    /// Confusion matrix (counts, true x predicted).
    pub confusion: Vec<Vec<u64>>,
    /// Classes with an undefined precision/recall (scikit-learn would warn).
    pub undefined_classes: Vec<String>,
}

impl LevelReport {
    /// Scores of `y_pred` against `y_true`, and the confusion matrix.
    pub fn new(
        y_true: &[usize],
        y_pred: &[usize],
        classes: &[String],
    ) -> Result<(Self, Array2<u64>)> {
        let r = ClassificationReport::new(y_true, y_pred, classes)?;
        let cm = eval::confusion_matrix(y_true, y_pred, classes.len())?;
        Ok((
            Self {
                report: r.to_sklearn_json(),
                weighted_f1: r.weighted_f1(),
                accuracy: r.accuracy,
                confusion: cm.outer_iter().map(|row| row.to_vec()).collect(),
                undefined_classes: r
                    .undefined_classes()
                    .into_iter()
                    .map(String::from)
                    .collect(),
            },
            cm,
        ))
    }
}

/// Counts of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunCounts {
    /// Songs per set (train, val, test).
    pub songs: [usize; 3],
    /// Slices per set.
    pub slices: [usize; 3],
    /// Test songs that gave no slice (too short) and so have no song-level prediction.
    pub test_songs_without_slices: Vec<String>,
}

/// `report.json` of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// Split name.
    pub split: String,
    /// Slice length.
    pub slice_frames: usize,
    /// Seed (split, initialisation, shuffle).
    pub seed: u64,
    /// Slicing rule.
    pub slice_mode: SliceMode,
    /// Song key of the vote.
    pub song_key: SongKey,
    /// Classes in label order.
    pub classes: Vec<String>,
    /// Artists left out by the split, with why.
    pub excluded_artists: Vec<(String, String)>,
    /// Split notes (fallbacks used).
    pub notes: Vec<String>,
    /// Sizes.
    pub counts: RunCounts,
    /// Best epoch, epochs run, stop reason, time.
    pub training: serde_json::Value,
    /// Slice-level scores.
    pub slice_level: LevelReport,
    /// Song level with the paper's vote (the tables use this).
    pub song_level_paper_vote: LevelReport,
    /// Song level with the mean-probability vote.
    pub song_level_mean_probability: LevelReport,
    /// Seconds for training and evaluation.
    pub seconds: f64,
    /// Fold of a k-fold split (`None` for the other splits).
    #[serde(default)]
    pub fold: Option<usize>,
    /// Number of folds of a k-fold split.
    #[serde(default)]
    pub folds: Option<usize>,
    /// Every test song with slices, with its predictions (empty in reports written before
    /// intervals existed).
    #[serde(default)]
    pub songs: Vec<SongRecord>,
    /// Song-level weighted F1 (paper's vote) with its song-level bootstrap interval.
    #[serde(default)]
    pub song_f1: Option<eval::Interval>,
    /// Slice-level weighted F1 with its song-level bootstrap interval.
    #[serde(default)]
    pub slice_f1: Option<eval::Interval>,
    /// Song-level F1 per artist with its interval (artists with test songs).
    #[serde(default)]
    pub per_artist: std::collections::BTreeMap<String, crate::evidence::ArtistF1>,
    /// The bootstrap's settings.
    #[serde(default)]
    pub bootstrap: Option<eval::BootstrapParams>,
    /// The model: its architecture and augmentation, as [`crate::experiment::variant_name`]
    /// writes it (`crnn2d`, `crnn1d`, `crnn2d+mixup`); `crnn2d` in reports written before
    /// there were others.
    #[serde(default = "crate::experiment::paper_variant")]
    pub model: String,
}

/// The row label of the summary tables: the split, and the model when it is not the
/// paper's plain CRNN2D (`song-kfold crnn1d`).
pub fn table_label(split: &str, model: &str) -> String {
    if model == crate::experiment::paper_variant() {
        split.to_string()
    } else {
        format!("{split} {model}")
    }
}

impl RunReport {
    /// The records the summary tables are made of.
    pub fn trial_records(&self) -> Vec<TrialRecord> {
        let split = table_label(&self.split, &self.model);
        vec![
            TrialRecord {
                split: split.clone(),
                level: Level::Slice,
                slice_frames: self.slice_frames,
                seed: self.seed,
                weighted_f1: self.slice_level.weighted_f1,
                ci95: self.slice_f1.map(|i| i.ci95),
            },
            TrialRecord {
                split,
                level: Level::Song,
                slice_frames: self.slice_frames,
                seed: self.seed,
                weighted_f1: self.song_level_paper_vote.weighted_f1,
                ci95: self.song_f1.map(|i| i.ci95),
            },
        ]
    }
}

/// Every file called `name` under `out`, in sorted order (model folders are not searched).
pub fn find_files(out: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        for p in entries.into_iter().rev() {
            if p.is_dir() && p.file_name().is_some_and(|n| n != "model") {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

/// Reads every `report.json` under `out` (the runs of k-fold splits too: see
/// [`RunReport::fold`]).
pub fn collect_reports(out: &Path) -> Result<Vec<RunReport>> {
    find_files(out, "report.json")
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{}", p.display()))
        })
        .collect()
}

/// One test song of a run, as `report.json`, `pooled.json` and `compare` read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SongRecord {
    /// The song: its path relative to the corpus root (with `--song-key file-name`, the file
    /// name that the paper's vote groups by).
    pub song: String,
    /// True artist.
    pub artist: String,
    /// Artist elected by the paper's vote.
    pub predicted: String,
    /// Artist elected by the mean-probability vote.
    #[serde(default)]
    pub predicted_mean_probability: String,
    /// Fold whose test set the song is in (k-fold splits).
    #[serde(default)]
    pub fold: Option<usize>,
    /// Slices of the song.
    pub n_slices: usize,
    /// Slices whose argmax is the true artist.
    pub correct_slices: usize,
    /// Slices predicted as each class, in the run's class order (slice-level scores are
    /// computed from these).
    #[serde(default)]
    pub slice_predicted: Vec<u32>,
}

/// The monitor recorded in a report's `training` (or a pooled run's settings); `val-loss` for
/// reports written before monitors existed.
pub fn monitor_of(training: &serde_json::Value) -> &str {
    training
        .get("monitor")
        .and_then(|m| m.as_str())
        .unwrap_or("val-loss")
}
