//! [`train_step`]: one optimisation step on one batch, fused on the CPU.

use tch::{Kind, Tensor};

use crate::coord::Ranks;
use crate::model::f_keras_categorical_crossentropy;
use crate::{Crnn2d, KerasAdam, ProcessGroup, Result, fused};

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
/// On [`ConvBackend::FusedCpu`](crate::ConvBackend) (the CPU default) the conv stack runs the
/// fused passes forward and backward, and its dropout masks are a function of `dropout_key`
/// (pass a different key per step; the same key repeats the same masks). On
/// `LibtorchOps` every op goes through autograd and dropout draws from libtorch's generator
/// (`tch::manual_seed`). Both compute the same gradients up to float rounding (tested with
/// dropout off).
pub fn train_step(
    model: &Crnn2d,
    adam: &mut KerasAdam,
    xs: &Tensor,
    labels: &Tensor,
    dropout_key: u64,
) -> Result<StepOutput> {
    step(model, adam, xs, labels, dropout_key, Ranks::Solo)
}

/// [`train_step`] of one rank in data-parallel training: after the backward pass the
/// gradients are averaged across `group` (one all-reduce of all of them), so every rank
/// takes the same Adam step. Every rank of the group must call it, with batches of one size.
pub fn train_step_distributed(
    model: &Crnn2d,
    adam: &mut KerasAdam,
    xs: &Tensor,
    labels: &Tensor,
    dropout_key: u64,
    group: &ProcessGroup,
) -> Result<StepOutput> {
    step(model, adam, xs, labels, dropout_key, Ranks::Group(group))
}

/// Averages the gradients `adam` is about to apply (given ones and autograd's) across the
/// ranks (nothing to do alone).
fn sync_gradients(adam: &KerasAdam, given: &[(Tensor, Tensor)], ranks: Ranks<'_>) -> Result<()> {
    match ranks {
        Ranks::Solo => Ok(()),
        Ranks::Group(_) => ranks.average(&mut adam.gradients(given)),
    }
}

/// One step of this rank: [`train_step`] alone, [`train_step_distributed`] in a group.
pub(crate) fn step(
    model: &Crnn2d,
    adam: &mut KerasAdam,
    xs: &Tensor,
    labels: &Tensor,
    dropout_key: u64,
    ranks: Ranks<'_>,
) -> Result<StepOutput> {
    model.check_input(xs)?;
    let n_classes = model.config().n_classes as i64;
    let Some(plan) = model.fused_plan(xs)? else {
        let probs = model.f_probabilities_t(xs, true)?;
        let loss = f_keras_categorical_crossentropy(&probs, labels, n_classes)?;
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
    let stack = model.conv_stack();
    let (y, tape) = fused::train_forward(plan, &stack, xs, dropout_key)?;
    let leaf = y.set_requires_grad(true);
    let logits = model.dense(&model.head_from_nhwc(&leaf, true)?)?;
    let probs = logits.f_softmax(-1, Kind::Float)?;
    let loss = f_keras_categorical_crossentropy(&probs, labels, n_classes)?;
    loss.f_backward()?;
    let grads = fused::train_backward(plan, &stack, tape, &leaf.grad())?;
    sync_gradients(adam, &grads, ranks)?;
    adam.f_apply(&grads)?;
    Ok(StepOutput {
        loss: loss.f_double_value(&[])?,
        probabilities: probs.detach(),
    })
}
