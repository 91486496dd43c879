//! The `experiment` command's arguments (the `--help` text is their docs, written for a
//! terminal rather than for rustdoc).
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::cli::TierArg;
use crate::experiment::SongKey;

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

/// Trains and evaluates the paper's CRNN2D (or the models of --model, with the augmentation
/// of --augment) for each split x slice length x seed and writes
/// OUT/<split>/<slice_frames>/seed-<seed>/{report.json, model/, *.png} (another model:
/// OUT/<split>/<slice_frames>/<model>/seed-<seed>/; k-fold splits: one
/// fold-<i>/ folder per fold and pooled.json over all folds), OUT/summary.{md,csv} (every F1
/// with its 95 % song-level bootstrap interval), OUT/f1_vs_length_<split>.png (two or more
/// slice lengths) and OUT/tsne.{csv,png}. Finished runs are skipped on a re-run; --resume continues a killed
/// one. The defaults (song split, 3 s slices, seed 0, 6 epochs) take, on the 2-core CPUs
/// measured with crnn's fused CPU kernels, 7.6-8.8 min on an Intel Xeon Sapphire Rapids and
/// 12.5 min of training on an AMD EPYC Zen 4 (106-142 s per epoch on the song split's ~10,400
/// training slices). --paper-grid runs the
/// paper's grid: song and album split x 1/3/5/10/20/30 s x seeds 0/21/42, up to 200 epochs,
/// patience 10 (days on a CPU, hours on a GPU).
#[derive(Parser, Debug)]
#[command(name = "experiment", version)]
pub struct Args {
    /// Corpus folder (<root>/<artist>/<album>/<track>) or list file. Default: the default
    /// corpus of --tier, fetched into data/corpus-<tier>.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Default-corpus tier when --data-dir is not given.
    #[arg(long, value_enum, default_value = "default")]
    pub tier: TierArg,
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
    /// AVX-512, with the instruction set CRNN_KERNELS_ISA names; libtorch-ops on CUDA). The 3x3
    /// convolutions of the fused backend run as CRNN_CONV_ALGORITHM says (winograd, the
    /// default, or direct).
    #[arg(long)]
    pub backend: Option<String>,
    /// The networks of the paper's code to run, comma-separated: crnn2d (the paper's),
    /// crnn2d-larger, crnn2d-vgg (both GPU-sized), crnn1d, rnn, and crnn1d-bn, rnn-bn (CRNN1D
    /// and RNN with a BatchNorm over the mel bands first; the seed's have none and read raw
    /// dB). Each runs the whole grid;
    /// its runs go to OUT/<split>/<frames>/<model>/seed-<seed> (crnn2d without augmentation
    /// keeps OUT/<split>/<frames>/seed-<seed>). Only crnn2d has the fused CPU kernels; the
    /// others run as libtorch ops.
    #[arg(long, value_delimiter = ',', default_value = "crnn2d")]
    pub model: Vec<String>,
    /// Augment the training slices (validation and test never), comma-separated, each with
    /// its default parameters (crnn::Augment): crop (each epoch, each slice read at a random
    /// start inside its song), specaugment (2 frequency masks up to 16 bands and 2 time
    /// masks up to 10 % of the frames, at the slice's -80 dB floor), mixup (alpha 0.2, soft
    /// targets), gain (a random offset up to +-6 dB, clipped at the floor). The model's
    /// folder gains +<name> for each (crnn2d+specaugment). Default: none (the paper's).
    #[arg(long, default_value = "")]
    pub augment: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}
