//! Building and refreshing a feature store: decode and log-mel in parallel, HDF5 writes into
//! `<store>.partial` on the calling thread, renamed into place when complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use rayon::prelude::*;

use crate::error::io_err;
use crate::h5attr::{ensure_groups, h5, str_attr, u64_attr};
use crate::store::{
    BuildReport, FailedTrack, FeatureConfig, FeatureStore, STORE_FORMAT_VERSION, TrackEntry,
    h5_path_of, source_stamp,
};
use crate::{Corpus, Error, Result, Track};

/// An entry is current for a track when the file's size and mtime are the stored ones.
fn current(e: &TrackEntry, size: u64, mtime: u64) -> bool {
    e.source_size == size && e.source_mtime_ns == mtime
}

fn open_partial(path: &Path, config: &FeatureConfig) -> Option<FeatureStore> {
    let file = hdf5::File::open_rw(path).ok()?;
    let store = FeatureStore::from_file(path, file).ok()?;
    (store.config == *config).then_some(store)
}

pub(crate) fn create_partial(path: &Path, config: &FeatureConfig) -> Result<FeatureStore> {
    let _ = std::fs::remove_file(path);
    let file = hdf5::File::create(path).map_err(h5(path))?;
    u64_attr(
        &file,
        "format_version",
        u64::from(STORE_FORMAT_VERSION),
        path,
    )?;
    let json = serde_json::to_string(config).map_err(|e| Error::Store {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    str_attr(&file, "feature_config_json", &json, path)?;
    // The mel parameters one by one too, for readers without JSON at hand.
    let m = &config.mel;
    for (name, v) in [
        ("sample_rate_hz", u64::from(m.sample_rate_hz)),
        ("n_fft", m.n_fft as u64),
        ("hop_length", m.hop_length as u64),
        ("win_length", m.win_length as u64),
        ("n_mels", m.n_mels as u64),
    ] {
        u64_attr(&file, name, v, path)?;
    }
    str_attr(
        &file,
        "pad_mode",
        &format!("{:?}", m.pad_mode).to_lowercase(),
        path,
    )?;
    str_attr(
        &file,
        "values",
        "log-mel power in dB: 10 log10(max(amin, S)) - 10 log10(ref), floored at track max - top_db",
        path,
    )?;
    str_attr(&file, "crate_version", env!("CARGO_PKG_VERSION"), path)?;
    file.create_group("tracks").map_err(h5(path))?;
    FeatureStore::from_file(path, file)
}

/// Writes one track's dataset and attributes into an open (partial) store.
fn write_track(
    store: &mut FeatureStore,
    track: &Track,
    mel: &Array2<f32>,
    n_samples: u64,
    lost_frames: u64,
    stamp: (u64, u64),
) -> Result<()> {
    let path = store.path.clone();
    let h5_path = h5_path_of(&track.rel_path);
    let (parent, name) = h5_path
        .rsplit_once('/')
        .unwrap_or(("tracks", h5_path.as_str()));
    let group = ensure_groups(&store.file, parent, &path)?;
    if group.link_exists(name) {
        group.unlink(name).map_err(h5(&path))?;
    }
    let ds = group
        .new_dataset_builder()
        .with_data(mel)
        .create(name)
        .map_err(h5(&path))?;
    str_attr(&ds, "rel_path", &track.rel_path, &path)?;
    str_attr(&ds, "artist", &track.artist, &path)?;
    str_attr(&ds, "album", &track.album, &path)?;
    u64_attr(&ds, "n_samples", n_samples, &path)?;
    u64_attr(&ds, "lost_frames", lost_frames, &path)?;
    u64_attr(&ds, "source_size", stamp.0, &path)?;
    u64_attr(&ds, "source_mtime_ns", stamp.1, &path)?;
    store.file.flush().map_err(h5(&path))?;
    store.entries.insert(
        track.rel_path.clone(),
        TrackEntry {
            rel_path: track.rel_path.clone(),
            artist: track.artist.clone(),
            album: track.album.clone(),
            frames: mel.ncols(),
            n_samples,
            lost_frames,
            source_size: stamp.0,
            source_mtime_ns: stamp.1,
            h5_path,
        },
    );
    Ok(())
}

/// Builds or refreshes the feature store at `path` for `corpus`: decoding and log-mel in
/// parallel over tracks (rayon; the HDF5 writes on the calling thread), a progress bar when
/// `progress` is set, failures listed and left out. A store that is complete and current is
/// left untouched (a no-op run reads only its index).
pub fn build_store(
    corpus: &Corpus,
    path: &Path,
    config: &FeatureConfig,
    progress: bool,
) -> Result<BuildReport> {
    let t0 = Instant::now();
    let plan = melspec::MelSpectrogram::new(config.mel.clone())?;
    let stamps: Vec<(u64, u64)> = corpus
        .tracks
        .iter()
        .map(|t| source_stamp(&t.path))
        .collect::<Result<_>>()?;
    let partial_path = PathBuf::from(format!("{}.partial", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let old = FeatureStore::open(path)
        .ok()
        .filter(|s| s.config == *config);
    let known: std::collections::BTreeSet<&str> =
        corpus.tracks.iter().map(|t| t.rel_path.as_str()).collect();

    // No-op: every track stored and current (or failed, unchanged), nothing extra, no partial.
    if let Some(old) = &old
        && !partial_path.exists()
    {
        let failed_now: BTreeMap<&str, &FailedTrack> = old
            .failed
            .iter()
            .map(|f| (f.rel_path.as_str(), f))
            .collect();
        let all_current = corpus
            .tracks
            .iter()
            .zip(&stamps)
            .all(|(t, &(size, mtime))| {
                old.entries
                    .get(&t.rel_path)
                    .is_some_and(|e| current(e, size, mtime))
                    || failed_now
                        .get(t.rel_path.as_str())
                        .is_some_and(|f| f.source_size == size && f.source_mtime_ns == mtime)
            });
        if all_current
            && old.entries.keys().all(|k| known.contains(k.as_str()))
            && old
                .failed
                .iter()
                .all(|f| known.contains(f.rel_path.as_str()))
        {
            return Ok(BuildReport {
                noop: true,
                computed: 0,
                reused: old.entries.len(),
                failed: old.failed.clone(),
                removed: 0,
                audio_seconds: 0.0,
                seconds: t0.elapsed().as_secs_f64(),
            });
        }
    }

    let mut partial = match open_partial(&partial_path, config) {
        Some(p) => p,
        None => create_partial(&partial_path, config)?,
    };
    let mut reused = 0usize;
    let mut failed = Vec::new();
    let mut todo = Vec::new();
    for (i, (t, &(size, mtime))) in corpus.tracks.iter().zip(&stamps).enumerate() {
        if partial
            .entries
            .get(&t.rel_path)
            .is_some_and(|e| current(e, size, mtime))
        {
            reused += 1;
        } else if let Some(e) = old
            .as_ref()
            .and_then(|o| o.entries.get(&t.rel_path))
            .filter(|e| current(e, size, mtime))
        {
            let o = old.as_ref().ok_or_else(|| Error::Store {
                path: path.to_path_buf(),
                reason: "store vanished".into(),
            })?;
            let mel = o.read(&t.rel_path)?;
            write_track(
                &mut partial,
                t,
                &mel,
                e.n_samples,
                e.lost_frames,
                (size, mtime),
            )?;
            reused += 1;
        } else if let Some(f) = old
            .as_ref()
            .and_then(|o| o.failed.iter().find(|f| f.rel_path == t.rel_path))
            .filter(|f| f.source_size == size && f.source_mtime_ns == mtime)
        {
            failed.push(f.clone());
        } else {
            todo.push(i);
        }
    }
    // Entries of tracks no longer in the corpus.
    let stale: Vec<TrackEntry> = partial
        .entries
        .values()
        .filter(|e| !known.contains(e.rel_path.as_str()))
        .cloned()
        .collect();
    for e in &stale {
        partial.file.unlink(&e.h5_path).map_err(h5(&partial_path))?;
        partial.entries.remove(&e.rel_path);
    }
    // Entries of the previous store whose files left the corpus are not carried over.
    let removed = old
        .as_ref()
        .map_or(0, |o| {
            o.entries
                .keys()
                .filter(|k| !known.contains(k.as_str()))
                .count()
        })
        .max(stale.len());

    let bar = if progress {
        ProgressBar::new(todo.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "features {bar:30} {pos}/{len} tracks {elapsed_precise} eta {eta} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut computed = 0usize;
    let mut audio_seconds = 0f64;
    type Done = (
        usize,
        std::result::Result<(Array2<f32>, u64, u64, f64), String>,
    );
    let result: Result<()> = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Done>(4);
        let todo_ref = &todo;
        let plan_ref = &plan;
        scope.spawn(move || {
            todo_ref.par_iter().for_each_with(tx, |tx, &i| {
                let t = &corpus.tracks[i];
                let r = config
                    .compute(plan_ref, &t.path)
                    .map(|(mel, a)| (mel, a.samples.len() as u64, a.lost_frames, a.duration_s()));
                let _ = tx.send((i, r));
            });
        });
        for (i, r) in rx {
            let t = &corpus.tracks[i];
            bar.set_message(t.rel_path.clone());
            match r {
                Ok((mel, n_samples, lost, secs)) => {
                    write_track(&mut partial, t, &mel, n_samples, lost, stamps[i])?;
                    computed += 1;
                    audio_seconds += secs;
                }
                Err(error) => failed.push(FailedTrack {
                    rel_path: t.rel_path.clone(),
                    source_size: stamps[i].0,
                    source_mtime_ns: stamps[i].1,
                    error,
                }),
            }
            bar.inc(1);
        }
        Ok(())
    });
    result?;
    bar.finish_and_clear();
    failed.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    let json = serde_json::to_string(&failed).map_err(|e| Error::Store {
        path: partial_path.clone(),
        reason: e.to_string(),
    })?;
    if partial.file.attr("failed_json").is_ok() {
        partial
            .file
            .delete_attr("failed_json")
            .map_err(h5(&partial_path))?;
    }
    str_attr(&partial.file, "failed_json", &json, &partial_path)?;
    partial.file.flush().map_err(h5(&partial_path))?;
    partial.file.close().map_err(h5(&partial_path))?;
    if let Some(o) = old {
        o.file.close().map_err(h5(path))?;
    }
    std::fs::rename(&partial_path, path).map_err(io_err(path))?;
    Ok(BuildReport {
        noop: false,
        computed,
        reused,
        failed,
        removed,
        audio_seconds,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
