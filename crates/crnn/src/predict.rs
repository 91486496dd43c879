//! Batched inference: class probabilities and the 32-d bottleneck.

use ndarray::Array2;
use tch::{Device, Kind, Tensor};

use crate::data::{SliceSource, batch_tensor, check_source, for_each_batch};
use crate::{Error, Network, Result};

fn run(
    model: &dyn Network,
    source: &dyn SliceSource,
    batch_size: usize,
    device: Device,
    width: usize,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Array2<f32>> {
    let (n_mels, frames) = model.input_shape();
    check_source("inference data", source, n_mels, frames, None)?;
    let order: Vec<usize> = (0..source.len()).collect();
    let mut out = Vec::with_capacity(source.len() * width);
    tch::no_grad(|| {
        for_each_batch(source, &order, batch_size.max(1), |_, batch| {
            let n = batch.labels.len();
            let xs = batch_tensor(&batch.data, n, n_mels, frames, device)?;
            let y = f(&xs)?
                .f_to_kind(Kind::Float)?
                .f_to_device(Device::Cpu)?
                .f_contiguous()?;
            out.extend(Vec::<f32>::try_from(y.f_view([-1])?)?);
            Ok(())
        })
    })?;
    let got = out.len();
    Array2::from_shape_vec((source.len(), width), out).map_err(|_| Error::Shape {
        what: "inference output",
        expected: vec![source.len() as i64, width as i64],
        got: vec![got as i64],
    })
}

/// Softmax probabilities `[n_slices, n_classes]` in eval mode, without gradients, in batches
/// of `batch_size` (256 is a good default on CPU).
pub fn predict_proba(
    model: &dyn Network,
    source: &dyn SliceSource,
    batch_size: usize,
    device: Device,
) -> Result<Array2<f32>> {
    run(model, source, batch_size, device, model.n_classes(), |xs| {
        model.f_probabilities_t(xs, false)
    })
}

/// The bottleneck `[n_slices, embedding_size]` in eval mode (what the paper's t-SNE plots:
/// 32-d for the 2-D models, 64-d for CRNN1D and RNN).
pub fn embed(
    model: &dyn Network,
    source: &dyn SliceSource,
    batch_size: usize,
    device: Device,
) -> Result<Array2<f32>> {
    run(
        model,
        source,
        batch_size,
        device,
        model.embedding_size(),
        |xs| model.f_embed_t(xs, false),
    )
}
