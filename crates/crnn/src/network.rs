//! [`Network`] (a built network the trainer, checkpoints and inference run) and
//! [`NetworkSpec`] (what builds one and describes it in `config.json`): the seam through
//! which the five built-in architectures, and any other project's, go.

use tch::{Tensor, nn};

use crate::{Architecture, ConvAlgorithm, ConvBackend, Crnn2d, CrnnConfig, Error, Result};

/// A network that [`Trainer`](crate::Trainer), [`TrainedModel`](crate::TrainedModel),
/// [`predict_proba`](crate::predict_proba) and [`embed`](crate::embed) can run: input
/// `[batch, 1, n_mels, frames]` (the NCHW view of Keras's channels-last `(n_mels, frames,
/// 1)`), a bottleneck ([`f_embed_t`](Self::f_embed_t), what the t-SNE plots), and the
/// logits of a last layer on it ([`f_logits`](Self::f_logits)). Its variables live in the
/// `nn::VarStore` it was built under, which the trainer saves, loads and optimises.
///
/// Training uses the Keras softmax cross-entropy on [`f_forward_t`](Self::f_forward_t)'s
/// logits through autograd. BatchNorm moving statistics, if any, are updated by the network
/// itself in train mode (as [`KerasBatchNorm`](crate::KerasBatchNorm) does).
pub trait Network: std::fmt::Debug {
    /// `(n_mels, frames)` of one input slice.
    fn input_shape(&self) -> (usize, usize);

    /// Output classes.
    fn n_classes(&self) -> usize;

    /// Width of the bottleneck [`f_embed_t`](Self::f_embed_t) returns.
    fn embedding_size(&self) -> usize;

    /// The bottleneck `[batch, embedding_size]`; `train` turns on dropout and batch
    /// statistics.
    fn f_embed_t(&self, xs: &Tensor, train: bool) -> Result<Tensor>;

    /// Logits `[batch, n_classes]` from the bottleneck (the last layer; softmax gives the
    /// probabilities Keras outputs).
    fn f_logits(&self, embedding: &Tensor) -> Result<Tensor>;

    /// Logits `[batch, n_classes]` of an input batch.
    fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.f_logits(&self.f_embed_t(xs, train)?)
    }

    /// Softmax probabilities `[batch, n_classes]`, in the logits' dtype.
    fn f_probabilities_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let logits = self.f_forward_t(xs, train)?;
        let kind = logits.f_kind()?;
        Ok(logits.f_softmax(-1, kind)?)
    }

    /// Checks that `xs` is `[batch, 1, n_mels, frames]`.
    fn check_input(&self, xs: &Tensor) -> Result<()> {
        let got = xs.size();
        let (f, t) = self.input_shape();
        if got.len() != 4 || got[1] != 1 || got[2] != f as i64 || got[3] != t as i64 {
            return Err(Error::Shape {
                what: "network input",
                expected: vec![-1, 1, f as i64, t as i64],
                got,
            });
        }
        Ok(())
    }

    /// How the network runs: [`ConvBackend::LibtorchOps`] unless it has fused kernels
    /// (CRNN2D).
    fn backend(&self) -> ConvBackend {
        ConvBackend::LibtorchOps
    }

    /// Runs the network with `backend` from now on. The default accepts
    /// [`ConvBackend::LibtorchOps`] and refuses `FusedCpu`, which only CRNN2D has.
    fn set_backend(&mut self, backend: ConvBackend) -> Result<()> {
        refuse_fused(backend, "this network")
    }

    /// How [`ConvBackend::FusedCpu`] runs 3x3 convolutions (CRNN2D's; a no-op for the
    /// others).
    fn set_conv_algorithm(&mut self, _algorithm: ConvAlgorithm) {}

    /// The CRNN2D behind this network when it is one, so that the trainer can take its fused
    /// CPU training step ([`train_step`](crate::train_step)); `None` (the default) trains
    /// through autograd.
    fn as_crnn2d(&self) -> Option<&Crnn2d> {
        None
    }
}

/// `Ok` for [`ConvBackend::LibtorchOps`], else the error that `network` has no fused kernels.
pub(crate) fn refuse_fused(backend: ConvBackend, network: &str) -> Result<()> {
    match backend {
        ConvBackend::LibtorchOps => Ok(()),
        b => Err(Error::Backend {
            backend: b.to_string(),
            rule: format!(
                "has fused CPU kernels for CRNN2D only; {network} runs as libtorch ops (ConvBackend::LibtorchOps)"
            ),
        }),
    }
}

/// What builds a [`Network`] and records it: the trainer builds the network from it under its
/// own VarStore after seeding libtorch, saves [`to_json`](Self::to_json) as `config.json`'s
/// `model`, and resumes a run only with a spec that [`matches_json`](Self::matches_json)
/// the saved one. [`CrnnConfig`] is the built-in one (the seed's five architectures); another
/// project implements it for its own network (the crate README shows how) and loads its
/// models with [`TrainedModel::load_with`](crate::TrainedModel::load_with).
pub trait NetworkSpec {
    /// The architecture's name (for messages and reports).
    fn architecture(&self) -> String;

    /// `(n_mels, frames)` of one input slice.
    fn input_shape(&self) -> (usize, usize);

    /// Output classes.
    fn n_classes(&self) -> usize;

    /// Every rule of the spec; a shape the network cannot take is refused here, before
    /// anything is trained or written.
    fn validate(&self) -> Result<()>;

    /// The network, its variables created under `path` (libtorch's generator is seeded by
    /// the caller).
    fn build(&self, path: &nn::Path<'_>) -> Result<Box<dyn Network>>;

    /// The spec as JSON, for `config.json`.
    fn to_json(&self) -> Result<serde_json::Value>;

    /// Whether the `model` of a saved `config.json` is this spec (resume and
    /// [`TrainedModel::load_with`](crate::TrainedModel::load_with) ask). Default: equal JSON.
    fn matches_json(&self, saved: &serde_json::Value) -> bool {
        self.to_json().is_ok_and(|v| v == *saved)
    }

    /// Whether `backend` can run the network on `device` (checked before training starts).
    /// Default: [`ConvBackend::LibtorchOps`] only.
    fn check_backend(&self, backend: ConvBackend, _device: tch::Device) -> Result<()> {
        refuse_fused(backend, &self.architecture())
    }
}

impl NetworkSpec for CrnnConfig {
    fn architecture(&self) -> String {
        self.architecture.name().to_string()
    }

    fn input_shape(&self) -> (usize, usize) {
        (self.n_mels, self.slice_frames)
    }

    fn n_classes(&self) -> usize {
        self.n_classes
    }

    fn validate(&self) -> Result<()> {
        CrnnConfig::validate(self)
    }

    fn build(&self, path: &nn::Path<'_>) -> Result<Box<dyn Network>> {
        Ok(match self.architecture {
            Architecture::Crnn2d => Box::new(Crnn2d::new(path, self)?),
            _ => Box::new(crate::zoo::ZooNetwork::new(path, self)?),
        })
    }

    fn to_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self).map_err(|e| Error::ModelFile {
            path: "config.json".into(),
            reason: format!("model config: {e}"),
        })
    }

    /// Compares as configs (a file of an older crate version with fewer fields matches when
    /// its values read back equal).
    fn matches_json(&self, saved: &serde_json::Value) -> bool {
        serde_json::from_value::<CrnnConfig>(saved.clone()).is_ok_and(|c| c == *self)
    }

    fn check_backend(&self, backend: ConvBackend, device: tch::Device) -> Result<()> {
        if self.architecture.has_fused_kernels() {
            backend.check(device)
        } else {
            refuse_fused(backend, self.architecture.name())
        }
    }
}

impl Network for Crnn2d {
    fn input_shape(&self) -> (usize, usize) {
        (self.config().n_mels, self.config().slice_frames)
    }

    fn n_classes(&self) -> usize {
        self.config().n_classes
    }

    fn embedding_size(&self) -> usize {
        self.config().gru_units
    }

    fn f_embed_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        Crnn2d::f_embed_t(self, xs, train)
    }

    fn f_logits(&self, embedding: &Tensor) -> Result<Tensor> {
        self.dense(embedding)
    }

    fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        Crnn2d::f_forward_t(self, xs, train)
    }

    fn check_input(&self, xs: &Tensor) -> Result<()> {
        Crnn2d::check_input(self, xs)
    }

    fn backend(&self) -> ConvBackend {
        Crnn2d::backend(self)
    }

    fn set_backend(&mut self, backend: ConvBackend) -> Result<()> {
        Crnn2d::set_backend(self, backend)
    }

    fn set_conv_algorithm(&mut self, algorithm: ConvAlgorithm) {
        Crnn2d::set_conv_algorithm(self, algorithm);
    }

    fn as_crnn2d(&self) -> Option<&Crnn2d> {
        Some(self)
    }
}

/// A boxed network is a network (so `&TrainedModel::model` passes where `&dyn Network` is
/// asked for).
impl<N: Network + ?Sized> Network for Box<N> {
    fn input_shape(&self) -> (usize, usize) {
        (**self).input_shape()
    }
    fn n_classes(&self) -> usize {
        (**self).n_classes()
    }
    fn embedding_size(&self) -> usize {
        (**self).embedding_size()
    }
    fn f_embed_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        (**self).f_embed_t(xs, train)
    }
    fn f_logits(&self, embedding: &Tensor) -> Result<Tensor> {
        (**self).f_logits(embedding)
    }
    fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        (**self).f_forward_t(xs, train)
    }
    fn check_input(&self, xs: &Tensor) -> Result<()> {
        (**self).check_input(xs)
    }
    fn backend(&self) -> ConvBackend {
        (**self).backend()
    }
    fn set_backend(&mut self, backend: ConvBackend) -> Result<()> {
        (**self).set_backend(backend)
    }
    fn set_conv_algorithm(&mut self, algorithm: ConvAlgorithm) {
        (**self).set_conv_algorithm(algorithm);
    }
    fn as_crnn2d(&self) -> Option<&Crnn2d> {
        (**self).as_crnn2d()
    }
}
