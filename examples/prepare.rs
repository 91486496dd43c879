//! Builds or refreshes the log-mel feature store of a corpus.
//!
//! ```text
//! cargo run --release --example prepare -- [--data-dir ROOT] [--cache FILE] [--tier small|default|full]
//! ```
//! Without `--data-dir`, the default real-music corpus of `--tier` is fetched into
//! `data/corpus-<tier>` (Debian packages, checked by sha256; a second run does no network).

use std::path::PathBuf;

use anyhow::Result;
use artist_crnn::data::{default_store_path, open_corpus, prepare_store};
use artist20::FeatureConfig;
use artist20::fetch::Tier;
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
    /// Tier of the default corpus: small (5 artists, 60 tracks), default (20 artists, 213
    /// tracks) or full (22 decodable artists, 238 tracks).
    #[arg(long, default_value = "default")]
    tier: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tier = Tier::parse(&args.tier)?;
    let corpus = open_corpus(args.data_dir.as_deref(), tier)?;
    let data = args
        .data_dir
        .clone()
        .unwrap_or_else(|| artist_crnn::data::default_corpus_dir(tier));
    let store = args
        .cache
        .clone()
        .unwrap_or_else(|| default_store_path(&data));
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
