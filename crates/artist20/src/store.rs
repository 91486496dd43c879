//! The HDF5 feature store: one f32 `[n_mels, frames]` log-mel dataset per track, with the
//! feature configuration and each source file's size and mtime, so only changed tracks (or
//! all, after a configuration change) are recomputed. Writes go to `<store>.partial` and are
//! renamed into place: a kill never leaves a corrupt store, and a re-run resumes from the
//! partial file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Instant, UNIX_EPOCH};

use hdf5::types::VarLenUnicode;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::{Corpus, Error, Result, Track};

/// Version of the layout below; a store of another version is rebuilt.
pub const STORE_FORMAT_VERSION: u32 = 1;

/// Features per corpus track (`None`: no features, e.g. the file failed to decode).
pub type TrackFeatures = Vec<Option<Array2<f32>>>;

/// Which resampler makes the 16 kHz signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResamplerChoice {
    /// libsoxr HQ: `librosa.load`'s default, bit-identical.
    #[default]
    SoxrHq,
    /// rubato (pure Rust, not librosa-equal).
    Rubato,
}

/// Everything that determines the stored features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// The log-mel computation (its sample rate is the decode target rate).
    ///
    /// Default: [`melspec::MelConfig::default`] (paper).
    pub mel: melspec::MelConfig,
    /// Resampler.
    ///
    /// Default: [`ResamplerChoice::SoxrHq`].
    pub resampler: ResamplerChoice,
    /// Trim MP3 encoder delay where a gapless tag says so.
    ///
    /// Default: `true` (librosa 0.11 behaviour).
    pub gapless: bool,
    /// Round samples to 16-bit PCM first (librosa 0.5.1's decoder path).
    ///
    /// Default: `false`.
    pub quantize_to_i16: bool,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            mel: melspec::MelConfig::default(),
            resampler: ResamplerChoice::SoxrHq,
            gapless: true,
            quantize_to_i16: false,
        }
    }
}

impl FeatureConfig {
    /// The decoder options these features need.
    pub fn load_options(&self) -> audio_io::LoadOptions {
        audio_io::LoadOptions {
            target_sample_rate_hz: Some(self.mel.sample_rate_hz),
            resampler: match self.resampler {
                ResamplerChoice::SoxrHq => audio_io::Resampler::default(),
                ResamplerChoice::Rubato => audio_io::Resampler::Rubato,
            },
            gapless: self.gapless,
            quantize_to_i16: self.quantize_to_i16,
            ..audio_io::LoadOptions::default()
        }
    }

    /// Decodes `path` and computes its whole-track log-mel spectrogram (the top_db floor is
    /// per track, as the paper).
    pub fn compute(
        &self,
        plan: &melspec::MelSpectrogram,
        path: &Path,
    ) -> std::result::Result<(Array2<f32>, audio_io::Audio), String> {
        let audio = audio_io::load(path, &self.load_options()).map_err(|e| e.to_string())?;
        let mel = plan
            .db(&audio.samples)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((mel, audio))
    }
}

/// One stored track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackEntry {
    /// Identity: path relative to the corpus root.
    pub rel_path: String,
    /// Artist.
    pub artist: String,
    /// Album.
    pub album: String,
    /// Frames of the spectrogram.
    pub frames: usize,
    /// Samples decoded (at the feature sample rate).
    pub n_samples: u64,
    /// Source frames lost to damage while decoding.
    pub lost_frames: u64,
    /// Source file size, bytes.
    pub source_size: u64,
    /// Source file modification time, ns since the Unix epoch.
    pub source_mtime_ns: u64,
    /// Dataset path inside the HDF5 file.
    pub h5_path: String,
}

/// A track that could not be stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedTrack {
    /// Identity.
    pub rel_path: String,
    /// Source size when it failed.
    pub source_size: u64,
    /// Source mtime when it failed.
    pub source_mtime_ns: u64,
    /// The error.
    pub error: String,
}

/// What [`build_store`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildReport {
    /// The store was complete and current: nothing was written.
    pub noop: bool,
    /// Tracks computed now.
    pub computed: usize,
    /// Tracks kept from the previous store or partial file.
    pub reused: usize,
    /// Tracks that failed (now or before, unchanged since), with the error.
    pub failed: Vec<FailedTrack>,
    /// Entries removed (their file is gone from the corpus).
    pub removed: usize,
    /// Seconds of audio decoded now.
    pub audio_seconds: f64,
    /// Wall time.
    pub seconds: f64,
}

pub(crate) fn h5(path: &Path) -> impl Fn(hdf5::Error) -> Error + '_ {
    move |e| Error::Hdf5 {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn source_stamp(path: &Path) -> Result<(u64, u64)> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    Ok((meta.len(), mtime))
}

/// Dataset path of a track: `/tracks/<rel_path>`, with `.`/`..` components escaped.
fn h5_path_of(rel_path: &str) -> String {
    let parts: Vec<String> = rel_path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| match p {
            "." => "_dot_".to_string(),
            ".." => "_dotdot_".to_string(),
            other => other.to_string(),
        })
        .collect();
    format!("tracks/{}", parts.join("/"))
}

pub(crate) fn str_attr(loc: &hdf5::Location, name: &str, value: &str, path: &Path) -> Result<()> {
    let v: VarLenUnicode = value.parse().map_err(|e| Error::Store {
        path: path.to_path_buf(),
        reason: format!("attribute {name}: {e:?}"),
    })?;
    loc.new_attr::<VarLenUnicode>()
        .create(name)
        .map_err(h5(path))?
        .write_scalar(&v)
        .map_err(h5(path))
}

pub(crate) fn read_str_attr(loc: &hdf5::Location, name: &str, path: &Path) -> Result<String> {
    Ok(loc
        .attr(name)
        .map_err(h5(path))?
        .read_scalar::<VarLenUnicode>()
        .map_err(h5(path))?
        .as_str()
        .to_string())
}

fn u64_attr(loc: &hdf5::Location, name: &str, value: u64, path: &Path) -> Result<()> {
    loc.new_attr::<u64>()
        .create(name)
        .map_err(h5(path))?
        .write_scalar(&value)
        .map_err(h5(path))
}

fn read_u64_attr(loc: &hdf5::Location, name: &str, path: &Path) -> Result<u64> {
    loc.attr(name)
        .map_err(h5(path))?
        .read_scalar::<u64>()
        .map_err(h5(path))
}

/// An open feature store, read side.
#[derive(Debug)]
pub struct FeatureStore {
    path: PathBuf,
    pub(crate) file: hdf5::File,
    config: FeatureConfig,
    entries: BTreeMap<String, TrackEntry>,
    failed: Vec<FailedTrack>,
}

impl FeatureStore {
    /// Opens a store and reads its index (every track's attributes).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::Store {
                path: path.to_path_buf(),
                reason: "no feature store here (run the prepare example first)".into(),
            });
        }
        let file = hdf5::File::open(path).map_err(h5(path))?;
        Self::from_file(path, file)
    }

    fn from_file(path: &Path, file: hdf5::File) -> Result<Self> {
        let version = read_u64_attr(&file, "format_version", path).map_err(|_| Error::Store {
            path: path.to_path_buf(),
            reason: "not an artist-crnn feature store (no format_version attribute)".into(),
        })?;
        if version != u64::from(STORE_FORMAT_VERSION) {
            return Err(Error::Store {
                path: path.to_path_buf(),
                reason: format!("store format {version}, this code reads {STORE_FORMAT_VERSION}"),
            });
        }
        let config: FeatureConfig =
            serde_json::from_str(&read_str_attr(&file, "feature_config_json", path)?).map_err(
                |e| Error::Store {
                    path: path.to_path_buf(),
                    reason: format!("feature_config_json: {e}"),
                },
            )?;
        let failed: Vec<FailedTrack> = match read_str_attr(&file, "failed_json", path) {
            Ok(s) => serde_json::from_str(&s).map_err(|e| Error::Store {
                path: path.to_path_buf(),
                reason: format!("failed_json: {e}"),
            })?,
            Err(_) => Vec::new(),
        };
        let mut entries = BTreeMap::new();
        if file.link_exists("tracks") {
            // Walked by name, not with `Group::datasets()`: a merged index holds external links
            // to the shards' datasets, which only opening by name follows.
            let mut stack = vec![(
                "tracks".to_string(),
                file.group("tracks").map_err(h5(path))?,
            )];
            while let Some((prefix, g)) = stack.pop() {
                for name in g.member_names().map_err(h5(path))? {
                    let h5_path = format!("{prefix}/{name}");
                    match g.loc_type_by_name(&name).map_err(h5(path))? {
                        hdf5::LocationType::Dataset => {
                            let ds = g.dataset(&name).map_err(h5(path))?;
                            let e = TrackEntry {
                                rel_path: read_str_attr(&ds, "rel_path", path)?,
                                artist: read_str_attr(&ds, "artist", path)?,
                                album: read_str_attr(&ds, "album", path)?,
                                frames: ds.shape().get(1).copied().unwrap_or(0),
                                n_samples: read_u64_attr(&ds, "n_samples", path)?,
                                lost_frames: read_u64_attr(&ds, "lost_frames", path)?,
                                source_size: read_u64_attr(&ds, "source_size", path)?,
                                source_mtime_ns: read_u64_attr(&ds, "source_mtime_ns", path)?,
                                h5_path,
                            };
                            entries.insert(e.rel_path.clone(), e);
                        }
                        hdf5::LocationType::Group => {
                            stack.push((h5_path, g.group(&name).map_err(h5(path))?));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            config,
            entries,
            failed,
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration the features were made with.
    pub fn config(&self) -> &FeatureConfig {
        &self.config
    }

    /// Stored tracks by `rel_path`.
    pub fn entries(&self) -> &BTreeMap<String, TrackEntry> {
        &self.entries
    }

    /// Tracks that failed when the store was built.
    pub fn failed(&self) -> &[FailedTrack] {
        &self.failed
    }

    /// The log-mel spectrogram `[n_mels, frames]` of a track.
    pub fn read(&self, rel_path: &str) -> Result<Array2<f32>> {
        let e = self.entries.get(rel_path).ok_or_else(|| Error::Store {
            path: self.path.clone(),
            reason: format!("no features for {rel_path}"),
        })?;
        self.file
            .dataset(&e.h5_path)
            .map_err(h5(&self.path))?
            .read_2d::<f32>()
            .map_err(h5(&self.path))
    }

    /// Features of every corpus track (`None` where the store has none), checking that each
    /// stored entry is current (same size and mtime as the file now).
    pub fn load(&self, corpus: &Corpus) -> Result<TrackFeatures> {
        corpus
            .tracks
            .iter()
            .map(|t| match self.entries.get(&t.rel_path) {
                None => Ok(None),
                Some(e) => {
                    let (size, mtime) = source_stamp(&t.path)?;
                    if (size, mtime) != (e.source_size, e.source_mtime_ns) {
                        return Err(Error::Store {
                            path: self.path.clone(),
                            reason: format!(
                                "{} changed since its features were stored: run prepare again",
                                t.path.display()
                            ),
                        });
                    }
                    self.read(&t.rel_path).map(Some)
                }
            })
            .collect()
    }
}

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
    let mut group = store.file.group("/").map_err(h5(&path))?;
    for part in parent.split('/') {
        group = if group.link_exists(part) {
            group.group(part)
        } else {
            group.create_group(part)
        }
        .map_err(h5(&path))?;
    }
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
