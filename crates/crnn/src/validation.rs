//! Validation and evaluation sums: Keras's loss, correct argmaxes and per-class counts, which
//! add up across ranks.

use tch::{Device, Tensor};

use crate::data::{SliceSource, batch_tensor, check_source, for_each_batch};
use crate::model::f_keras_categorical_crossentropy;
use crate::{Network, Result};

/// Keras CCE loss and accuracy of `model` on `source` in eval mode.
pub fn evaluate(
    model: &dyn Network,
    source: &dyn SliceSource,
    batch_size: usize,
    device: Device,
) -> Result<(f64, f64)> {
    let order: Vec<usize> = (0..source.len()).collect();
    let sums = evaluate_sums(model, source, &order, batch_size, device)?;
    let n = source.len() as f64;
    Ok((sums.loss / n, sums.correct as f64 / n))
}

/// Sums over validation slices: loss, correct argmaxes, and per class the true positives,
/// predictions and true slices (`classes` = `[tp; C] ++ [predicted; C] ++ [true; C]`), which
/// add up across ranks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValSums {
    pub loss: f64,
    pub correct: i64,
    pub classes: Vec<u64>,
}

impl ValSums {
    /// scikit-learn's weighted-average F1 of the summed counts (F1 = 2 tp / (predicted +
    /// true), 0 where that is 0/0, weighted by the true count).
    pub fn weighted_f1(&self) -> f64 {
        let n = self.classes.len() / 3;
        let (tp, pred, truth) = (
            &self.classes[..n],
            &self.classes[n..2 * n],
            &self.classes[2 * n..],
        );
        let total: u64 = truth.iter().sum();
        if total == 0 {
            return f64::NAN;
        }
        let sum: f64 = (0..n)
            .map(|c| {
                let den = pred[c] + truth[c];
                let f1 = if den == 0 {
                    0.0
                } else {
                    2.0 * tp[c] as f64 / den as f64
                };
                f1 * truth[c] as f64
            })
            .sum();
        sum / total as f64
    }
}

/// Summed Keras CCE loss, count of correct argmaxes and per-class counts over the slices
/// `order` of `source`.
pub(crate) fn evaluate_sums(
    model: &dyn Network,
    source: &dyn SliceSource,
    order: &[usize],
    batch_size: usize,
    device: Device,
) -> Result<ValSums> {
    let ((n_mels, frames), n_classes) = (model.input_shape(), model.n_classes());
    check_source("evaluation data", source, n_mels, frames, Some(n_classes))?;
    let (mut loss_sum, mut correct) = (0f64, 0i64);
    let mut classes = vec![0u64; 3 * n_classes];
    tch::no_grad(|| {
        for_each_batch(source, order, batch_size, |_, batch| {
            let n = batch.labels.len();
            let xs = batch_tensor(&batch.data, n, n_mels, frames, device)?;
            let ys = Tensor::f_from_slice(&batch.labels)?.f_to_device(device)?;
            let probs = model.f_probabilities_t(&xs, false)?;
            loss_sum += f_keras_categorical_crossentropy(&probs, &ys, n_classes as i64)?
                .f_double_value(&[])?
                * n as f64;
            let predicted =
                Vec::<i64>::try_from(probs.f_argmax(-1, false)?.f_to_device(Device::Cpu)?)?;
            for (&p, &t) in predicted.iter().zip(&batch.labels) {
                let (p, t) = (p as usize, t as usize);
                if p < n_classes && t < n_classes {
                    classes[t] += u64::from(p == t);
                    classes[n_classes + p] += 1;
                    classes[2 * n_classes + t] += 1;
                }
                correct += i64::from(p == t);
            }
            Ok(())
        })
    })?;
    Ok(ValSums {
        loss: loss_sum,
        correct,
        classes,
    })
}
