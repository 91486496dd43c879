//! Finding the tracks: a `<root>/<artist>/<album>/<track>` tree, a list file, and artist20's
//! official album lists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::{Error, Result};

/// File extensions taken as audio (case-insensitive): those of every format this build of
/// audio-io decodes ([`audio_io::formats`], the one list).
pub fn audio_extensions() -> Vec<&'static str> {
    audio_io::formats::extensions()
}

/// One song.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    /// The file.
    pub path: PathBuf,
    /// Identity of the track: its path relative to the corpus root (or to the list file's
    /// folder), with `/` separators. Unlike the paper's bare file name, two songs can never
    /// share it.
    pub rel_path: String,
    /// Artist (the label).
    pub artist: String,
    /// Album.
    pub album: String,
}

impl Track {
    /// The bare file name: the paper's song key (`predict_artist` grouped slices by it).
    pub fn file_name(&self) -> &str {
        self.rel_path.rsplit('/').next().unwrap_or(&self.rel_path)
    }
}

/// Why a directory entry was not taken as a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Name starts with a dot.
    Hidden,
    /// Not an audio extension.
    NotAudio,
    /// A file at the artist or root level, outside any album folder.
    OutsideAlbum,
}

/// A set of tracks and what was skipped finding them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Corpus {
    /// Where the tracks were found (root folder or list file).
    pub source: PathBuf,
    /// Tracks, sorted by `rel_path`.
    pub tracks: Vec<Track>,
    /// Skipped entries, with why.
    pub skipped: Vec<(PathBuf, SkipReason)>,
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn is_audio(path: &Path) -> bool {
    audio_io::formats::has_audio_extension(path)
}

/// Sorted entries of a folder: (name, path, is_dir). Names that are not UTF-8 are refused.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let name = entry.file_name().into_string().map_err(|n| Error::Layout {
            path: path.clone(),
            rule: format!("file name {n:?} is not UTF-8"),
        })?;
        let is_dir = std::fs::metadata(&path).map_err(io_err(&path))?.is_dir();
        out.push((name, path, is_dir));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

impl Corpus {
    /// Scans `<root>/<artist>/<album>/...` (files below an album folder, at any depth, belong to
    /// it). Order is by name on every level, so it does not depend on the file system. Hidden
    /// entries, non-audio files and files outside album folders are skipped and listed.
    pub fn scan(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::Layout {
                path: root.to_path_buf(),
                rule: "is not a folder (expected <root>/<artist>/<album>/<track>)".into(),
            });
        }
        let mut tracks = Vec::new();
        let mut skipped = Vec::new();
        for (artist, artist_path, is_dir) in entries(root)? {
            if is_hidden(&artist) {
                skipped.push((artist_path, SkipReason::Hidden));
                continue;
            }
            if !is_dir {
                skipped.push((artist_path, SkipReason::OutsideAlbum));
                continue;
            }
            for (album, album_path, is_dir) in entries(&artist_path)? {
                if is_hidden(&album) {
                    skipped.push((album_path, SkipReason::Hidden));
                    continue;
                }
                if !is_dir {
                    skipped.push((album_path, SkipReason::OutsideAlbum));
                    continue;
                }
                let mut stack = vec![(album_path, format!("{artist}/{album}"))];
                while let Some((dir, prefix)) = stack.pop() {
                    let mut subdirs = Vec::new();
                    for (name, path, is_dir) in entries(&dir)? {
                        if is_hidden(&name) {
                            skipped.push((path, SkipReason::Hidden));
                        } else if is_dir {
                            subdirs.push((path, format!("{prefix}/{name}")));
                        } else if !is_audio(&path) {
                            skipped.push((path, SkipReason::NotAudio));
                        } else {
                            tracks.push(Track {
                                path,
                                rel_path: format!("{prefix}/{name}"),
                                artist: artist.clone(),
                                album: album.clone(),
                            });
                        }
                    }
                    stack.extend(subdirs.into_iter().rev());
                }
            }
        }
        tracks.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
        if tracks.is_empty() {
            return Err(Error::EmptyCorpus {
                path: root.to_path_buf(),
                detail: format!("{} entries skipped", skipped.len()),
            });
        }
        Ok(Self {
            source: root.to_path_buf(),
            tracks,
            skipped,
        })
    }

    /// Reads a list file: one `path<TAB>artist[<TAB>album]` per line (the MIREX convention;
    /// `#` comments and blank lines ignored; paths relative to the list file's folder). The
    /// album defaults to `unknown`.
    pub fn from_list(list: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(list).map_err(io_err(list))?;
        let base = list.parent().unwrap_or(Path::new("."));
        let mut tracks = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let bad = |rule: String| Error::Layout {
                path: list.to_path_buf(),
                rule: format!("line {}: {rule}", i + 1),
            };
            if !(2..=3).contains(&fields.len()) || fields.iter().any(|f| f.trim().is_empty()) {
                return Err(bad("expected path<TAB>artist[<TAB>album]".into()));
            }
            let rel = fields[0].replace('\\', "/");
            if !seen.insert(rel.clone()) {
                return Err(bad(format!("{rel} is listed twice")));
            }
            tracks.push(Track {
                path: base.join(&rel),
                rel_path: rel,
                artist: fields[1].to_string(),
                album: fields.get(2).map_or("unknown", |a| a).to_string(),
            });
        }
        tracks.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
        if tracks.is_empty() {
            return Err(Error::EmptyCorpus {
                path: list.to_path_buf(),
                detail: "the list has no entries".into(),
            });
        }
        Ok(Self {
            source: list.to_path_buf(),
            tracks,
            skipped: Vec::new(),
        })
    }

    /// A folder is scanned, a file is read as a list.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            Self::scan(path)
        } else {
            Self::from_list(path)
        }
    }

    /// Artist names in label order: sorted, as the paper's `LabelEncoder`.
    pub fn artists(&self) -> Vec<String> {
        self.tracks
            .iter()
            .map(|t| t.artist.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Label (index into [`artists`](Self::artists)) of every track.
    pub fn labels(&self) -> Vec<usize> {
        let artists = self.artists();
        self.tracks
            .iter()
            .map(|t| artists.binary_search(&t.artist).unwrap_or(0))
            .collect()
    }

    /// Albums of each artist, sorted: `(artist, [album, ...])`.
    pub fn albums_by_artist(&self) -> Vec<(String, Vec<String>)> {
        self.artists()
            .into_iter()
            .map(|a| {
                let albums: BTreeSet<String> = self
                    .tracks
                    .iter()
                    .filter(|t| t.artist == a)
                    .map(|t| t.album.clone())
                    .collect();
                (a, albums.into_iter().collect())
            })
            .collect()
    }

    /// Counts of skipped entries per reason.
    pub fn skipped_counts(&self) -> Vec<(SkipReason, usize)> {
        let mut counts = std::collections::BTreeMap::new();
        for (_, r) in &self.skipped {
            *counts.entry(*r).or_insert(0usize) += 1;
        }
        counts.into_iter().collect()
    }

    /// artist20's official album lists, `a20-{trn,val,tst}-albums.list` (one `artist/album`
    /// per line), looked for in the corpus folder, its parent and `../lists`.
    pub fn official_lists(&self) -> Option<OfficialLists> {
        let base = if self.source.is_dir() {
            self.source.clone()
        } else {
            self.source.parent()?.to_path_buf()
        };
        let candidates = [
            base.clone(),
            base.join(".."),
            base.join("..").join("lists"),
            base.join("lists"),
        ];
        for dir in candidates {
            let read = |set: &str| -> Option<Vec<(String, String)>> {
                let text =
                    std::fs::read_to_string(dir.join(format!("a20-{set}-albums.list"))).ok()?;
                Some(
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .filter_map(|l| {
                            l.trim()
                                .split_once('/')
                                .map(|(a, b)| (a.to_string(), b.to_string()))
                        })
                        .collect(),
                )
            };
            if let (Some(train), Some(val), Some(test)) = (read("trn"), read("val"), read("tst")) {
                return Some(OfficialLists { train, val, test });
            }
        }
        None
    }
}

/// artist20's official album-level partition, `(artist, album)` pairs per set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfficialLists {
    /// Training albums.
    pub train: Vec<(String, String)>,
    /// Validation albums.
    pub val: Vec<(String, String)>,
    /// Test albums.
    pub test: Vec<(String, String)>,
}
