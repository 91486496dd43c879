//! One run of the paper's experiment (split x slice length x seed) and the pieces around it:
//! the slice source that feeds crnn, evaluation at slice and song level, report files.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use artist20::{Corpus, FeatureConfig, SliceIndex, SliceMode, Split, TrackFeatures};
use crnn::{CrnnConfig, ExistingRun, TrainConfig, TrainObserver, TrainedModel, Trainer};
use eval::VoteRule;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::progress::Progress;
pub use crate::run_report::{LevelReport, RunCounts, RunReport, SongRecord, collect_reports};

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
    /// The song-level bootstrap of the report's intervals.
    pub bootstrap: eval::BootstrapParams,
    /// Keep every epoch's weights in `model/epochs/` (for [`reselect_from`](Self::reselect_from)
    /// later).
    pub keep_epoch_weights: bool,
    /// Instead of training, take the epoch that `train.monitor` picks from this finished run
    /// directory (same split, length and seed, trained with `keep_epoch_weights`): the run
    /// that training with that monitor would give ([`crnn::reselect`]).
    pub reselect_from: Option<PathBuf>,
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
        .backend(spec.backend)
        .keep_epoch_weights(spec.keep_epoch_weights);
    let params = match spec.group {
        Some(g) => params.group(g),
        None => params,
    };
    // One rank's progress is everyone's (the steps are in lockstep): only rank 0 shows it.
    let mut silent = crnn::Silent;
    let observer: &mut dyn TrainObserver = if main { &mut progress } else { &mut silent };
    let fitted = match &spec.reselect_from {
        Some(_) if spec.group.is_some() => {
            bail!("--reselect-from does not train: run it without torchrun or srun")
        }
        Some(src) => {
            let o = crnn::reselect(&src.join("model"), &model_dir, spec.train.monitor);
            if let Ok(o) = &o {
                eprintln!(
                    "{label} reselected from {}: monitor {} keeps epoch {} of {}",
                    src.display(),
                    o.monitor,
                    o.best_epoch,
                    o.history.len()
                );
            }
            o
        }
        None => trainer.fit(params, observer),
    };
    let outcome = match fitted {
        Err(crnn::Error::AlreadyTrained { .. }) if !main => None,
        Err(crnn::Error::AlreadyTrained { .. }) => {
            // Trained before, killed before its report: evaluate the saved model.
            let history = crnn::read_history(&model_dir)?;
            let file = TrainedModel::load(&model_dir, spec.device)?.file;
            let best = history.get(file.best_epoch.saturating_sub(1));
            Some(crnn::TrainOutcome {
                best_epoch: file.best_epoch,
                best_val_loss: file.best_val_loss.unwrap_or(f64::NAN),
                monitor: file.train.monitor,
                best_score: best.map_or(f64::NAN, |r| file.train.monitor.score(r)),
                // Fewer epochs than allowed: early stopping ended it.
                stopped_early: history.len() < file.train.max_epochs,
                interrupted: false,
                history,
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

    let report = evaluate_run(spec, &train, &val, &test, &outcome, train_seconds, comm, t0)?;
    crate::cli::write_atomic(&report_path, |tmp| {
        Ok(std::fs::write(tmp, serde_json::to_string_pretty(&report)?)?)
    })?;
    Ok(Some(report))
}

/// The test stage of a run: predictions, both votes, per-song records, intervals, plots.
#[allow(clippy::too_many_arguments)]
fn evaluate_run(
    spec: &RunSpec<'_>,
    train: &SplitSlices<'_>,
    val: &SplitSlices<'_>,
    test: &SplitSlices<'_>,
    outcome: &crnn::TrainOutcome,
    train_seconds: f64,
    comm: Option<crnn::CommStats>,
    t0: Instant,
) -> Result<RunReport> {
    let split = spec.split;
    let model_dir = spec.dir.join("model");
    let mut model = TrainedModel::load(&model_dir, spec.device)?;
    model.model.set_backend(spec.backend)?;
    let probs = crnn::predict_proba(&model.model, test, spec.train.eval_batch_size, spec.device)?;
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
    let songs = SongGroups::new(&keys, test.labels());
    let paper_vote = eval::song_vote(probs.view(), &songs.song_of_slice, VoteRule::Paper)?;
    let mean_vote = eval::song_vote(
        probs.view(),
        &songs.song_of_slice,
        VoteRule::MeanProbability,
    )?;
    let (song_paper, song_cm) = LevelReport::new(&songs.labels, &paper_vote, &split.classes)?;
    let (song_mean, _) = LevelReport::new(&songs.labels, &mean_vote, &split.classes)?;
    let fold = split.kind.fold().map(|(f, _)| f);
    let mut records: Vec<SongRecord> = songs
        .keys
        .iter()
        .enumerate()
        .map(|(s, key)| SongRecord {
            song: key.clone(),
            artist: split.classes[songs.labels[s]].clone(),
            predicted: split.classes[paper_vote[s]].clone(),
            predicted_mean_probability: split.classes[mean_vote[s]].clone(),
            fold,
            n_slices: 0,
            correct_slices: 0,
            slice_predicted: vec![0; split.classes.len()],
        })
        .collect();
    for ((&s, &p), &t) in songs
        .song_of_slice
        .iter()
        .zip(&slice_pred)
        .zip(test.labels())
    {
        records[s].n_slices += 1;
        records[s].correct_slices += usize::from(p == t);
        records[s].slice_predicted[p] += 1;
    }
    let evidence = crate::evidence::evidence(&records, &split.classes, &spec.bootstrap)?;

    draw_run(spec, &slice_cm, &song_cm, outcome)?;
    let test_tracks_with_slices: std::collections::BTreeSet<usize> =
        test.index.slices.iter().map(|r| r.track).collect();
    Ok(RunReport {
        split: split.kind.family().to_string(),
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
            "monitor": outcome.monitor,
            "best_score": outcome.best_score,
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
        fold,
        folds: split.kind.fold().map(|(_, k)| k),
        songs: records,
        song_f1: Some(evidence.song_f1),
        slice_f1: Some(evidence.slice_f1),
        per_artist: evidence.per_artist,
        bootstrap: Some(evidence.bootstrap),
    })
}

/// The run's pictures: both confusion matrices and the training curves.
fn draw_run(
    spec: &RunSpec<'_>,
    slice_cm: &ndarray::Array2<u64>,
    song_cm: &ndarray::Array2<u64>,
    outcome: &crnn::TrainOutcome,
) -> Result<()> {
    let split = spec.split;
    std::fs::create_dir_all(&spec.dir)?;
    let fold = match split.kind.fold() {
        Some((f, k)) => format!(", fold {f} of {k}"),
        None => String::new(),
    };
    let title = format!(
        "{} split{fold}, {} frames, seed {}",
        split.kind.family(),
        spec.slice_frames,
        spec.train.seed
    );
    eval::plot::plot_confusion(
        &spec.dir.join("confusion_slice.png"),
        &eval::normalize_rows(slice_cm),
        &split.classes,
        &format!("Slice level: {title}"),
    )?;
    eval::plot::plot_confusion(
        &spec.dir.join("confusion_song.png"),
        &eval::normalize_rows(song_cm),
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
    Ok(())
}

/// Slices grouped into songs by key: song ids in sorted key order, each song's label the label
/// of its first slice (as the paper).
struct SongGroups {
    keys: Vec<String>,
    song_of_slice: Vec<usize>,
    labels: Vec<usize>,
}

impl SongGroups {
    fn new(slice_keys: &[String], slice_labels: &[usize]) -> Self {
        let mut keys: Vec<String> = slice_keys.to_vec();
        keys.sort();
        keys.dedup();
        let song_of_slice: Vec<usize> = slice_keys
            .iter()
            .map(|k| keys.binary_search(k).unwrap_or(0))
            .collect();
        let mut labels = vec![usize::MAX; keys.len()];
        for (s, l) in song_of_slice.iter().zip(slice_labels) {
            if labels[*s] == usize::MAX {
                labels[*s] = *l;
            }
        }
        Self {
            keys,
            song_of_slice,
            labels,
        }
    }
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
