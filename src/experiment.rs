//! One run of the paper's experiment (split x slice length x seed), in named stages: read
//! back, slice sets, training, evaluation at slice and song level, pictures, report file.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use artist20::{Corpus, FeatureConfig, SliceMode, Split, TrackFeatures};
use crnn::{CrnnConfig, ExistingRun, TrainConfig, TrainObserver, TrainedModel, Trainer};
use eval::VoteRule;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::progress::Progress;
pub use crate::run_report::{LevelReport, RunCounts, RunReport, SongRecord, collect_reports};
pub use crate::slices::SplitSlices;

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
    /// The network (its augmentation is `train.augment`).
    pub model: crnn::ModelChoice,
    /// Training settings (its seed is the run's seed).
    pub train: TrainConfig,
    /// Device.
    pub device: tch::Device,
    /// How the conv stack runs (not saved with the model; resume with the same one). CRNN2D
    /// only: the other architectures run as libtorch ops ([`crate::cli::network_backend`]).
    pub backend: crnn::ConvBackend,
    /// How the fused backend runs the 3x3 convolutions (not saved either).
    pub conv_algorithm: crnn::ConvAlgorithm,
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

/// Where a run's result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunSource {
    /// Its `report.json` was there: read back, nothing trained or evaluated.
    ReadBack,
    /// Trained now (a new run, or an interrupted one resumed), then evaluated.
    Trained,
    /// Trained before (killed before its report was written): evaluated now.
    Evaluated,
    /// Taken from an earlier run by [`RunSpec::reselect_from`], then evaluated.
    Reselected,
}

/// What [`run_one`] did: the report (rank 0 only; `None` on the other ranks) and where it
/// came from (every rank knows).
#[derive(Debug, Clone)]
pub struct RunDone {
    /// The run's report (rank 0).
    pub report: Option<RunReport>,
    /// Where it came from.
    pub source: RunSource,
}

/// Trains (or resumes) and evaluates one run, writing `report.json`, `model/` and the PNGs
/// into `spec.dir`. A run whose `report.json` exists is read back, not redone.
///
/// The stages: [`read_back`] (rank 0 reads `report.json` and tells the others), the slice
/// sets ([`RunSets::new`]), [`train`] (every rank), then on rank 0 alone [`evaluate_run`]
/// (predictions, both votes, per-song records, intervals), [`draw_run`] (the PNGs) and the
/// report's atomic write. With a [`group`](RunSpec::group) every rank calls it, and the
/// ranks agree through [`crnn::Ranks`].
pub fn run_one(spec: &RunSpec<'_>) -> Result<RunDone> {
    let ranks = crnn::Ranks::of(spec.group);
    if let Some(report) = read_back(spec, ranks)? {
        let report = ranks.is_main().then_some(report);
        return Ok(RunDone {
            report,
            source: RunSource::ReadBack,
        });
    }
    let t0 = Instant::now();
    let sets = RunSets::new(spec)?;
    let trained = train(spec, &sets, ranks)?;
    let (Some(outcome), true) = (&trained.outcome, ranks.is_main()) else {
        return Ok(RunDone {
            report: None,
            source: trained.source,
        });
    };
    let (report, matrices) = evaluate_run(spec, &sets, outcome, &trained, t0)?;
    draw_run(spec, &matrices, outcome)?;
    let path = spec.dir.join(REPORT_FILE);
    crate::cli::write_atomic(&path, |tmp| {
        Ok(std::fs::write(tmp, serde_json::to_string_pretty(&report)?)?)
    })?;
    Ok(RunDone {
        report: Some(report),
        source: trained.source,
    })
}

/// A run's report file in its directory.
pub const REPORT_FILE: &str = "report.json";

/// Stage 1: rank 0 reads the run's `report.json`, if there is one, and sends it to the others
/// (no rank needs to see rank 0's disk). `Some` on every rank when the run is done.
pub fn read_back(spec: &RunSpec<'_>, ranks: crnn::Ranks<'_>) -> Result<Option<RunReport>> {
    let path = spec.dir.join(REPORT_FILE);
    let mut text = if ranks.is_main() && path.exists() {
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
    } else {
        Vec::new()
    };
    ranks.share_bytes(&mut text)?;
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&text)
        .map(Some)
        .with_context(|| format!("{}: unreadable; delete it to redo the run", path.display()))
}

/// Stage 2: the run's training, validation and test slices.
pub struct RunSets<'a> {
    /// Training slices.
    pub train: SplitSlices<'a>,
    /// Validation slices.
    pub val: SplitSlices<'a>,
    /// Test slices.
    pub test: SplitSlices<'a>,
}

impl<'a> RunSets<'a> {
    /// The slices of the split's three sets; an error when one of them has none.
    pub fn new(spec: &RunSpec<'a>) -> Result<Self> {
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
        let sets = Self {
            train: slices(&split.train)?,
            val: slices(&split.val)?,
            test: slices(&split.test)?,
        };
        for (set, name) in [
            (&sets.train, "training"),
            (&sets.val, "validation"),
            (&sets.test, "test"),
        ] {
            if set.index.is_empty() {
                bail!(
                    "{} slices of {} frames: the {name} set has none (its songs are all shorter than the slice rule needs)",
                    split.kind.name(),
                    spec.slice_frames
                );
            }
        }
        Ok(sets)
    }
}

/// What [`train`] gives: the training outcome (`None` on ranks other than 0 when the run
/// was trained before), where it came from, and its time.
pub struct Trained {
    /// The outcome.
    pub outcome: Option<crnn::TrainOutcome>,
    /// Trained now, evaluated from an earlier training, or reselected.
    pub source: RunSource,
    /// Wall time of the stage.
    pub seconds: f64,
    /// This rank's collectives during it.
    pub comm: Option<crnn::CommStats>,
}

/// The label of a run in progress lines: `[song 94 seed 0]`, `[song 94 crnn1d seed 0]`.
fn run_label(spec: &RunSpec<'_>) -> String {
    format!(
        "[{} {} seed {}]",
        spec.split.kind.name(),
        crate::run_report::table_label(
            &spec.slice_frames.to_string(),
            &variant_name(spec.model, &spec.train.augment)
        ),
        spec.train.seed
    )
}

/// The paper's model: plain CRNN2D, no augmentation (`crnn2d`).
pub fn paper_variant() -> String {
    crnn::Architecture::Crnn2d.name().to_string()
}

/// A model's name in paths, reports and tables: the model ([`crnn::ModelChoice`]), then `+`
/// and each augmentation (`crnn2d`, `rnn`, `rnn-bn`, `crnn2d+specaugment`,
/// `crnn2d+crop+mixup`).
pub fn variant_name(model: crnn::ModelChoice, augment: &crnn::Augment) -> String {
    let mut name = model.name();
    for a in augment.names() {
        name.push('+');
        name.push_str(a);
    }
    name
}

/// Stage 3: trains the run (every rank), resumes it, takes it from an earlier run
/// ([`RunSpec::reselect_from`]), or, when the model directory holds a finished training,
/// reads what that training recorded ([`crnn::recorded_outcome`]).
pub fn train(spec: &RunSpec<'_>, sets: &RunSets<'_>, ranks: crnn::Ranks<'_>) -> Result<Trained> {
    let split = spec.split;
    let model_dir = spec.dir.join("model");
    let metadata = ModelMetadata {
        features: spec.feature_config.clone(),
        slice_mode: spec.slice_mode,
        split: split.kind.name(),
        split_seed: split.seed,
        data: spec.corpus.source.clone(),
    };
    let model_config = CrnnConfig {
        n_mels: spec.feature_config.mel.n_mels,
        ..spec.model.config(split.classes.len(), spec.slice_frames)
    };
    let label = run_label(spec);
    let t0 = Instant::now();
    let comm_t0 = spec.group.map(|g| g.stats());
    let fitted = match &spec.reselect_from {
        Some(_) if spec.group.is_some() => {
            bail!("--reselect-from does not train: run it without torchrun or srun")
        }
        Some(src) => crnn::reselect(&src.join("model"), &model_dir, spec.train.monitor)
            .inspect(|o| {
                eprintln!(
                    "{label} reselected from {}: monitor {} keeps epoch {} of {}",
                    src.display(),
                    o.monitor,
                    o.best_epoch,
                    o.history.len()
                )
            })
            .map(|o| (o, RunSource::Reselected)),
        None => fit(spec, sets, ranks, &model_config, &metadata, &label)
            .map(|o| (o, RunSource::Trained)),
    };
    let (outcome, source) = match fitted {
        Err(crnn::Error::AlreadyTrained { .. }) if !ranks.is_main() => (None, RunSource::Evaluated),
        // Trained before, killed before its report: evaluate the saved model, with what
        // its training recorded.
        Err(crnn::Error::AlreadyTrained { .. }) => (
            Some(crnn::recorded_outcome(&model_dir)?),
            RunSource::Evaluated,
        ),
        Err(e) => return Err(e.into()),
        Ok((o, source)) => (Some(o), source),
    };
    let seconds = t0.elapsed().as_secs_f64();
    let comm = spec.group.zip(comm_t0).map(|(g, t0)| g.stats().since(&t0));
    if let (Some(c), true) = (comm, ranks.is_main()) {
        eprintln!(
            "{label} training: {seconds:.1} s, of which {:.1} s ({:.1} %) in {} collective calls ({:.1} MB sent by this rank)",
            c.seconds,
            100.0 * c.seconds / seconds.max(1e-9),
            c.calls,
            c.bytes as f64 / 1e6
        );
    }
    Ok(Trained {
        outcome,
        source,
        seconds,
        comm,
    })
}

/// [`crnn::Trainer::fit`] with the run's settings, rank 0 showing progress.
fn fit(
    spec: &RunSpec<'_>,
    sets: &RunSets<'_>,
    ranks: crnn::Ranks<'_>,
    model_config: &CrnnConfig,
    metadata: &ModelMetadata,
    label: &str,
) -> crnn::Result<crnn::TrainOutcome> {
    let bar = ProgressBar::new(1).with_style(
        ProgressStyle::with_template(
            "{msg} {bar:30} {pos}/{len} batches {elapsed_precise} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Slices per second of the whole group: every rank takes a batch per step.
    let global_batch = spec.train.batch_size * ranks.world_size();
    let mut progress = Progress::new(bar, label.to_string(), global_batch);
    let existing = if spec.resume {
        ExistingRun::Resume
    } else {
        ExistingRun::Refuse
    };
    let model_dir = spec.dir.join("model");
    let metadata = serde_json::to_value(metadata).map_err(|e| crnn::Error::ModelFile {
        path: model_dir.clone(),
        reason: format!("metadata: {e}"),
    })?;
    let mut params = crnn::FitParams::new(
        model_config,
        &spec.split.classes,
        &sets.train,
        &sets.val,
        &model_dir,
    )
    .device(spec.device)
    .existing(existing)
    .metadata(metadata)
    .backend(if model_config.architecture.has_fused_kernels() {
        spec.backend
    } else {
        crnn::ConvBackend::LibtorchOps
    })
    .conv_algorithm(spec.conv_algorithm)
    .keep_epoch_weights(spec.keep_epoch_weights);
    params.group = spec.group;
    // One rank's progress is everyone's (the steps are in lockstep): only rank 0 shows it.
    let mut silent = crnn::Silent;
    let observer: &mut dyn TrainObserver = if ranks.is_main() {
        &mut progress
    } else {
        &mut silent
    };
    let result = Trainer::new(spec.train.clone()).fit(params, observer);
    progress.bar.finish_and_clear();
    result
}

/// What [`evaluate_run`] counted besides the report: the confusion matrices to draw.
pub struct Matrices {
    /// Slice level.
    pub slice: ndarray::Array2<u64>,
    /// Song level, paper vote.
    pub song: ndarray::Array2<u64>,
}

/// Stage 4 (rank 0): the test set's predictions, both votes, the per-song records and the
/// song-level bootstrap intervals, as the run's report.
pub fn evaluate_run(
    spec: &RunSpec<'_>,
    sets: &RunSets<'_>,
    outcome: &crnn::TrainOutcome,
    trained: &Trained,
    t0: Instant,
) -> Result<(RunReport, Matrices)> {
    let split = spec.split;
    let test = &sets.test;
    let mut model = TrainedModel::load(&spec.dir.join("model"), spec.device)?;
    let backend = crate::cli::network_backend(&*model.model, spec.backend);
    model.model.set_backend(backend)?;
    model.model.set_conv_algorithm(spec.conv_algorithm);
    let probs = crnn::predict_proba(&model.model, test, spec.train.eval_batch_size, spec.device)?;
    let slice_pred = eval::slice_predictions(probs.view());
    let (slice_level, slice_cm) = LevelReport::new(test.labels(), &slice_pred, &split.classes)?;

    // Song vote: one id per song key, the true label of the song's first slice (as the paper).
    let keys: Vec<String> = test
        .index
        .slices
        .iter()
        .map(|r| song_key_of(spec.corpus, r.track, spec.song_key))
        .collect();
    let songs = eval::SongGroups::new(&keys, test.labels());
    let paper_vote = eval::song_vote(probs.view(), &songs.song_of_slice, VoteRule::Paper)?;
    let mean_vote = eval::song_vote(
        probs.view(),
        &songs.song_of_slice,
        VoteRule::MeanProbability,
    )?;
    let (song_paper, song_cm) = LevelReport::new(&songs.labels, &paper_vote, &split.classes)?;
    let (song_mean, _) = LevelReport::new(&songs.labels, &mean_vote, &split.classes)?;
    let records = song_records(
        spec,
        &songs,
        &slice_pred,
        test.labels(),
        &paper_vote,
        &mean_vote,
    );
    let evidence = crate::evidence::evidence(&records, &split.classes, &spec.bootstrap)?;
    let test_tracks_with_slices: std::collections::BTreeSet<usize> =
        test.index.slices.iter().map(|r| r.track).collect();
    let report = RunReport {
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
            slices: [
                sets.train.index.len(),
                sets.val.index.len(),
                test.index.len(),
            ],
            test_songs_without_slices: split
                .test
                .iter()
                .filter(|t| !test_tracks_with_slices.contains(t))
                .map(|&t| spec.corpus.tracks[t].rel_path.clone())
                .collect(),
        },
        training: training_json(spec, outcome, trained),
        slice_level,
        song_level_paper_vote: song_paper,
        song_level_mean_probability: song_mean,
        seconds: t0.elapsed().as_secs_f64(),
        fold: split.kind.fold().map(|(f, _)| f),
        folds: split.kind.fold().map(|(_, k)| k),
        songs: records,
        song_f1: Some(evidence.song_f1),
        slice_f1: Some(evidence.slice_f1),
        per_artist: evidence.per_artist,
        bootstrap: Some(evidence.bootstrap),
        model: variant_name(spec.model, &spec.train.augment),
    };
    Ok((
        report,
        Matrices {
            slice: slice_cm,
            song: song_cm,
        },
    ))
}

/// One record per test song: its artist, both votes, and its slices' predictions.
fn song_records(
    spec: &RunSpec<'_>,
    songs: &eval::SongGroups,
    slice_pred: &[usize],
    slice_labels: &[usize],
    paper_vote: &[usize],
    mean_vote: &[usize],
) -> Vec<SongRecord> {
    let classes = &spec.split.classes;
    let fold = spec.split.kind.fold().map(|(f, _)| f);
    let mut records: Vec<SongRecord> = songs
        .keys
        .iter()
        .enumerate()
        .map(|(s, key)| SongRecord {
            song: key.clone(),
            artist: classes[songs.labels[s]].clone(),
            predicted: classes[paper_vote[s]].clone(),
            predicted_mean_probability: classes[mean_vote[s]].clone(),
            fold,
            n_slices: 0,
            correct_slices: 0,
            slice_predicted: vec![0; classes.len()],
        })
        .collect();
    for ((&s, &p), &t) in songs.song_of_slice.iter().zip(slice_pred).zip(slice_labels) {
        records[s].n_slices += 1;
        records[s].correct_slices += usize::from(p == t);
        records[s].slice_predicted[p] += 1;
    }
    records
}

/// The report's `training` object.
fn training_json(
    spec: &RunSpec<'_>,
    outcome: &crnn::TrainOutcome,
    trained: &Trained,
) -> serde_json::Value {
    serde_json::json!({
        "best_epoch": outcome.best_epoch,
        "epochs": outcome.history.len(),
        "best_val_loss": outcome.best_val_loss,
        "monitor": outcome.monitor,
        "best_score": outcome.best_score,
        "stopped_early": outcome.stopped_early,
        "source": trained.source,
        "seconds": trained.seconds,
        "device": format!("{:?}", spec.device),
        "ranks": spec.group.map_or(1, |g| g.world_size()),
        "communication_seconds": trained.comm.map(|c| c.seconds),
        "config": spec.train,
    })
}

/// The run's pictures: both confusion matrices and the training curves.
/// Stage 5 (rank 0).
pub fn draw_run(
    spec: &RunSpec<'_>,
    matrices: &Matrices,
    outcome: &crnn::TrainOutcome,
) -> Result<()> {
    let (slice_cm, song_cm) = (&matrices.slice, &matrices.song);
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

fn song_key_of(corpus: &Corpus, track: usize, key: SongKey) -> String {
    match key {
        SongKey::Path => corpus.tracks[track].rel_path.clone(),
        SongKey::FileName => corpus.tracks[track].file_name().to_string(),
    }
}
