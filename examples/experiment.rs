//! The paper's experiment end to end: prepare (cached) -> split -> slice -> train -> evaluate
//! at slice and song level -> per-run reports and plots -> summary tables and a t-SNE.
//!
//! ```text
//! cargo run --release --example experiment -- [--data-dir ROOT] [--split song|album|official|all]
//!     [--slice-frames 94,...] [--seeds 0,21,42] [--epochs N] [--patience N] [--lr X]
//!     [--device cpu|cuda] [--paper-grid] [--resume] --out DIR
//! ```

use anyhow::Result;
use artist_crnn::experiment_cli::{Args, run};
use clap::Parser;

fn main() -> Result<()> {
    crnn::recycle_large_allocations();
    let outcome = run(Args::parse())?;
    print!("{}", outcome.summary_md);
    Ok(())
}
