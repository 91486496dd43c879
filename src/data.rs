//! Where the corpus and the feature store live, and getting them ready.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use artist20::{BuildReport, Corpus, FeatureConfig, FeatureStore, TrackFeatures, build_store};
pub use corpus_fetch::Tier;

/// Folder of the fetched default corpus of a tier, relative to the working directory.
pub fn default_corpus_dir(tier: Tier) -> PathBuf {
    PathBuf::from("data").join(format!("corpus-{}", tier.name()))
}

/// Where downloaded .deb packages are kept.
pub fn deb_cache_dir() -> PathBuf {
    PathBuf::from("data").join("debs")
}

/// Default feature store for a corpus folder or list file: `data/features/<name>.h5`.
pub fn default_store_path(data: &Path) -> PathBuf {
    let name = data
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("corpus")
        .trim_end_matches(".tsv")
        .to_string();
    PathBuf::from("data")
        .join("features")
        .join(format!("{name}.h5"))
}

/// Resolves `--data-dir` (fetching the default corpus of `tier` when it is absent) and
/// scans it. Prints what happened.
pub fn open_corpus(data_dir: Option<&Path>, tier: Tier) -> Result<Corpus> {
    let root = match data_dir {
        Some(d) => {
            if !d.exists() {
                bail!("{}: no such folder or list file", d.display());
            }
            d.to_path_buf()
        }
        None => {
            let root = default_corpus_dir(tier);
            let t0 = Instant::now();
            let r = corpus_fetch::fetch(&root, tier, &deb_cache_dir(), |step| {
                eprintln!("corpus: {step}")
            })
            .with_context(|| {
                format!(
                    "fetching the {} corpus into {}",
                    tier.name(),
                    root.display()
                )
            })?;
            eprintln!(
                "corpus: {} tier ready in {}: {} files ({} written now, {} package(s) downloaded{}) in {:.1} s",
                tier.name(),
                root.display(),
                r.present,
                r.written,
                r.downloaded_packages.len(),
                if r.waited_seconds > 0.5 {
                    format!(
                        ", {:.1} s waiting for another process's fetch",
                        r.waited_seconds
                    )
                } else {
                    String::new()
                },
                t0.elapsed().as_secs_f64()
            );
            if !r.left_out.is_empty() {
                eprintln!("corpus: {} file(s) left out:", r.left_out.len());
                for line in &r.left_out {
                    eprintln!("  {line}");
                }
            }
            root
        }
    };
    let corpus =
        Corpus::open(&root).with_context(|| format!("reading the corpus at {}", root.display()))?;
    let skipped: Vec<String> = corpus
        .skipped_counts()
        .iter()
        .map(|(r, n)| format!("{n} {r:?}"))
        .collect();
    eprintln!(
        "corpus: {} tracks by {} artists{}",
        corpus.tracks.len(),
        corpus.artists().len(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" (skipped: {})", skipped.join(", "))
        }
    );
    Ok(corpus)
}

/// Builds or refreshes the store and prints a summary.
pub fn prepare_store(
    corpus: &Corpus,
    store: &Path,
    config: &FeatureConfig,
    progress: bool,
) -> Result<BuildReport> {
    let report = build_store(corpus, store, config, progress)
        .with_context(|| format!("building the feature store {}", store.display()))?;
    if report.noop {
        eprintln!(
            "features: {} is up to date ({} tracks, checked in {:.2} s)",
            store.display(),
            report.reused,
            report.seconds
        );
    } else {
        eprintln!(
            "features: {} computed, {} reused, {} removed, {} failed in {:.1} s ({:.1} tracks/s, {:.0} audio-s/s) -> {}",
            report.computed,
            report.reused,
            report.removed,
            report.failed.len(),
            report.seconds,
            report.computed as f64 / report.seconds.max(1e-9),
            report.audio_seconds / report.seconds.max(1e-9),
            store.display()
        );
    }
    for f in &report.failed {
        eprintln!("features: FAILED {}: {}", f.rel_path, f.error);
    }
    Ok(report)
}

/// Loads every track's features from the store (checking they are current).
pub fn load_features(corpus: &Corpus, store: &Path) -> Result<(FeatureStore, TrackFeatures)> {
    let s = FeatureStore::open(store)?;
    let features = s.load(corpus)?;
    Ok((s, features))
}
