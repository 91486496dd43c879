//! Keras 2.1.1 Adam.

use tch::{Tensor, nn};

use crate::{Error, Result, TrainConfig};

/// Adam as Keras 2.1.1 computes it: `lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)`,
/// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`, `p -= lr_t m / (sqrt(v) + eps)`: epsilon
/// is added to the bias-*uncorrected* `sqrt(v)` (PyTorch adds it to the corrected one).
#[derive(Debug)]
pub struct KerasAdam {
    names: Vec<String>,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
    lr: f64,
    beta1: f64,
    beta2: f64,
    epsilon: f64,
}

/// The gradient of variable `p`: the one listed for it in `gradients` (sharing storage),
/// else autograd's (undefined when it has none).
fn gradient_of(p: &Tensor, gradients: &[(Tensor, Tensor)]) -> Tensor {
    gradients
        .iter()
        .find(|(var, _)| var.data_ptr() == p.data_ptr())
        .map_or_else(|| p.grad(), |(_, g)| g.shallow_clone())
}

impl KerasAdam {
    /// Adam over the trainable variables of `vs` (in name order), zero moments, step 0.
    pub fn new(vs: &nn::VarStore, config: &TrainConfig) -> Self {
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let m = named.iter().map(|(_, t)| t.zeros_like()).collect();
        let v = named.iter().map(|(_, t)| t.zeros_like()).collect();
        let (names, params) = named.into_iter().unzip();
        Self {
            names,
            params,
            m,
            v,
            step: 0,
            lr: config.learning_rate,
            beta1: config.beta1,
            beta2: config.beta2,
            epsilon: config.epsilon,
        }
    }

    /// Updates done so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Sets the update count (a rank that receives its moments from another).
    pub(crate) fn set_steps(&mut self, step: u64) {
        self.step = step;
    }

    /// Clears the gradients of every variable.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// Back-propagates `loss` and applies one update. Panics where
    /// [`f_backward_step`](Self::f_backward_step) returns an error.
    pub fn backward_step(&mut self, loss: &Tensor) {
        if let Err(e) = self.f_backward_step(loss) {
            panic!("KerasAdam::backward_step: {e}");
        }
    }

    /// [`backward_step`](Self::backward_step) with errors returned (a loss that is not a
    /// scalar with a gradient, say).
    pub fn f_backward_step(&mut self, loss: &Tensor) -> Result<()> {
        self.zero_grad();
        loss.f_backward()?;
        self.f_apply(&[])
    }

    /// One update from the gradients autograd left in the variables, or, for variables
    /// listed in `gradients` as `(variable, gradient)`, from the gradient given there (the
    /// fused CPU step computes the conv stack's gradients itself). A variable with neither is
    /// left alone, as Keras does for variables outside the loss. Panics where
    /// [`f_apply`](Self::f_apply) returns an error.
    pub fn apply(&mut self, gradients: &[(Tensor, Tensor)]) {
        if let Err(e) = self.f_apply(gradients) {
            panic!("KerasAdam::apply: {e}");
        }
    }

    /// [`apply`](Self::apply) with errors returned (a given gradient of another shape or
    /// dtype than its variable, say).
    pub fn f_apply(&mut self, gradients: &[(Tensor, Tensor)]) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let lr_t = self.lr * (1.0 - self.beta2.powi(t)).sqrt() / (1.0 - self.beta1.powi(t));
        let (b1, b2, eps) = (self.beta1, self.beta2, self.epsilon);
        tch::no_grad(|| -> Result<()> {
            for ((p, m), v) in self.params.iter().zip(&mut self.m).zip(&mut self.v) {
                let g = gradient_of(p, gradients);
                if !g.defined() {
                    continue;
                }
                let _ = m.f_mul_scalar_(b1)?;
                let _ = m.f_add_(&g.f_mul_scalar(1.0 - b1)?)?;
                let _ = v.f_mul_scalar_(b2)?;
                let _ = v.f_add_(&g.f_mul(&g)?.f_mul_scalar(1.0 - b2)?)?;
                let update = m
                    .f_mul_scalar(lr_t)?
                    .f_div(&v.f_sqrt()?.f_add_scalar(eps)?)?;
                let _ = p.shallow_clone().f_sub_(&update)?;
            }
            Ok(())
        })
    }

    /// The gradient [`apply`](Self::apply) would use for each variable that has one, in
    /// variable-name order: the one listed in `gradients`, else autograd's. The tensors
    /// share storage with those gradients (change them in place to change the update).
    pub fn gradients(&self, gradients: &[(Tensor, Tensor)]) -> Vec<Tensor> {
        self.params
            .iter()
            .map(|p| gradient_of(p, gradients))
            .filter(Tensor::defined)
            .collect()
    }

    /// The moments `m` then `v` of every variable (sharing storage), for a broadcast.
    pub(crate) fn moments(&self) -> Vec<Tensor> {
        self.m
            .iter()
            .chain(&self.v)
            .map(Tensor::shallow_clone)
            .collect()
    }

    /// The moments as named tensors (`m.<variable>`, `v.<variable>`), for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.names.len());
        for ((name, m), v) in self.names.iter().zip(&self.m).zip(&self.v) {
            out.push((format!("m.{name}"), m.contiguous()));
            out.push((format!("v.{name}"), v.contiguous()));
        }
        out
    }

    /// Restores moments saved by [`state`](Self::state) and the step count.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], step: u64) -> Result<()> {
        let find = |key: String| {
            tensors
                .iter()
                .find(|(n, _)| *n == key)
                .map(|(_, t)| t)
                .ok_or_else(|| Error::ModelFile {
                    path: "optimizer state".into(),
                    reason: format!("missing tensor {key}"),
                })
        };
        tch::no_grad(|| -> Result<()> {
            for ((name, m), v) in self.names.iter().zip(&mut self.m).zip(&mut self.v) {
                m.f_copy_(find(format!("m.{name}"))?)?;
                v.f_copy_(find(format!("v.{name}"))?)?;
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}
