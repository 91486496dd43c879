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
    /// Writes slice `index`, row-major `[n_mels, frames]`, into `out` (`n_mels * frames` long),
    /// or says why it cannot ([`Error::Slice`], or any other error of this crate): the batch
    /// is then not used, and the training or inference call fails with it.
    fn write_slice(&self, index: usize, out: &mut [f32]) -> Result<()>;
    /// Class of slice `index` (ignored by inference).
    fn label(&self, index: usize) -> usize;
    /// For random crops ([`Augment::crop`](crate::Augment::crop)): how many windows of the
    /// slice length fit in the song that slice `index` was cut from (`song frames - slice
    /// frames + 1`). `None` (the default): the source knows no songs, and crops are refused.
    fn crop_windows(&self, _index: usize) -> Option<usize> {
        None
    }
    /// Writes the window that starts at frame `start` (below
    /// [`crop_windows`](Self::crop_windows)) of the song of slice `index`, row-major
    /// `[n_mels, frames]`, into `out`.
    fn write_crop(&self, index: usize, start: usize, out: &mut [f32]) -> Result<()> {
        let _ = (start, out);
        Err(Error::Slice {
            what: "slice source",
            index,
            reason: "this source cannot crop (it knows no songs)".into(),
        })
    }
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
    fn write_slice(&self, index: usize, out: &mut [f32]) -> Result<()> {
        let view = self.slices.get(index).ok_or_else(|| Error::Slice {
            what: "views",
            index,
            reason: format!("there are {} slices", self.slices.len()),
        })?;
        if out.len() != view.len() {
            return Err(Error::Shape {
                what: "slice buffer",
                expected: vec![view.len() as i64],
                got: vec![out.len() as i64],
            });
        }
        match view.as_slice() {
            Some(s) => out.copy_from_slice(s),
            None => {
                for (o, v) in out.iter_mut().zip(view.iter()) {
                    *o = *v;
                }
            }
        }
        Ok(())
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
/// batches ahead) while `consume` runs. Stops at the first error `consume` returns, or at the
/// first slice the source cannot write (that batch is never consumed).
pub(crate) fn for_each_batch(
    source: &dyn SliceSource,
    order: &[usize],
    batch_size: usize,
    consume: impl FnMut(usize, &mut Batch) -> Result<()>,
) -> Result<()> {
    for_each_batch_cropped(source, order, batch_size, None, consume)
}

/// [`for_each_batch`], each slice `i` read at its crop start `crops[i]` when given.
pub(crate) fn for_each_batch_cropped(
    source: &dyn SliceSource,
    order: &[usize],
    batch_size: usize,
    crops: Option<&[usize]>,
    mut consume: impl FnMut(usize, &mut Batch) -> Result<()>,
) -> Result<()> {
    let (n_mels, frames) = source.slice_shape();
    let per = n_mels * frames;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Result<Batch>>(2);
        let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<f32>>();
        scope.spawn(move || {
            for chunk in order.chunks(batch_size.max(1)) {
                let mut data = recycle_rx.try_recv().unwrap_or_default();
                data.resize(chunk.len() * per, 0.0);
                let written =
                    chunk
                        .iter()
                        .zip(data.chunks_exact_mut(per))
                        .try_for_each(|(&i, out)| match crops {
                            Some(starts) => source.write_crop(i, starts[i], out),
                            None => source.write_slice(i, out),
                        });
                let batch = written.map(|()| Batch {
                    data,
                    labels: chunk.iter().map(|&i| source.label(i) as i64).collect(),
                });
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        for (i, batch) in rx.iter().enumerate() {
            let mut batch = batch?;
            consume(i, &mut batch)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A source whose slice 5 cannot be read.
    struct Holey;

    impl SliceSource for Holey {
        fn len(&self) -> usize {
            8
        }
        fn slice_shape(&self) -> (usize, usize) {
            (2, 3)
        }
        fn write_slice(&self, index: usize, out: &mut [f32]) -> Result<()> {
            if index == 5 {
                return Err(Error::Slice {
                    what: "test data",
                    index,
                    reason: "no view".into(),
                });
            }
            out.fill(index as f32);
            Ok(())
        }
        fn label(&self, _index: usize) -> usize {
            0
        }
    }

    #[test]
    fn a_slice_that_cannot_be_written_fails_the_pass_and_its_batch_is_never_used() {
        let order: Vec<usize> = (0..8).collect();
        let mut seen = Vec::new();
        let err = for_each_batch(&Holey, &order, 2, |i, batch| {
            seen.push((i, batch.data[0]));
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, Error::Slice { index: 5, .. }), "{err}");
        // Batches 0 and 1 (slices 0-3) were used; batch 2 (slices 4, 5) never was, and no
        // recycled buffer of an earlier batch stood in for it.
        assert_eq!(seen, vec![(0, 0.0), (1, 2.0)]);
    }
}
