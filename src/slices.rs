//! [`SplitSlices`]: the slices of a split's tracks as a [`crnn::SliceSource`].

use anyhow::{Context, Result};
use artist20::{SliceIndex, SliceMode, Split, TrackFeatures};

/// Slices of some tracks, labelled by a split, as a [`crnn::SliceSource`] (copies one slice at
/// a time from the stored tracks; nothing else is copied).
pub struct SplitSlices<'a> {
    features: &'a TrackFeatures,
    /// The slice index.
    pub index: SliceIndex,
    labels: Vec<usize>,
    n_mels: usize,
}

impl<'a> SplitSlices<'a> {
    /// Slices of `tracks` with the split's labels (tracks of excluded artists must not be in it).
    pub fn new(
        features: &'a TrackFeatures,
        split: &Split,
        tracks: &[usize],
        slice_frames: usize,
        mode: SliceMode,
        n_mels: usize,
    ) -> Result<Self> {
        let index = SliceIndex::new(features, tracks, slice_frames, mode)?;
        let labels = index
            .slices
            .iter()
            .map(|r| {
                split
                    .label(r.track)
                    .with_context(|| format!("track {} has no label in this split", r.track))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            features,
            index,
            labels,
            n_mels,
        })
    }

    /// Label of every slice.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }
}

impl crnn::SliceSource for SplitSlices<'_> {
    fn len(&self) -> usize {
        self.index.len()
    }
    fn slice_shape(&self) -> (usize, usize) {
        (self.n_mels, self.index.slice_frames)
    }
    fn write_slice(&self, index: usize, out: &mut [f32]) -> crnn::Result<()> {
        let view = self
            .index
            .view(self.features, index)
            .ok_or_else(|| crnn::Error::Slice {
                what: "split's slices",
                index,
                reason: match self.index.slices.get(index) {
                    Some(r) => format!(
                        "track {} has no {} frames at frame {} in the feature store",
                        r.track, self.index.slice_frames, r.offset
                    ),
                    None => format!("the index has {} slices", self.index.len()),
                },
            })?;
        if out.len() != view.len() {
            return Err(crnn::Error::Shape {
                what: "slice buffer",
                expected: vec![view.len() as i64],
                got: vec![out.len() as i64],
            });
        }
        for (o, v) in out
            .chunks_exact_mut(self.index.slice_frames)
            .zip(view.rows())
        {
            for (a, b) in o.iter_mut().zip(v.iter()) {
                *a = *b;
            }
        }
        Ok(())
    }
    fn label(&self, index: usize) -> usize {
        self.labels[index]
    }
}
