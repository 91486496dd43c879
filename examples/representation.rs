//! t-SNE of a trained model's 32-d bottleneck (the paper's `representation.py`).
//!
//! ```text
//! cargo run --release --example representation -- --model DIR [--data-dir ROOT] [--all-songs] --out DIR
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use artist_crnn::cli::choose_device;
use artist_crnn::data::Tier;
use artist_crnn::data::{default_store_path, load_features, open_corpus, prepare_store};
use artist_crnn::experiment::ModelMetadata;
use artist20::{SplitKind, SplitOptions, make_split};
use clap::Parser;

/// Embeds slices with the model, runs Barnes-Hut t-SNE (perplexity 30, 1000 iterations,
/// seeded) and writes OUT/tsne.csv (x0, x1, label) and OUT/tsne.png. By default only the test
/// songs of the model's split are used; --all-songs uses every song, as the paper did (then
/// the plot is mostly training data).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Corpus the model was trained on. Default: the one recorded in the model.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Feature store. Default: data/features/<corpus folder name>.h5.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Every song instead of the test songs.
    #[arg(long)]
    all_songs: bool,
    /// cpu, cuda or cuda:N. Default: CUDA when available, else CPU.
    #[arg(long)]
    device: Option<String>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<()> {
    crnn::recycle_large_allocations();
    let args = Args::parse();
    let device = choose_device(args.device.as_deref())?;
    let model = artist_crnn::cli::load_model(&args.model, device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let meta: ModelMetadata = serde_json::from_value(model.file.metadata.clone())
        .context("the model has no feature metadata")?;
    let data = args.data_dir.clone().unwrap_or_else(|| meta.data.clone());
    let corpus = open_corpus(Some(&data), Tier::Default)?;
    let store = args
        .cache
        .clone()
        .unwrap_or_else(|| default_store_path(&data));
    prepare_store(&corpus, &store, &meta.features, true)?;
    let (s, features) = load_features(&corpus, &store)?;
    if s.config() != &meta.features {
        bail!(
            "{}: features were made with a different configuration than the model's",
            store.display()
        );
    }
    let Some(kind) = SplitKind::from_name(&meta.split) else {
        bail!("unknown split {:?} in the model metadata", meta.split);
    };
    let mut split =
        make_split(&corpus, kind, meta.split_seed, &SplitOptions::default()).or_else(|_| {
            make_split(
                &corpus,
                kind,
                meta.split_seed,
                &SplitOptions {
                    album_fallback: artist20::AlbumFallback::ValidationFromTrain,
                    ..SplitOptions::default()
                },
            )
        })?;
    if split.classes != model.file.class_names {
        bail!(
            "the corpus's classes {:?} differ from the model's {:?}",
            split.classes,
            model.file.class_names
        );
    }
    let tracks: Vec<usize> = if args.all_songs {
        (0..corpus.tracks.len())
            .filter(|&t| split.label(t).is_some())
            .collect()
    } else {
        std::mem::take(&mut split.test)
    };
    let what = if args.all_songs {
        "all songs"
    } else {
        "test songs"
    };
    let title = format!("t-SNE of the bottleneck ({what})");
    let n = artist_crnn::representation::write_tsne(&artist_crnn::representation::TsneParams {
        model: &model,
        features: &features,
        split: &split,
        tracks: &tracks,
        device,
        out: &args.out,
        title: &title,
    })?;
    println!(
        "representation: {n} slices of {what} -> {} and tsne.csv",
        args.out.join("tsne.png").display()
    );
    Ok(())
}
