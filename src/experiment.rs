//! One run of the paper's experiment (split x slice length x seed) and the pieces around it:
//! the slice source that feeds crnn, evaluation at slice and song level, report files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use artist20::{Corpus, FeatureConfig, SliceIndex, SliceMode, Split, TrackFeatures};
use crnn::{
    Control, CrnnConfig, EpochRecord, ExistingRun, TrainConfig, TrainObserver, TrainedModel,
    Trainer,
};
use eval::{ClassificationReport, Level, TrialRecord, VoteRule};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// How slices are grouped into songs for the vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SongKey {
    /// The track's path relative to the corpus root: every song votes on its own.
    #[default]
    Path,
    /// The bare file name, as the paper's `predict_artist` (two songs with one name merge).
    FileName,
}

/// Slices of some tracks, labelled by a split, as a [`crnn::SliceSource`] (copies one slice at
/// a time from the stored tracks; nothing else is copied).
pub struct SplitSlices<'a> {
    features: &'a TrackFeatures,
    /// The slice index.
    pub index: SliceIndex,
    labels: Vec<usize>,
    n_mels: usize,
}

impl<'a> SplitSlices<'a> {
    /// Slices of `tracks` with the split's labels (tracks of excluded artists must not be in it).
    pub fn new(
        features: &'a TrackFeatures,
        split: &Split,
        tracks: &[usize],
        slice_frames: usize,
        mode: SliceMode,
        n_mels: usize,
    ) -> Result<Self> {
        let index = SliceIndex::new(features, tracks, slice_frames, mode)?;
        let labels = index
            .slices
            .iter()
            .map(|r| {
                split
                    .label(r.track)
                    .with_context(|| format!("track {} has no label in this split", r.track))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            features,
            index,
            labels,
            n_mels,
        })
    }

    /// Label of every slice.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }
}

impl crnn::SliceSource for SplitSlices<'_> {
    fn len(&self) -> usize {
        self.index.len()
    }
    fn slice_shape(&self) -> (usize, usize) {
        (self.n_mels, self.index.slice_frames)
    }
    fn write_slice(&self, index: usize, out: &mut [f32]) {
        if let Some(view) = self.index.view(self.features, index) {
            for (o, v) in out
                .chunks_exact_mut(self.index.slice_frames)
                .zip(view.rows())
            {
                for (a, b) in o.iter_mut().zip(v.iter()) {
                    *a = *b;
                }
            }
        }
    }
    fn label(&self, index: usize) -> usize {
        self.labels[index]
    }
}

/// What goes into a model's `config.json` metadata: enough to use it on new audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// How features were computed (decode + log-mel).
    pub features: FeatureConfig,
    /// Slicing rule.
    pub slice_mode: SliceMode,
    /// Split name.
    pub split: String,
    /// Split seed.
    pub split_seed: u64,
    /// Corpus folder or list file it was trained on.
    pub data: PathBuf,
}

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
    fn new(y_true: &[usize], y_pred: &[usize], classes: &[String]) -> Result<(Self, Array2<u64>)> {
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
}

impl RunReport {
    /// The records the summary tables are made of.
    pub fn trial_records(&self) -> Vec<TrialRecord> {
        vec![
            TrialRecord {
                split: self.split.clone(),
                level: Level::Slice,
                slice_frames: self.slice_frames,
                seed: self.seed,
                weighted_f1: self.slice_level.weighted_f1,
            },
            TrialRecord {
                split: self.split.clone(),
                level: Level::Song,
                slice_frames: self.slice_frames,
                seed: self.seed,
                weighted_f1: self.song_level_paper_vote.weighted_f1,
            },
        ]
    }
}

/// Everything one run needs.
pub struct RunSpec<'a> {
    /// Corpus.
    pub corpus: &'a Corpus,
    /// Its features.
    pub features: &'a TrackFeatures,
    /// Feature configuration (for the model metadata).
    pub feature_config: &'a FeatureConfig,
    /// The split.
    pub split: &'a Split,
    /// Slice length.
    pub slice_frames: usize,
    /// Slicing rule.
    pub slice_mode: SliceMode,
    /// Song key.
    pub song_key: SongKey,
    /// Training settings (its seed is the run's seed).
    pub train: TrainConfig,
    /// Device.
    pub device: tch::Device,
    /// How the conv stack runs (not saved with the model; resume with the same one).
    pub backend: crnn::ConvBackend,
    /// Continue an interrupted run in the directory.
    pub resume: bool,
    /// Run directory.
    pub dir: PathBuf,
    /// Data-parallel training across this group (launched by torchrun or srun): every rank
    /// trains, rank 0 alone evaluates and writes.
    pub group: Option<&'a crnn::ProcessGroup>,
}

/// Epoch progress for one run: a bar on a terminal; when stderr is not one (a log file), a
/// line at most every [`LOG_EVERY`] with the batches done, the speed and the epoch's ETA.
struct Progress {
    bar: ProgressBar,
    label: String,
    batch_size: usize,
    log_lines: bool,
    epoch_start: Instant,
    last_line: Instant,
}

/// Longest silence of the log-line progress.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(20);

impl Progress {
    fn new(bar: ProgressBar, label: String, batch_size: usize) -> Self {
        use std::io::IsTerminal;
        Self {
            bar,
            label,
            batch_size,
            log_lines: !std::io::stderr().is_terminal(),
            epoch_start: Instant::now(),
            last_line: Instant::now(),
        }
    }
}

impl TrainObserver for Progress {
    fn batch(&mut self, epoch: usize, done: usize, total: usize) {
        if done == 1 {
            self.bar.set_length(total as u64);
            self.bar.set_position(0);
            self.bar
                .set_message(format!("{} epoch {epoch}", self.label));
            self.epoch_start = Instant::now();
            self.last_line = self.epoch_start;
        }
        self.bar.set_position(done as u64);
        if self.log_lines && (self.last_line.elapsed() >= LOG_EVERY || done == total) {
            let secs = self.epoch_start.elapsed().as_secs_f64().max(1e-9);
            let rate = (done * self.batch_size) as f64 / secs;
            let eta = secs / done as f64 * (total - done) as f64;
            eprintln!(
                "{} epoch {epoch}: batch {done}/{total}, {rate:.1} slices/s, {:.0} s in, ETA {:.0} s (then validation)",
                self.label, secs, eta
            );
            self.last_line = Instant::now();
        }
    }
    fn epoch(&mut self, r: &EpochRecord, improved: bool) -> Control {
        let line = format!(
            "{} epoch {:>3}: loss {:.4} acc {:.3} | val_loss {:.4} val_acc {:.3} | {:.0} s{}",
            self.label,
            r.epoch,
            r.loss,
            r.acc,
            r.val_loss,
            r.val_acc,
            r.seconds,
            if improved { " *" } else { "" }
        );
        self.bar.suspend(|| eprintln!("{line}"));
        Control::Continue
    }
}

/// Trains (or resumes) and evaluates one run, writing `report.json`, `model/` and the PNGs
/// into `spec.dir`. A run whose `report.json` exists is read back, not redone.
///
/// With a [`group`](RunSpec::group), every rank calls it: rank 0 decides whether the run is
/// done (and tells the others), all ranks train, and rank 0 alone evaluates, draws and
/// writes the report; the others return `None`.
pub fn run_one(spec: &RunSpec<'_>) -> Result<Option<RunReport>> {
    let report_path = spec.dir.join("report.json");
    let main = spec.group.is_none_or(|g| g.is_main());
    // Rank 0 reads the report (if any) and sends it: no rank needs to see rank 0's disk.
    let mut text = if main && report_path.exists() {
        std::fs::read(&report_path)?
    } else {
        Vec::new()
    };
    if let Some(g) = spec.group {
        g.broadcast_bytes(&mut text, 0)?;
    }
    if !text.is_empty() {
        return serde_json::from_slice(&text).map(Some).with_context(|| {
            format!(
                "{}: unreadable; delete it to redo the run",
                report_path.display()
            )
        });
    }
    let t0 = Instant::now();
    let split = spec.split;
    let n_mels = spec.feature_config.mel.n_mels;
    let slices = |tracks: &[usize]| {
        SplitSlices::new(
            spec.features,
            split,
            tracks,
            spec.slice_frames,
            spec.slice_mode,
            n_mels,
        )
    };
    let (train, val, test) = (
        slices(&split.train)?,
        slices(&split.val)?,
        slices(&split.test)?,
    );
    for (set, name) in [(&train, "training"), (&val, "validation"), (&test, "test")] {
        if set.index.is_empty() {
            bail!(
                "{} slices of {} frames: the {name} set has none (its songs are all shorter than the slice rule needs)",
                split.kind.name(),
                spec.slice_frames
            );
        }
    }
    let model_dir = spec.dir.join("model");
    let metadata = ModelMetadata {
        features: spec.feature_config.clone(),
        slice_mode: spec.slice_mode,
        split: split.kind.name(),
        split_seed: split.seed,
        data: spec.corpus.source.clone(),
    };
    let model_config = CrnnConfig {
        n_mels,
        ..CrnnConfig::paper(split.classes.len(), spec.slice_frames)
    };
    let label = format!(
        "[{} {} seed {}]",
        split.kind.name(),
        spec.slice_frames,
        spec.train.seed
    );
    let bar = ProgressBar::new(1).with_style(
        ProgressStyle::with_template(
            "{msg} {bar:30} {pos}/{len} batches {elapsed_precise} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Slices per second of the whole group: every rank takes a batch per step.
    let global_batch = spec.train.batch_size * spec.group.map_or(1, |g| g.world_size());
    let mut progress = Progress::new(bar, label.clone(), global_batch);
    let existing = if spec.resume {
        ExistingRun::Resume
    } else {
        ExistingRun::Refuse
    };
    let trainer = Trainer::new(spec.train.clone());
    let train_t0 = Instant::now();
    let comm_t0 = spec.group.map(|g| g.stats());
    let params = crnn::FitParams::new(&model_config, &split.classes, &train, &val, &model_dir)
        .device(spec.device)
        .existing(existing)
        .metadata(serde_json::to_value(&metadata)?)
        .backend(spec.backend);
    let params = match spec.group {
        Some(g) => params.group(g),
        None => params,
    };
    // One rank's progress is everyone's (the steps are in lockstep): only rank 0 shows it.
    let mut silent = crnn::Silent;
    let observer: &mut dyn TrainObserver = if main { &mut progress } else { &mut silent };
    let outcome = match trainer.fit(params, observer) {
        Err(crnn::Error::AlreadyTrained { .. }) if !main => None,
        Err(crnn::Error::AlreadyTrained { .. }) => {
            // Trained before, killed before its report: evaluate the saved model.
            let history = crnn::read_history(&model_dir)?;
            let file = TrainedModel::load(&model_dir, spec.device)?.file;
            Some(crnn::TrainOutcome {
                history,
                best_epoch: file.best_epoch,
                best_val_loss: file.best_val_loss.unwrap_or(f64::NAN),
                stopped_early: false,
                interrupted: false,
            })
        }
        Err(e) => return Err(e.into()),
        Ok(o) => Some(o),
    };
    progress.bar.finish_and_clear();
    let train_seconds = train_t0.elapsed().as_secs_f64();
    let comm = spec.group.zip(comm_t0).map(|(g, t0)| g.stats().since(&t0));
    if let (Some(c), true) = (comm, main) {
        eprintln!(
            "{label} training: {train_seconds:.1} s, of which {:.1} s ({:.1} %) in {} collective calls ({:.1} MB sent by this rank)",
            c.seconds,
            100.0 * c.seconds / train_seconds.max(1e-9),
            c.calls,
            c.bytes as f64 / 1e6
        );
    }
    let Some(outcome) = outcome.filter(|_| main) else {
        return Ok(None);
    };

    let mut model = TrainedModel::load(&model_dir, spec.device)?;
    model.model.set_backend(spec.backend)?;
    let probs = crnn::predict_proba(&model.model, &test, spec.train.eval_batch_size, spec.device)?;
    let slice_pred: Vec<usize> = probs
        .outer_iter()
        .map(|r| argmax(r.as_slice().unwrap_or(&[])))
        .collect();
    let (slice_level, slice_cm) = LevelReport::new(test.labels(), &slice_pred, &split.classes)?;

    // Song vote: one id per song key, the true label of the song's first slice (as the paper).
    let keys: Vec<String> = test
        .index
        .slices
        .iter()
        .map(|r| song_key_of(spec.corpus, r.track, spec.song_key))
        .collect();
    let mut unique: Vec<String> = keys.clone();
    unique.sort();
    unique.dedup();
    let song_of_slice: Vec<usize> = keys
        .iter()
        .map(|k| unique.binary_search(k).unwrap_or(0))
        .collect();
    let mut song_true = vec![usize::MAX; unique.len()];
    for (s, l) in song_of_slice.iter().zip(test.labels()) {
        if song_true[*s] == usize::MAX {
            song_true[*s] = *l;
        }
    }
    let paper_vote = eval::song_vote(probs.view(), &song_of_slice, VoteRule::Paper)?;
    let mean_vote = eval::song_vote(probs.view(), &song_of_slice, VoteRule::MeanProbability)?;
    let (song_paper, song_cm) = LevelReport::new(&song_true, &paper_vote, &split.classes)?;
    let (song_mean, _) = LevelReport::new(&song_true, &mean_vote, &split.classes)?;

    std::fs::create_dir_all(&spec.dir)?;
    let title = format!(
        "{} split, {} frames, seed {}",
        split.kind.name(),
        spec.slice_frames,
        spec.train.seed
    );
    eval::plot::plot_confusion(
        &spec.dir.join("confusion_slice.png"),
        &eval::normalize_rows(&slice_cm),
        &split.classes,
        &format!("Slice level: {title}"),
    )?;
    eval::plot::plot_confusion(
        &spec.dir.join("confusion_song.png"),
        &eval::normalize_rows(&song_cm),
        &split.classes,
        &format!("Song level (paper vote): {title}"),
    )?;
    let history: Vec<eval::plot::EpochPoint> = outcome
        .history
        .iter()
        .map(|h| eval::plot::EpochPoint {
            loss: h.loss,
            acc: h.acc,
            val_loss: h.val_loss,
            val_acc: h.val_acc,
        })
        .collect();
    eval::plot::plot_training_curves(
        &spec.dir.join("training_curves.png"),
        &history,
        &format!("Training: {title}"),
    )?;

    let test_tracks_with_slices: std::collections::BTreeSet<usize> =
        test.index.slices.iter().map(|r| r.track).collect();
    let report = RunReport {
        split: split.kind.name(),
        slice_frames: spec.slice_frames,
        seed: spec.train.seed,
        slice_mode: spec.slice_mode,
        song_key: spec.song_key,
        classes: split.classes.clone(),
        excluded_artists: split.excluded_artists.clone(),
        notes: split.notes.clone(),
        counts: RunCounts {
            songs: [split.train.len(), split.val.len(), split.test.len()],
            slices: [train.index.len(), val.index.len(), test.index.len()],
            test_songs_without_slices: split
                .test
                .iter()
                .filter(|t| !test_tracks_with_slices.contains(t))
                .map(|&t| spec.corpus.tracks[t].rel_path.clone())
                .collect(),
        },
        training: serde_json::json!({
            "best_epoch": outcome.best_epoch,
            "epochs": outcome.history.len(),
            "best_val_loss": outcome.best_val_loss,
            "stopped_early": outcome.stopped_early,
            "seconds": train_seconds,
            "device": format!("{:?}", spec.device),
            "ranks": spec.group.map_or(1, |g| g.world_size()),
            "communication_seconds": comm.map(|c| c.seconds),
            "config": spec.train,
        }),
        slice_level,
        song_level_paper_vote: song_paper,
        song_level_mean_probability: song_mean,
        seconds: t0.elapsed().as_secs_f64(),
    };
    crate::cli::write_atomic(&report_path, |tmp| {
        Ok(std::fs::write(tmp, serde_json::to_string_pretty(&report)?)?)
    })?;
    Ok(Some(report))
}

fn song_key_of(corpus: &Corpus, track: usize, key: SongKey) -> String {
    match key {
        SongKey::Path => corpus.tracks[track].rel_path.clone(),
        SongKey::FileName => corpus.tracks[track].file_name().to_string(),
    }
}

/// Index of the first maximum.
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

/// Reads every `report.json` under `out`.
pub fn collect_reports(out: &Path) -> Result<Vec<RunReport>> {
    let mut reports = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() && p.file_name().is_some_and(|n| n != "model") {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "report.json") {
                let r: RunReport = serde_json::from_str(&std::fs::read_to_string(&p)?)
                    .with_context(|| format!("{}", p.display()))?;
                reports.push(r);
            }
        }
    }
    Ok(reports)
}
