//! Builds or refreshes the log-mel feature store of a corpus.
//!
//! ```text
//! cargo run --release --example prepare -- [--data-dir ROOT] [--cache FILE] [--tier small|default|full]
//!     [--shard I/N | --num-shards N | --merge]
//! ```
//! Without `--data-dir`, the default real-music corpus of `--tier` is fetched into
//! `data/corpus-<tier>` (Debian packages, checked by sha256; a second run does no network).
//! `--shard I/N` builds shard I of N into `FILE` with `.shard-I-of-N` before its extension
//! (without the flag, a Slurm job array, a Kubernetes Indexed Job or RANK/WORLD_SIZE say which
//! shard this is); `--merge` checks the shards beside `FILE` and writes `FILE` as their index.
//! docs/scale.md has the Slurm and Kubernetes recipes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use artist_crnn::cli::TierArg;
use artist_crnn::data::{default_store_path, open_corpus, prepare_store};
use artist20::{FeatureConfig, Shard, merge_shards};
use clap::Parser;

/// Builds or refreshes the HDF5 log-mel feature store (paper settings: 16 kHz mono, n_fft
/// 2048, hop 512, 128 Slaney mels, reflect padding, dB with ref 1.0 and a per-track 80 dB
/// floor). Unchanged tracks are not recomputed; failed files are listed and left out.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Corpus: a `<root>/<artist>/<album>/<track>` folder or a `path<TAB>artist[<TAB>album]`
    /// list file. Default: the default corpus of --tier, fetched into data/corpus-<tier>.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Feature store file. Default: data/features/<corpus folder name>.h5.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Tier of the default corpus.
    #[arg(long, value_enum, default_value = "default")]
    tier: TierArg,
    /// Build only shard I of N (0-based) of the tracks, partitioned by FNV-1a 64 of each
    /// track's corpus-relative path modulo N, into FILE.shard-I-of-N.EXT. Without it, the
    /// scheduler's environment decides (Slurm array, Kubernetes Indexed Job, RANK/WORLD_SIZE).
    #[arg(long, conflicts_with = "merge")]
    shard: Option<String>,
    /// N for a Kubernetes Indexed Job (its .spec.completions), which sets only the index.
    #[arg(long)]
    num_shards: Option<usize>,
    /// Check that every shard beside FILE is present and made with one configuration, then
    /// write FILE as one store indexing them (HDF5 external links).
    #[arg(long)]
    merge: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tier = args.tier.tier();
    let corpus = open_corpus(args.data_dir.as_deref(), tier)?;
    let data = args
        .data_dir
        .clone()
        .unwrap_or_else(|| artist_crnn::data::default_corpus_dir(tier));
    let store = args
        .cache
        .clone()
        .unwrap_or_else(|| default_store_path(&data));
    if args.merge {
        let r = merge_shards(&store)?;
        println!(
            "prepare: merged {} shards into {}: {} tracks ({} failed in their shards)",
            r.shards,
            store.display(),
            r.tracks,
            r.failed
        );
        return Ok(());
    }
    let shard = match &args.shard {
        Some(s) => Some((Shard::parse(s)?, "--shard")),
        None => Shard::from_env(args.num_shards).context("reading the scheduler's shard")?,
    };
    let (corpus, store) = match shard {
        Some((s, source)) => {
            let part = s.select(&corpus);
            eprintln!(
                "prepare: shard {} of {} (from {source}): {} of {} tracks -> {}",
                s.index,
                s.count,
                part.tracks.len(),
                corpus.tracks.len(),
                s.path(&store).display()
            );
            (part, s.path(&store))
        }
        None => (corpus, store),
    };
    let report = prepare_store(&corpus, &store, &FeatureConfig::default(), true)?;
    println!(
        "prepare: {} tracks stored in {} ({} failed){}",
        report.reused + report.computed,
        store.display(),
        report.failed.len(),
        if report.noop { ", nothing to do" } else { "" }
    );
    Ok(())
}
