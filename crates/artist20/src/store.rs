//! The HDF5 feature store: one f32 `[n_mels, frames]` log-mel dataset per track, with the
//! feature configuration and each source file's size and mtime, so only changed tracks (or
//! all, after a configuration change) are recomputed. Writes go to `<store>.partial` and are
//! renamed into place: a kill never leaves a corrupt store, and a re-run resumes from the
//! partial file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::h5attr::{h5, read_str_attr, read_u64_attr};
use crate::{Corpus, Error, Result};

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

/// What [`build_store`](crate::build_store) did.
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

pub(crate) fn source_stamp(path: &Path) -> Result<(u64, u64)> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    Ok((meta.len(), mtime))
}

/// Dataset path of a track: `/tracks/<rel_path>`, with `.`/`..` components escaped.
pub(crate) fn h5_path_of(rel_path: &str) -> String {
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

/// An open feature store, read side.
#[derive(Debug)]
pub struct FeatureStore {
    pub(crate) path: PathBuf,
    pub(crate) file: hdf5::File,
    pub(crate) config: FeatureConfig,
    pub(crate) entries: BTreeMap<String, TrackEntry>,
    pub(crate) failed: Vec<FailedTrack>,
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

    pub(crate) fn from_file(path: &Path, file: hdf5::File) -> Result<Self> {
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
