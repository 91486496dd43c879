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

    /// Copies a slice's `view` into `out`, or says why there is none (`place` and `at` say
    /// which window was asked for).
    fn copy(
        &self,
        index: usize,
        view: Option<ndarray::ArrayView2<'_, f32>>,
        place: &str,
        at: impl Fn(&artist20::SliceRef) -> usize,
        out: &mut [f32],
    ) -> crnn::Result<()> {
        let view = view.ok_or_else(|| crnn::Error::Slice {
            what: "split's slices",
            index,
            reason: match self.index.slices.get(index) {
                Some(r) => format!(
                    "track {} has no {} frames {place} {} in the feature store",
                    r.track,
                    self.index.slice_frames,
                    at(r)
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
        let view = self.index.view(self.features, index);
        self.copy(index, view, "at frame", |r| r.offset, out)
    }
    /// Windows of the slice length in the slice's song (its whole feature track).
    fn crop_windows(&self, index: usize) -> Option<usize> {
        let r = self.index.slices.get(index)?;
        let mel = self.features.get(r.track)?.as_ref()?;
        (mel.ncols() + 1).checked_sub(self.index.slice_frames)
    }
    fn write_crop(&self, index: usize, start: usize, out: &mut [f32]) -> crnn::Result<()> {
        let frames = self.index.slice_frames;
        let view = self.index.slices.get(index).and_then(|r| {
            let mel = self.features.get(r.track)?.as_ref()?;
            (start + frames <= mel.ncols())
                .then(|| mel.slice(ndarray::s![.., start..start + frames]))
        });
        self.copy(index, view, "cropped at frame", |_| start, out)
    }
    fn label(&self, index: usize) -> usize {
        self.labels[index]
    }
}
