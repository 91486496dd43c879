//! The `experiment` command: its arguments and what it does, as a library function so that
//! the example and the end-to-end test run the same code. (The argument docs are the `--help`
//! text, written for a terminal rather than for rustdoc.)
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;
use std::time::Instant;

use crate::cli::{choose_device, write_atomic};
use crate::data::{
    default_corpus_dir, default_store_path, load_features, open_corpus, prepare_store,
};
use crate::evidence::{format_interval, pool_folds};
use crate::experiment::{RunSpec, SongKey, run_one};
use anyhow::{Context, Result, bail};
use artist20::fetch::Tier;
use artist20::{AlbumFallback, FeatureConfig, SliceMode, SplitKind, SplitOptions, make_split};
use clap::{Parser, ValueEnum};
use crnn::TrainConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    /// Stratified song split (10 % test, 10 % of the rest validation).
    Song,
    /// One album per artist to test, one to validation, the rest to training.
    Album,
    /// artist20's official album lists.
    Official,
    /// Song and album.
    All,
    /// Song k-fold: every song tested once over --folds folds (default 5), stratified by
    /// artist; validation 10 % of the other folds' songs. Pools the folds in pooled.json.
    SongKfold,
    /// Album k-fold, artist20's jackknife over --folds folds (default 6): fold i tests album
    /// i of every artist, validates on another; every artist needs >= 3 albums.
    AlbumKfold,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MonitorArg {
    /// Lowest validation loss (the paper's).
    ValLoss,
    /// Highest validation slice accuracy.
    ValAccuracy,
    /// Highest weighted F1 of the validation slices.
    ValF1,
    /// The last epoch (no early stopping).
    Last,
}

impl From<MonitorArg> for crnn::Monitor {
    fn from(m: MonitorArg) -> Self {
        match m {
            MonitorArg::ValLoss => crnn::Monitor::ValLoss,
            MonitorArg::ValAccuracy => crnn::Monitor::ValAccuracy,
            MonitorArg::ValF1 => crnn::Monitor::ValF1,
            MonitorArg::Last => crnn::Monitor::Last,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FallbackArg {
    /// Use ValidationFromTrain only when the strict album split is impossible, and say so.
    Auto,
    /// Refuse when an artist has fewer than 3 albums.
    Strict,
    /// Keep only artists with >= 3 albums.
    Eligible,
    /// Keep artists with >= 2 albums; validation from training songs.
    ValidationFromTrain,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SliceModeArg {
    /// floor(T/L) - 1 slices per song (the paper's code drops the last full window).
    Paper,
    /// floor(T/L) slices per song.
    AllFull,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DistBackendArg {
    /// NCCL on CUDA when this build has it, else Gloo.
    Auto,
    /// Gloo (on CUDA through host memory).
    Gloo,
    /// NCCL (CUDA only).
    Nccl,
}

/// Trains and evaluates the paper's CRNN2D for each split x slice length x seed and writes
/// OUT/<split>/<slice_frames>/seed-<seed>/{report.json, model/, *.png} (k-fold splits: one
/// fold-<i>/ folder per fold and pooled.json over all folds), OUT/summary.{md,csv} (every F1
/// with its 95 % song-level bootstrap interval), OUT/f1_vs_length_<split>.png (two or more
/// slice lengths) and OUT/tsne.{csv,png}. Finished runs are skipped on a re-run; --resume continues a killed
/// one. The defaults finish well within 20 minutes on a 2-core CPU for the default corpus
/// (measured with crnn's fused CPU kernels: 85-92 s per epoch on the song split's ~10,400
/// training slices, 10.2 min in all): song split, 3 s slices, seed 0, 6 epochs. --paper-grid runs the
/// paper's grid: song and album split x 1/3/5/10/20/30 s x seeds 0/21/42, up to 200 epochs,
/// patience 10 (days on a CPU, hours on a GPU).
#[derive(Parser, Debug)]
#[command(name = "experiment", version)]
pub struct Args {
    /// Corpus folder (<root>/<artist>/<album>/<track>) or list file. Default: the default
    /// corpus of --tier, fetched into data/corpus-<tier>.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Default-corpus tier when --data-dir is not given: small, default or full.
    #[arg(long, default_value = "default")]
    pub tier: String,
    /// Feature store. Default: data/features/<corpus folder name>.h5.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Which split(s).
    #[arg(long, value_enum, default_value = "song")]
    pub split: SplitArg,
    /// Folds of --split song-kfold (default 5) or album-kfold (default 6).
    #[arg(long)]
    pub folds: Option<usize>,
    /// Which validation score keeps an epoch's weights and what --patience counts on.
    #[arg(long, value_enum, default_value = "val-loss")]
    pub monitor: MonitorArg,
    /// Keep every epoch's weights (model/epochs/), so that --reselect-from can apply another
    /// --monitor to this run later without training again.
    #[arg(long)]
    pub keep_epoch_weights: bool,
    /// Do not train: for every run, take the epoch that --monitor picks from the same run
    /// (split, slice length, seed, fold) under this earlier output folder, trained with
    /// --keep-epoch-weights. Gives exactly the run that training with --monitor would give
    /// (the monitor never changes the trajectory), unless the earlier run stopped early where
    /// this monitor would train on: then it is refused.
    #[arg(long)]
    pub reselect_from: Option<PathBuf>,
    /// Resamples of the song-level bootstrap behind every interval.
    #[arg(long, default_value_t = 10_000)]
    pub bootstrap_resamples: usize,
    /// Seed of the song-level bootstrap.
    #[arg(long, default_value_t = 0)]
    pub bootstrap_seed: u64,
    /// Slice lengths in frames, comma-separated (32, 94, 157, 313, 628, 911 = 1, 3, 5, 10, 20, 29 s).
    #[arg(long, value_delimiter = ',', default_value = "94")]
    pub slice_frames: Vec<usize>,
    /// Seeds (split, initialisation, dropout, shuffle), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub seeds: Vec<u64>,
    /// Most epochs per run (paper: 200).
    #[arg(long, default_value_t = 6)]
    pub epochs: usize,
    /// Early-stopping patience in epochs (paper: 10).
    #[arg(long, default_value_t = 10)]
    pub patience: usize,
    /// Adam learning rate (main.py: 1e-3; the paper's figure: 1e-4).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Batch size (paper: 16).
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// cpu, cuda or cuda:N. Default: CUDA when available, else CPU.
    #[arg(long)]
    pub device: Option<String>,
    /// CPU threads for libtorch. Default: all cores, shared out among the ranks on this
    /// machine when launched by torchrun or srun.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Slicing rule.
    #[arg(long, value_enum, default_value = "paper")]
    pub slice_mode: SliceModeArg,
    /// Song identity for the vote: path (unique) or file-name (the paper's key).
    #[arg(long, value_enum, default_value = "path")]
    pub song_key: SongKey,
    /// Album split when artists have too few albums.
    #[arg(long, value_enum, default_value = "auto")]
    pub album_fallback: FallbackArg,
    /// The paper's grid (overrides --split, --slice-frames, --seeds, --epochs, --patience).
    #[arg(long)]
    pub paper_grid: bool,
    /// Continue interrupted runs instead of refusing to touch them.
    #[arg(long)]
    pub resume: bool,
    /// Data-parallel training (launched by torchrun or srun): how long a rank waits for the
    /// others at any one point (joining, each collective, rank 0 building the feature
    /// store) before it fails, in seconds.
    #[arg(long, default_value_t = 1800)]
    pub dist_timeout: u64,
    /// Data-parallel training: the c10d backend (auto = NCCL on CUDA when built with it,
    /// else Gloo; gloo on CUDA stages the gradients through host memory).
    #[arg(long, value_enum, default_value = "auto")]
    pub dist_backend: DistBackendArg,
    /// Skip the t-SNE at the end.
    #[arg(long)]
    pub no_tsne: bool,
    /// Run every layer as one libtorch op (the reference path) instead of crnn's fused CPU
    /// kernels; about half the CPU speed, same mathematics, other dropout masks. Same as
    /// `--backend libtorch-ops`.
    #[arg(long)]
    pub libtorch_ops: bool,
    /// The conv backend: libtorch-ops, fused (the best instruction set), fused-avx512,
    /// fused-avx2 or fused-portable. Default: the device's (fused on CPUs with AVX2+FMA or
    /// AVX-512, honouring CRNN_KERNELS_ISA; libtorch-ops on CUDA).
    #[arg(long)]
    pub backend: Option<String>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

/// What [`run`] produced.
#[derive(Debug)]
pub struct Outcome {
    /// Runs done (trained or read back) by this call.
    pub runs: usize,
    /// All reports under the output folder.
    pub reports: Vec<crate::experiment::RunReport>,
    /// The Markdown summary.
    pub summary_md: String,
}

/// Runs the experiment `args` describe (what `cargo run --example experiment` does).
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
        Some(l) => {
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
            Some(g)
        }
        None => None,
    };
    let main = group.as_ref().is_none_or(|g| g.is_main());
    let backend = match (&args.backend, args.libtorch_ops) {
        (Some(_), true) => anyhow::bail!("give --backend or --libtorch-ops, not both"),
        (Some(name), false) => crnn::ConvBackend::from_name(name)?,
        (None, true) => crnn::ConvBackend::LibtorchOps,
        (None, false) => crnn::ConvBackend::default_for(device)?,
    };
    backend.check(device)?;
    eprintln!(
        "conv backend: {backend} (CPU kernels available: {:?})",
        crnn::crnn_kernels::Isa::available()
    );
    let local_ranks = launch.as_ref().map_or(1, |l| l.local_world_size.max(1));
    let threads = args.threads.unwrap_or_else(|| {
        (std::thread::available_parallelism().map_or(1, |n| n.get()) / local_ranks).max(1)
    });
    tch::set_num_threads(threads as i32);
    let tier = Tier::parse(&args.tier)?;
    let t_start = Instant::now();

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
    // Rank 0 alone fetches the corpus and builds or checks the store; the others wait, then
    // read the corpus and open the store read-only.
    let mut corpus = None;
    if main {
        let c = open_corpus(args.data_dir.as_deref(), tier)?;
        prepare_store(&c, &store, &feature_config, true)?;
        corpus = Some(c);
    }
    if let Some(g) = &group {
        if !main {
            eprintln!(
                "features: waiting for rank 0 to prepare the corpus and {}",
                store.display()
            );
        }
        g.barrier().context(
            "waiting for rank 0's corpus and feature store (prepare them beforehand for big corpora: docs/scale.md)",
        )?;
    }
    let corpus = match corpus {
        Some(c) => c,
        None => open_corpus(args.data_dir.as_deref(), tier)?,
    };
    let (_, features) = load_features(&corpus, &store)?;
    eprintln!(
        "features: loaded in {:.1} s",
        t_prep.elapsed().as_secs_f64()
    );

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
    let slice_mode = match args.slice_mode {
        SliceModeArg::Paper => SliceMode::Paper,
        SliceModeArg::AllFull => SliceMode::AllFull,
    };
    if main {
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
    }
    let bootstrap = eval::BootstrapParams {
        resamples: args.bootstrap_resamples,
        seed: args.bootstrap_seed,
    };
    let mut runs_done = 0usize;
    let mut splits = Vec::new();
    for &(kind, folds) in &kinds {
        for &seed in &args.seeds {
            // One split per fold (one in all for the splits without folds).
            let fold_splits = (0..folds)
                .map(|fold| {
                    let k = match kind {
                        SplitKind::SongKFold { folds, .. } => SplitKind::SongKFold { folds, fold },
                        SplitKind::AlbumKFold { folds, .. } => {
                            SplitKind::AlbumKFold { folds, fold }
                        }
                        k => k,
                    };
                    make_split_for(&corpus, k, seed, args.album_fallback)
                })
                .collect::<Result<Vec<_>>>()?;
            for &frames in &args.slice_frames {
                let seed_dir = run_dir(&args.out, kind.family(), frames, seed, None);
                let mut fold_reports = Vec::new();
                for split in &fold_splits {
                    let fold = split.kind.fold().map(|(f, _)| f);
                    let dir = run_dir(&args.out, kind.family(), frames, seed, fold);
                    let spec = RunSpec {
                        corpus: &corpus,
                        features: &features,
                        feature_config: &feature_config,
                        split,
                        slice_frames: frames,
                        slice_mode,
                        song_key: args.song_key,
                        train: TrainConfig {
                            learning_rate: args.lr,
                            batch_size: args.batch_size,
                            max_epochs: args.epochs,
                            patience: args.patience,
                            seed,
                            monitor: args.monitor.into(),
                            ..TrainConfig::default()
                        },
                        device,
                        backend,
                        resume: args.resume,
                        dir: dir.clone(),
                        group: group.as_ref(),
                        bootstrap,
                        keep_epoch_weights: args.keep_epoch_weights,
                        reselect_from: args
                            .reselect_from
                            .as_ref()
                            .map(|src| run_dir(src, kind.family(), frames, seed, fold)),
                    };
                    let r = run_one(&spec).with_context(|| format!("run {}", dir.display()))?;
                    runs_done += 1;
                    let Some(r) = r else {
                        continue;
                    };
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
                    fold_reports.push(r);
                }
                if main && kind.fold().is_some() {
                    let pooled = pool_folds(&fold_reports, &bootstrap)?;
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
                }
            }
            splits.extend(fold_splits);
        }
    }

    if !main {
        // Rank 0 writes the summary and the t-SNE; the others are done.
        if let Some(g) = &group {
            g.barrier()?;
        }
        return Ok(Outcome {
            runs: runs_done,
            reports: Vec::new(),
            summary_md: String::new(),
        });
    }
    let (reports, md) = crate::experiment_summary::write_summary(
        &args.out,
        feature_config.mel.frames_per_second(),
        &bootstrap,
    )?;
    if !args.no_tsne {
        crate::experiment_summary::write_tsne_of_grid(
            &args.out, &reports, &splits, &features, device,
        );
    }
    eprintln!(
        "experiment: {runs_done} run(s) ({} in {}) in {:.1} min; summary in {}",
        reports.len(),
        args.out.display(),
        t_start.elapsed().as_secs_f64() / 60.0,
        args.out.join("summary.md").display()
    );
    if let Some(g) = &group {
        g.barrier()?;
    }
    Ok(Outcome {
        runs: runs_done,
        reports,
        summary_md: md,
    })
}

/// `OUT/<split>/<frames>/seed-<seed>[/fold-<fold>]`.
pub fn run_dir(
    out: &std::path::Path,
    split: &str,
    frames: usize,
    seed: u64,
    fold: Option<usize>,
) -> PathBuf {
    let dir = out
        .join(split)
        .join(frames.to_string())
        .join(format!("seed-{seed}"));
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
