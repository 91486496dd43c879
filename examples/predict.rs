//! Top-K artists of audio files with a trained model.
//!
//! ```text
//! cargo run --release --example predict -- --model DIR [--top K] [--json] FILE...
//! ```

use std::path::PathBuf;

use anyhow::{Result, bail};
use artist_crnn::cli::choose_device;
use artist_crnn::predict::Predictor;
use clap::Parser;

/// Predicts the artist of each file: decodes it (any format audio-io reads, any sample rate),
/// computes the model's log-mel features over the whole file, cuts it into the model's slices,
/// and votes over them (the paper's rule; the per-artist probability shown is the mean over
/// slices).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Model directory (OUT/<split>/<frames>/seed-<seed>/model of the experiment).
    #[arg(long)]
    model: PathBuf,
    /// How many artists to show per file.
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// One JSON object per file instead of text.
    #[arg(long)]
    json: bool,
    /// cpu, cuda or cuda:N. Default: CUDA when available, else CPU.
    #[arg(long)]
    device: Option<String>,
    /// Audio files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn main() -> Result<()> {
    crnn::recycle_large_allocations();
    let args = Args::parse();
    let device = choose_device(args.device.as_deref())?;
    let predictor = Predictor::load(&args.model, device)?;
    let names = &predictor.model.file.class_names;
    let mut failed = 0;
    for file in &args.files {
        match predictor.predict(file, device) {
            Ok(p) => {
                let (mean, counts, n) = (&p.mean_probability, &p.votes, p.slices);
                let mut order: Vec<usize> = (0..names.len()).collect();
                order.sort_by(|&a, &b| {
                    (counts[b], mean[b])
                        .partial_cmp(&(counts[a], mean[a]))
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
                let top: Vec<usize> = order.into_iter().take(args.top.max(1)).collect();
                if args.json {
                    let list: Vec<_> = top.iter().map(|&c| serde_json::json!({"artist": names[c], "probability": mean[c], "votes": counts[c]})).collect();
                    println!(
                        "{}",
                        serde_json::json!({"file": file.display().to_string(), "slices": n, "top": list})
                    );
                } else {
                    let parts: Vec<String> = top
                        .iter()
                        .map(|&c| format!("{} {:.3} ({} votes)", names[c], mean[c], counts[c]))
                        .collect();
                    println!("{}: {} [{n} slices]", file.display(), parts.join(", "));
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} file(s) could not be predicted",
            args.files.len()
        );
    }
    Ok(())
}
