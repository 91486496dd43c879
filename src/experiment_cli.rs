//! The `experiment` command as a library function, so that the example and the end-to-end
//! test run the same code; its arguments are in [`crate::experiment_args`].

use std::path::PathBuf;
use std::time::Instant;

use crate::cli::{choose_device, write_atomic};
use crate::data::{
    default_corpus_dir, default_store_path, load_features, open_corpus, prepare_store,
};
use crate::evidence::{format_interval, pool_folds};
use crate::experiment::{RunSource, RunSpec, run_one, variant_name};
pub use crate::experiment_args::{
    Args, DistBackendArg, FallbackArg, MonitorArg, SliceModeArg, SplitArg,
};
use anyhow::{Context, Result, bail};
use artist20::{AlbumFallback, FeatureConfig, SliceMode, SplitKind, SplitOptions, make_split};
use crnn::TrainConfig;

/// What [`run`] produced.
#[derive(Debug)]
pub struct Outcome {
    /// Runs done (trained, evaluated or read back) by this call.
    pub runs: usize,
    /// Of them, runs trained by this call (resumed ones included).
    pub trained: usize,
    /// Of them, runs whose `report.json` was read back.
    pub read_back: usize,
    /// All reports under the output folder.
    pub reports: Vec<crate::experiment::RunReport>,
    /// The Markdown summary.
    pub summary_md: String,
}

/// Runs the experiment `args` describe (what `cargo run --example experiment` does), in
/// stages: [`launch`] (device, process group, backend, threads), [`prepare`] (corpus and
/// feature store), the runs of the grid ([`run_grid`]: split, train, evaluate, draw, report
/// for each; pooled folds), then on rank 0 the summary and the t-SNE ([`summarize`]). Under
/// torchrun or srun a rank that fails tells the others, which stop at once with its error
/// ([`crnn::Ranks::guard_with`]).
pub fn run(mut args: Args) -> Result<Outcome> {
    if args.paper_grid {
        args.split = SplitArg::All;
        args.slice_frames = vec![32, 94, 157, 313, 628, 911];
        args.seeds = vec![0, 21, 42];
        args.epochs = 200;
        args.patience = 10;
    }
    if args.slice_frames.is_empty() || args.seeds.is_empty() {
        bail!("--slice-frames and --seeds need at least one value");
    }
    let t_start = Instant::now();
    let launched = launch(&args)?;
    let ranks = crnn::Ranks::of(launched.group.as_ref());
    ranks.guard_with(
        |e: &anyhow::Error| ends_the_group(e).then(|| format!("{e:#}")),
        || {
            let data = prepare(&args, ranks)?;
            let grid = run_grid(&args, &launched, &data)?;
            let outcome = summarize(&args, &launched, &data, grid, t_start)?;
            ranks.barrier()?;
            Ok(outcome)
        },
    )
}

/// Whether an error of this rank should be published to the others: not another rank's
/// failure (already told), nor a finished run (every rank sees it).
fn ends_the_group(e: &anyhow::Error) -> bool {
    e.chain().all(|c| {
        c.downcast_ref::<crnn::Error>()
            .is_none_or(crnn::Error::ends_the_group)
    })
}

/// What [`launch`] set up.
pub struct Launched {
    /// Where training and inference run.
    pub device: tch::Device,
    /// The process group under torchrun or srun with more than one rank.
    pub group: Option<crnn::ProcessGroup>,
    /// The conv backend.
    pub backend: crnn::ConvBackend,
    /// The fused backend's 3x3 algorithm (`CRNN_CONV_ALGORITHM`).
    pub conv_algorithm: crnn::ConvAlgorithm,
}

/// Stage 1: the device, the process group (a launcher's environment with more than one rank;
/// one GPU per local rank), the conv backend and the threads.
pub fn launch(args: &Args) -> Result<Launched> {
    let launch = crnn::Launch::from_env()?.filter(|l| {
        if l.world_size == 1 {
            eprintln!(
                "distributed: {} started one process: single-process training",
                l.launcher
            );
        }
        l.world_size > 1
    });
    let mut device = choose_device(args.device.as_deref())?;
    if let (tch::Device::Cuda(_), Some(l)) = (device, &launch) {
        // One GPU per local rank, as torchrun users expect.
        if l.local_rank as i64 >= tch::Cuda::device_count() {
            bail!(
                "local rank {} needs CUDA device {} but {} are visible",
                l.local_rank,
                l.local_rank,
                tch::Cuda::device_count()
            );
        }
        device = tch::Device::Cuda(l.local_rank);
    }
    let group = match &launch {
        Some(l) => Some(join_group(args, l, device)?),
        None => None,
    };
    // An explicit --backend is never overridden: CRNN_KERNELS_ISA is read only without one.
    let backend = match (&args.backend, args.libtorch_ops) {
        (Some(_), true) => anyhow::bail!("give --backend or --libtorch-ops, not both"),
        (Some(name), false) => crnn::ConvBackend::from_name(name)?,
        (None, true) => crnn::ConvBackend::LibtorchOps,
        (None, false) => crate::cli::backend_from_env(device)?,
    };
    let conv_algorithm = crnn::ConvAlgorithm::from_env()?;
    backend.check(device)?;
    let (models, _) = models_and_augment(args)?;
    for m in models {
        if m.architecture.has_fused_kernels() {
            eprintln!(
                "{m}: conv backend {backend}, {conv_algorithm} 3x3 convolutions (CPU kernels available: {:?})",
                crnn::crnn_kernels::Isa::available()
            );
        } else {
            eprintln!(
                "{m}: conv backend libtorch-ops on {device:?} (only crnn2d has fused CPU kernels)"
            );
        }
    }
    let local_ranks = launch.as_ref().map_or(1, |l| l.local_world_size.max(1));
    let threads = args.threads.unwrap_or_else(|| {
        (std::thread::available_parallelism().map_or(1, |n| n.get()) / local_ranks).max(1)
    });
    tch::set_num_threads(threads as i32);
    Ok(Launched {
        device,
        group,
        backend,
        conv_algorithm,
    })
}

/// Joins the launcher's process group.
fn join_group(args: &Args, l: &crnn::Launch, device: tch::Device) -> Result<crnn::ProcessGroup> {
    let params = crnn::GroupParams::from_launch(l)
        .timeout(std::time::Duration::from_secs(args.dist_timeout.max(1)))
        .device(device);
    let params = match args.dist_backend {
        DistBackendArg::Auto => params,
        DistBackendArg::Gloo => params.backend(crnn::CollectiveBackend::Gloo),
        DistBackendArg::Nccl => params.backend(crnn::CollectiveBackend::Nccl),
    };
    let g = crnn::ProcessGroup::new(&params)?;
    eprintln!(
        "distributed: rank {} of {} (local {} of {}), launched by {}, store at {}:{}{}, {} on {device:?}",
        l.rank,
        l.world_size,
        l.local_rank,
        l.local_world_size,
        l.launcher,
        l.master_addr,
        l.master_port,
        if l.agent_store { " (the agent's)" } else { "" },
        g.backend()
    );
    Ok(g)
}

/// What [`prepare`] made ready.
pub struct Prepared {
    /// The corpus.
    pub corpus: artist20::Corpus,
    /// Its features, from the store.
    pub features: artist20::TrackFeatures,
    /// How they were computed.
    pub feature_config: FeatureConfig,
}

/// Stage 2: rank 0 alone fetches the corpus and builds or checks the feature store; the
/// others wait for it, then read the corpus and open the store read-only.
pub fn prepare(args: &Args, ranks: crnn::Ranks<'_>) -> Result<Prepared> {
    let tier = args.tier.tier();
    let data = args
        .data_dir
        .clone()
        .unwrap_or_else(|| default_corpus_dir(tier));
    let store = args
        .cache
        .clone()
        .unwrap_or_else(|| default_store_path(&data));
    let feature_config = FeatureConfig::default();
    let t_prep = Instant::now();
    let mut corpus = None;
    if ranks.is_main() {
        let c = open_corpus(args.data_dir.as_deref(), tier)?;
        prepare_store(&c, &store, &feature_config, true)?;
        corpus = Some(c);
    } else {
        eprintln!(
            "features: waiting for rank 0 to prepare the corpus and {}",
            store.display()
        );
    }
    ranks.barrier().context(
        "waiting for rank 0's corpus and feature store (prepare them beforehand for big corpora: docs/scale.md)",
    )?;
    let corpus = match corpus {
        Some(c) => c,
        None => open_corpus(args.data_dir.as_deref(), tier)?,
    };
    let (_, features) = load_features(&corpus, &store)?;
    eprintln!(
        "features: loaded in {:.1} s",
        t_prep.elapsed().as_secs_f64()
    );
    Ok(Prepared {
        corpus,
        features,
        feature_config,
    })
}

/// The split kinds `--split` asks for, each with its number of folds (1 without folds).
fn split_kinds(args: &Args) -> Result<Vec<(SplitKind, usize)>> {
    let kinds: Vec<(SplitKind, usize)> = match args.split {
        SplitArg::Song => vec![(SplitKind::Song, 1)],
        SplitArg::Album => vec![(SplitKind::Album, 1)],
        SplitArg::Official => vec![(SplitKind::Official, 1)],
        SplitArg::All => vec![(SplitKind::Song, 1), (SplitKind::Album, 1)],
        SplitArg::SongKfold => {
            let folds = args.folds.unwrap_or(5);
            vec![(SplitKind::SongKFold { folds, fold: 0 }, folds)]
        }
        SplitArg::AlbumKfold => {
            let folds = args.folds.unwrap_or(6);
            vec![(SplitKind::AlbumKFold { folds, fold: 0 }, folds)]
        }
    };
    if args.folds.is_some() && kinds.iter().all(|(k, _)| k.fold().is_none()) {
        bail!("--folds needs --split song-kfold or album-kfold");
    }
    Ok(kinds)
}

/// One split per fold of `kind` (one in all for the splits without folds).
fn fold_splits(
    corpus: &artist20::Corpus,
    kind: SplitKind,
    folds: usize,
    seed: u64,
    fallback: FallbackArg,
) -> Result<Vec<artist20::Split>> {
    (0..folds)
        .map(|fold| {
            let k = match kind {
                SplitKind::SongKFold { folds, .. } => SplitKind::SongKFold { folds, fold },
                SplitKind::AlbumKFold { folds, .. } => SplitKind::AlbumKFold { folds, fold },
                k => k,
            };
            make_split_for(corpus, k, seed, fallback)
        })
        .collect()
}

/// What [`run_grid`] did.
pub struct Grid {
    /// Every split it ran (for the t-SNE).
    pub splits: Vec<artist20::Split>,
    /// Runs done, trained, read back.
    pub counts: [usize; 3],
}

/// Stage 3: every run of the grid (split x seed x slice length x fold) through
/// [`run_one`], and per k-fold grid cell the pooled folds (`pooled.json`, rank 0).
pub fn run_grid(args: &Args, launched: &Launched, data: &Prepared) -> Result<Grid> {
    let ranks = crnn::Ranks::of(launched.group.as_ref());
    let slice_mode = match args.slice_mode {
        SliceModeArg::Paper => SliceMode::Paper,
        SliceModeArg::AllFull => SliceMode::AllFull,
    };
    if ranks.is_main() {
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
    }
    let bootstrap = bootstrap_params(args);
    let (models, augment) = models_and_augment(args)?;
    let mut grid = Grid {
        splits: Vec::new(),
        counts: [0; 3],
    };
    for (kind, folds) in split_kinds(args)? {
        for &seed in &args.seeds {
            let splits = fold_splits(&data.corpus, kind, folds, seed, args.album_fallback)?;
            for (&frames, &model_choice) in args
                .slice_frames
                .iter()
                .flat_map(|f| models.iter().map(move |m| (f, m)))
            {
                let mut fold_reports = Vec::new();
                let train = train_config(args, seed, &augment);
                let model = variant_name(model_choice, &train.augment);
                for split in &splits {
                    let fold = split.kind.fold().map(|(f, _)| f);
                    let dir = run_dir(&args.out, kind.family(), frames, &model, seed, fold);
                    let spec = RunSpec {
                        corpus: &data.corpus,
                        features: &data.features,
                        feature_config: &data.feature_config,
                        split,
                        slice_frames: frames,
                        slice_mode,
                        song_key: args.song_key,
                        model: model_choice,
                        train: train.clone(),
                        device: launched.device,
                        backend: launched.backend,
                        conv_algorithm: launched.conv_algorithm,
                        resume: args.resume,
                        dir: dir.clone(),
                        group: launched.group.as_ref(),
                        bootstrap,
                        keep_epoch_weights: args.keep_epoch_weights,
                        reselect_from: args
                            .reselect_from
                            .as_ref()
                            .map(|src| run_dir(src, kind.family(), frames, &model, seed, fold)),
                    };
                    let done = run_one(&spec).with_context(|| format!("run {}", dir.display()))?;
                    grid.counts[0] += 1;
                    grid.counts[1] += usize::from(done.source == RunSource::Trained);
                    grid.counts[2] += usize::from(done.source == RunSource::ReadBack);
                    if let Some(r) = done.report {
                        print_run(&dir, &r);
                        fold_reports.push(r);
                    }
                }
                if ranks.is_main() && kind.fold().is_some() {
                    let seed_dir = run_dir(&args.out, kind.family(), frames, &model, seed, None);
                    write_pooled(&seed_dir, &fold_reports, &bootstrap)?;
                }
            }
            grid.splits.extend(splits);
        }
    }
    Ok(grid)
}

fn bootstrap_params(args: &Args) -> eval::BootstrapParams {
    eval::BootstrapParams {
        resamples: args.bootstrap_resamples,
        seed: args.bootstrap_seed,
    }
}

/// The models of `--model` and the augmentation of `--augment`, checked.
pub fn models_and_augment(args: &Args) -> Result<(Vec<crnn::ModelChoice>, crnn::Augment)> {
    let models = args
        .model
        .iter()
        .map(|m| crnn::ModelChoice::from_name(m))
        .collect::<crnn::Result<Vec<_>>>()?;
    if models.is_empty() {
        bail!(
            "--model needs at least one of crnn2d, crnn2d-larger, crnn2d-vgg, crnn1d, rnn, crnn1d-bn, rnn-bn"
        );
    }
    let augment = crnn::Augment::from_names(&args.augment)?;
    Ok((models, augment))
}

fn train_config(args: &Args, seed: u64, augment: &crnn::Augment) -> TrainConfig {
    TrainConfig {
        augment: augment.clone(),
        learning_rate: args.lr,
        batch_size: args.batch_size,
        max_epochs: args.epochs,
        patience: args.patience,
        seed,
        monitor: args.monitor.into(),
        ..TrainConfig::default()
    }
}

/// One line per finished run: both F1 with their intervals.
fn print_run(dir: &std::path::Path, r: &crate::experiment::RunReport) {
    let with_ci = |v: f64, i: &Option<eval::Interval>| match i {
        Some(i) => format_interval(i),
        None => format!("{v:.3}"),
    };
    eprintln!(
        "run {}: slice F1 {}, song F1 {} (paper vote) / {:.3} (mean probability), {} test songs, {:.0} s",
        dir.display(),
        with_ci(r.slice_level.weighted_f1, &r.slice_f1),
        with_ci(r.song_level_paper_vote.weighted_f1, &r.song_f1),
        r.song_level_mean_probability.weighted_f1,
        r.songs.len(),
        r.seconds
    );
}

/// The folds of one grid cell pooled into `seed_dir/pooled.json`.
fn write_pooled(
    seed_dir: &std::path::Path,
    fold_reports: &[crate::experiment::RunReport],
    bootstrap: &eval::BootstrapParams,
) -> Result<()> {
    let pooled = pool_folds(fold_reports, bootstrap)?;
    let path = seed_dir.join("pooled.json");
    write_atomic(&path, |tmp| {
        Ok(std::fs::write(tmp, serde_json::to_string_pretty(&pooled)?)?)
    })?;
    eprintln!(
        "pooled {} folds, {} test songs: slice F1 {}, song F1 {} -> {}",
        pooled.folds,
        pooled.songs.len(),
        format_interval(&pooled.evidence.slice_f1),
        format_interval(&pooled.evidence.song_f1),
        path.display()
    );
    Ok(())
}

/// Stage 4 (rank 0): `summary.{md,csv}`, the F1-against-length PNGs and the t-SNE.
pub fn summarize(
    args: &Args,
    launched: &Launched,
    data: &Prepared,
    grid: Grid,
    t_start: Instant,
) -> Result<Outcome> {
    let [runs, trained, read_back] = grid.counts;
    let mut outcome = Outcome {
        runs,
        trained,
        read_back,
        reports: Vec::new(),
        summary_md: String::new(),
    };
    if !crnn::Ranks::of(launched.group.as_ref()).is_main() {
        return Ok(outcome);
    }
    let (reports, md) = crate::experiment_summary::write_summary(
        &args.out,
        data.feature_config.mel.frames_per_second(),
        &bootstrap_params(args),
    )?;
    if !args.no_tsne {
        crate::experiment_summary::write_tsne_of_grid(
            &args.out,
            &reports,
            &grid.splits,
            &data.features,
            launched.device,
        );
    }
    eprintln!(
        "experiment: {runs} run(s) ({trained} trained, {read_back} read back; {} in {}) in {:.1} min; summary in {}",
        reports.len(),
        args.out.display(),
        t_start.elapsed().as_secs_f64() / 60.0,
        args.out.join("summary.md").display()
    );
    outcome.reports = reports;
    outcome.summary_md = md;
    Ok(outcome)
}

/// `OUT/<split>/<frames>/[<model>/]seed-<seed>[/fold-<fold>]`: the model's folder
/// ([`variant_name`]) is left out for the paper's plain
/// CRNN2D, so its paths are those of the experiments before there were other models.
pub fn run_dir(
    out: &std::path::Path,
    split: &str,
    frames: usize,
    model: &str,
    seed: u64,
    fold: Option<usize>,
) -> PathBuf {
    let mut dir = out.join(split).join(frames.to_string());
    if model != crate::experiment::paper_variant() {
        dir = dir.join(model);
    }
    let dir = dir.join(format!("seed-{seed}"));
    match fold {
        Some(f) => dir.join(format!("fold-{f}")),
        None => dir,
    }
}

fn make_split_for(
    corpus: &artist20::Corpus,
    kind: SplitKind,
    seed: u64,
    fallback: FallbackArg,
) -> Result<artist20::Split> {
    let with = |f: AlbumFallback| {
        make_split(
            corpus,
            kind,
            seed,
            &SplitOptions {
                album_fallback: f,
                ..SplitOptions::default()
            },
        )
    };
    let split = match (kind, fallback) {
        (SplitKind::Album, FallbackArg::Auto) => match with(AlbumFallback::Strict) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "split: {e}\nsplit: using ValidationFromTrain instead (artists with >= 2 albums; validation from training songs)"
                );
                with(AlbumFallback::ValidationFromTrain)?
            }
        },
        (_, FallbackArg::Strict | FallbackArg::Auto) => with(AlbumFallback::Strict)?,
        (_, FallbackArg::Eligible) => with(AlbumFallback::EligibleArtists)?,
        (_, FallbackArg::ValidationFromTrain) => with(AlbumFallback::ValidationFromTrain)?,
    };
    eprintln!(
        "split: {} seed {}: {} classes, {}/{}/{} songs (train/val/test){}",
        kind.name(),
        seed,
        split.classes.len(),
        split.train.len(),
        split.val.len(),
        split.test.len(),
        if split.excluded_artists.is_empty() {
            String::new()
        } else {
            format!(", {} artists excluded", split.excluded_artists.len())
        }
    );
    for n in &split.notes {
        eprintln!("split: note: {n}");
    }
    Ok(split)
}
