//! Top-K artists of audio files with a trained model.
//!
//! ```text
//! cargo run --release --example predict -- --model DIR [--top K] [--json] FILE...
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use artist_crnn::cli::choose_device;
use artist_crnn::experiment::ModelMetadata;
use artist20::{SliceIndex, SliceMode};
use clap::Parser;
use crnn::{TrainedModel, ViewSource};
use eval::VoteRule;

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
    let model = TrainedModel::load(&args.model, device)
        .with_context(|| format!("loading the model in {}", args.model.display()))?;
    let meta: ModelMetadata = serde_json::from_value(model.file.metadata.clone())
        .with_context(|| format!("{}: config.json has no feature metadata (not a model of this project's experiment)", args.model.display()))?;
    if meta.features.mel.n_mels != model.model.config().n_mels {
        bail!(
            "{}: the model takes {} mel bands but its features have {}",
            args.model.display(),
            model.model.config().n_mels,
            meta.features.mel.n_mels
        );
    }
    let plan = melspec::MelSpectrogram::new(meta.features.mel.clone())?;
    let frames = model.model.config().slice_frames;
    let names = &model.file.class_names;
    let mut failed = 0;
    for file in &args.files {
        match predict(&model, &meta, &plan, file, frames, device) {
            Ok((mean, counts, n)) => {
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

/// Mean probability per class, vote counts (paper rule), slice count.
fn predict(
    model: &TrainedModel,
    meta: &ModelMetadata,
    plan: &melspec::MelSpectrogram,
    file: &std::path::Path,
    frames: usize,
    device: tch::Device,
) -> Result<(Vec<f64>, Vec<u32>, usize)> {
    let audio = audio_io::load(file, &meta.features.load_options())?;
    let mel = plan
        .db(&audio.samples)
        .with_context(|| format!("{}: log-mel", file.display()))?;
    let features = vec![Some(mel)];
    // The model's slicing rule; a file too short for it still gets its full windows.
    let mut index = SliceIndex::new(&features, &[0], frames, meta.slice_mode)?;
    if index.is_empty() {
        index = SliceIndex::new(&features, &[0], frames, SliceMode::AllFull)?;
    }
    if index.is_empty() {
        bail!(
            "{}: {:.1} s of audio is shorter than one {frames}-frame slice ({:.1} s)",
            file.display(),
            audio.duration_s(),
            frames as f64 / meta.features.mel.frames_per_second()
        );
    }
    let views = (0..index.len())
        .filter_map(|i| index.view(&features, i))
        .collect::<Vec<_>>();
    let n = views.len();
    let source = ViewSource::new(views, vec![0; n])?;
    let probs = crnn::predict_proba(&model.model, &source, 256, device)?;
    let votes = eval::song_votes(probs.view(), &vec![0; n], VoteRule::Paper)?;
    let vote = &votes[0];
    Ok((vote.mean_probability.clone(), vote.counts.clone(), n))
}
