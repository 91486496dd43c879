//! [`train_step`]: one optimisation step on one batch, fused on the CPU for CRNN2D.

use tch::{Kind, Tensor};

use crate::coord::Ranks;
use crate::model::f_keras_categorical_crossentropy_soft;
use crate::{KerasAdam, Network, ProcessGroup, Result, fused};

/// What [`train_step`] reports about its batch.
#[derive(Debug)]
pub struct StepOutput {
    /// Mean Keras categorical cross-entropy of the batch (train mode, before the update).
    pub loss: f64,
    /// Softmax probabilities `[batch, n_classes]` (train mode, before the update), no grad.
    pub probabilities: Tensor,
}

/// One training step: forward in train mode (batch statistics, dropout), Keras categorical
/// cross-entropy against `labels` (class indices, `[batch]` Int64), backward, one
/// [`KerasAdam`] update; BatchNorm moving averages are updated as Keras does.
///
/// For a CRNN2D on [`ConvBackend::FusedCpu`](crate::ConvBackend) (the CPU default) the conv
/// stack runs the fused passes forward and backward, and its dropout masks are a function of
/// `dropout_key` (pass a different key per step; the same key repeats the same masks). Every
/// other network, and CRNN2D on `LibtorchOps`, goes through autograd, and dropout draws from
/// libtorch's generator (`tch::manual_seed`). Both compute the same gradients up to float
/// rounding (tested with dropout off).
pub fn train_step(
    model: &dyn Network,
    adam: &mut KerasAdam,
    xs: &Tensor,
    labels: &Tensor,
    dropout_key: u64,
) -> Result<StepOutput> {
    let targets = one_hot(model, labels)?;
    step(model, adam, xs, &targets, dropout_key, Ranks::Solo)
}

/// [`train_step`] of one rank in data-parallel training: after the backward pass the
/// gradients are averaged across `group` (one all-reduce of all of them), so every rank
/// takes the same Adam step. Every rank of the group must call it, with batches of one size.
pub fn train_step_distributed(
    model: &dyn Network,
    adam: &mut KerasAdam,
    xs: &Tensor,
    labels: &Tensor,
    dropout_key: u64,
    group: &ProcessGroup,
) -> Result<StepOutput> {
    let targets = one_hot(model, labels)?;
    step(model, adam, xs, &targets, dropout_key, Ranks::Group(group))
}

/// Class indices as one-hot float targets `[batch, n_classes]`.
fn one_hot(model: &dyn Network, labels: &Tensor) -> Result<Tensor> {
    Ok(labels
        .f_one_hot(model.n_classes() as i64)?
        .f_to_kind(Kind::Float)?)
}

/// Averages the gradients `adam` is about to apply (given ones and autograd's) across the
/// ranks (nothing to do alone).
fn sync_gradients(adam: &KerasAdam, given: &[(Tensor, Tensor)], ranks: Ranks<'_>) -> Result<()> {
    match ranks {
        Ranks::Solo => Ok(()),
        Ranks::Group(_) => ranks.average(&mut adam.gradients(given)),
    }
}

/// One step of this rank against `targets` (`[batch, n_classes]`, one-hot or soft):
/// [`train_step`] alone, [`train_step_distributed`] in a group.
pub(crate) fn step(
    model: &dyn Network,
    adam: &mut KerasAdam,
    xs: &Tensor,
    targets: &Tensor,
    dropout_key: u64,
    ranks: Ranks<'_>,
) -> Result<StepOutput> {
    model.check_input(xs)?;
    let fused = match model.as_crnn2d() {
        Some(m) => m.fused_plan(xs)?.map(|plan| (m, plan)),
        None => None,
    };
    let Some((m, plan)) = fused else {
        let probs = model.f_probabilities_t(xs, true)?;
        let loss = f_keras_categorical_crossentropy_soft(&probs, targets)?;
        adam.zero_grad();
        loss.f_backward()?;
        sync_gradients(adam, &[], ranks)?;
        adam.f_apply(&[])?;
        return Ok(StepOutput {
            loss: loss.f_double_value(&[])?,
            probabilities: probs.detach(),
        });
    };
    adam.zero_grad();
    let stack = m.conv_stack();
    let (y, tape) = fused::train_forward(plan, &stack, xs, dropout_key)?;
    let leaf = y.set_requires_grad(true);
    let logits = m.dense(&m.head_from_nhwc(&leaf, true)?)?;
    let probs = logits.f_softmax(-1, Kind::Float)?;
    let loss = f_keras_categorical_crossentropy_soft(&probs, targets)?;
    loss.f_backward()?;
    let grads = fused::train_backward(plan, &stack, tape, &leaf.grad())?;
    sync_gradients(adam, &grads, ranks)?;
    adam.f_apply(&grads)?;
    Ok(StepOutput {
        loss: loss.f_double_value(&[])?,
        probabilities: probs.detach(),
    })
}
