//! Compares two experiment outputs (or two single runs) tested on identical songs.
//!
//! ```text
//! cargo run --release --example compare -- A B [--png FILE] [--resamples N] [--seed S]
//! ```

use std::path::PathBuf;

use anyhow::Result;
use artist_crnn::compare::{TestSet, compare, draw, to_markdown};
use clap::Parser;

/// Paired comparison of B against A on identical test songs: the song- and slice-level
/// weighted F1 difference (B - A) with a paired song-level bootstrap interval (each resample
/// draws one set of songs and scores both), the exact McNemar test on song correctness, and
/// a per-artist table, as Markdown on stdout; the per-artist differences with their intervals
/// as a PNG. A and B are each a pooled.json (k-fold run), a report.json (single run), or a
/// folder holding exactly one of them. Two runs on different songs are refused with the
/// first difference named.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The first run (the baseline).
    a: PathBuf,
    /// The second run.
    b: PathBuf,
    /// Where to draw the per-artist differences.
    #[arg(long, default_value = "compare.png")]
    png: PathBuf,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 10_000)]
    resamples: usize,
    /// Bootstrap seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (a, b) = (TestSet::open(&args.a)?, TestSet::open(&args.b)?);
    let params = eval::BootstrapParams {
        resamples: args.resamples,
        seed: args.seed,
    };
    let report = compare(&a, &b, &params)?;
    print!("{}", to_markdown(&a, &b, &report));
    draw(&args.png, &a, &report)?;
    eprintln!("compare: per-artist differences -> {}", args.png.display());
    Ok(())
}
