//! Training and inference data: an indexable source of `[n_mels, frames]` slices plus labels,
//! and the background thread that assembles batches from it.

use std::sync::mpsc;

use ndarray::ArrayView2;
use tch::{Device, Tensor};

use crate::{Error, Result};

/// An indexable collection of equally shaped `[n_mels, frames]` f32 slices with class labels.
/// Implement it over your own storage (views into whole tracks, memory maps, ...): the trainer
/// copies one batch at a time from it, never the whole set.
pub trait SliceSource: Sync {
    /// Number of slices.
    fn len(&self) -> usize;
    /// Whether there are no slices.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `(n_mels, frames)` of every slice.
    fn slice_shape(&self) -> (usize, usize);
    /// Writes slice `index`, row-major `[n_mels, frames]`, into `out` (`n_mels * frames` long).
    fn write_slice(&self, index: usize, out: &mut [f32]);
    /// Class of slice `index` (ignored by inference).
    fn label(&self, index: usize) -> usize;
}

/// A [`SliceSource`] over borrowed 2-D views (zero-copy) and their labels.
#[derive(Debug, Clone)]
pub struct ViewSource<'a> {
    slices: Vec<ArrayView2<'a, f32>>,
    labels: Vec<usize>,
    shape: (usize, usize),
}

impl<'a> ViewSource<'a> {
    /// Checks that all views have one shape and that there is a label per view.
    pub fn new(slices: Vec<ArrayView2<'a, f32>>, labels: Vec<usize>) -> Result<Self> {
        if slices.len() != labels.len() {
            return Err(Error::Shape {
                what: "labels",
                expected: vec![slices.len() as i64],
                got: vec![labels.len() as i64],
            });
        }
        let shape = slices.first().map_or((0, 0), |s| s.dim());
        if let Some(bad) = slices.iter().find(|s| s.dim() != shape) {
            return Err(Error::Shape {
                what: "slice",
                expected: vec![shape.0 as i64, shape.1 as i64],
                got: vec![bad.nrows() as i64, bad.ncols() as i64],
            });
        }
        Ok(Self {
            slices,
            labels,
            shape,
        })
    }
}

impl SliceSource for ViewSource<'_> {
    fn len(&self) -> usize {
        self.slices.len()
    }
    fn slice_shape(&self) -> (usize, usize) {
        self.shape
    }
    fn write_slice(&self, index: usize, out: &mut [f32]) {
        let view = &self.slices[index];
        match view.as_slice() {
            Some(s) => out.copy_from_slice(s),
            None => {
                for (o, v) in out.iter_mut().zip(view.iter()) {
                    *o = *v;
                }
            }
        }
    }
    fn label(&self, index: usize) -> usize {
        self.labels[index]
    }
}

/// Checks a source against a model's input shape and class count.
pub(crate) fn check_source(
    what: &'static str,
    source: &dyn SliceSource,
    n_mels: usize,
    frames: usize,
    n_classes: Option<usize>,
) -> Result<()> {
    if source.is_empty() {
        return Err(Error::EmptyData(what));
    }
    if source.slice_shape() != (n_mels, frames) {
        let (a, b) = source.slice_shape();
        return Err(Error::Shape {
            what,
            expected: vec![n_mels as i64, frames as i64],
            got: vec![a as i64, b as i64],
        });
    }
    if let Some(n) = n_classes {
        for index in 0..source.len() {
            let label = source.label(index);
            if label >= n {
                return Err(Error::Label {
                    what,
                    label,
                    index,
                    n_classes: n,
                });
            }
        }
    }
    Ok(())
}

/// One assembled batch.
pub(crate) struct Batch {
    pub data: Vec<f32>,
    pub labels: Vec<i64>,
}

/// Calls `consume` on consecutive batches of `order`, assembled by a background thread (two
/// batches ahead) while `consume` runs. Stops at the first error `consume` returns.
pub(crate) fn for_each_batch(
    source: &dyn SliceSource,
    order: &[usize],
    batch_size: usize,
    mut consume: impl FnMut(usize, &Batch) -> Result<()>,
) -> Result<()> {
    let (n_mels, frames) = source.slice_shape();
    let per = n_mels * frames;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Batch>(2);
        let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<f32>>();
        scope.spawn(move || {
            for chunk in order.chunks(batch_size.max(1)) {
                let mut data = recycle_rx.try_recv().unwrap_or_default();
                data.resize(chunk.len() * per, 0.0);
                for (&i, out) in chunk.iter().zip(data.chunks_exact_mut(per)) {
                    source.write_slice(i, out);
                }
                let labels = chunk.iter().map(|&i| source.label(i) as i64).collect();
                if tx.send(Batch { data, labels }).is_err() {
                    break;
                }
            }
        });
        for (i, batch) in rx.iter().enumerate() {
            consume(i, &batch)?;
            let _ = recycle_tx.send(batch.data);
        }
        Ok(())
    })
}

/// A batch of `n` row-major `[n_mels, frames]` slices as a `[n, 1, n_mels, frames]` tensor on `device`.
pub(crate) fn batch_tensor(
    data: &[f32],
    n: usize,
    n_mels: usize,
    frames: usize,
    device: Device,
) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(data)?
        .f_view([n as i64, 1, n_mels as i64, frames as i64])?
        .f_to_device(device)?)
}
