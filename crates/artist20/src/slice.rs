//! Fixed-length slices of stored tracks, as zero-copy views.

use ndarray::{ArrayView2, s};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, TrackFeatures};

/// How a track of `T` frames is cut into slices of `L` frames (no overlap, from the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SliceMode {
    /// The paper's `slice_songs`: `floor(T / L) - 1` slices. The last *full* window is dropped
    /// along with the remainder, and a track under `2 L` frames gives no slice at all (it
    /// vanishes from training and from the test set).
    #[default]
    Paper,
    /// Every full window: `floor(T / L)` slices (a track under `L` frames still gives none).
    AllFull,
}

impl SliceMode {
    /// Slices a track of `frames` gives.
    pub fn count(self, frames: usize, slice_frames: usize) -> usize {
        let full = frames / slice_frames.max(1);
        match self {
            SliceMode::Paper => full.saturating_sub(1),
            SliceMode::AllFull => full,
        }
    }
}

/// Where a slice starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceRef {
    /// Corpus track index.
    pub track: usize,
    /// First frame.
    pub offset: usize,
}

/// The slices of a set of tracks.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceIndex {
    /// Frames per slice.
    pub slice_frames: usize,
    /// The rule used.
    pub mode: SliceMode,
    /// Slices in track order, then time order.
    pub slices: Vec<SliceRef>,
    /// Tracks that gave no slice (too short for the mode), and tracks without features.
    pub dropped: Vec<usize>,
}

impl SliceIndex {
    /// Indexes the slices of `tracks` (corpus indices) in `features`.
    pub fn new(
        features: &TrackFeatures,
        tracks: &[usize],
        slice_frames: usize,
        mode: SliceMode,
    ) -> Result<Self> {
        if slice_frames == 0 {
            return Err(Error::Invalid {
                field: "slice_frames",
                rule: "must be >= 1".into(),
            });
        }
        let mut slices = Vec::new();
        let mut dropped = Vec::new();
        for &t in tracks {
            let frames = features
                .get(t)
                .and_then(|f| f.as_ref())
                .map_or(0, |m| m.ncols());
            let n = mode.count(frames, slice_frames);
            if n == 0 {
                dropped.push(t);
            }
            slices.extend((0..n).map(|k| SliceRef {
                track: t,
                offset: k * slice_frames,
            }));
        }
        Ok(Self {
            slice_frames,
            mode,
            slices,
            dropped,
        })
    }

    /// Number of slices.
    pub fn len(&self) -> usize {
        self.slices.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }

    /// Slice `i` as a `[n_mels, slice_frames]` view into its track (no copy); `None` when
    /// `features` is not the set the index was built from.
    pub fn view<'a>(&self, features: &'a TrackFeatures, i: usize) -> Option<ArrayView2<'a, f32>> {
        let r = *self.slices.get(i)?;
        let mel = features.get(r.track)?.as_ref()?;
        (r.offset + self.slice_frames <= mel.ncols())
            .then(|| mel.slice(s![.., r.offset..r.offset + self.slice_frames]))
    }
}
