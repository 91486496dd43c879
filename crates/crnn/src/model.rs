//! [`Crnn2d`]: the paper's network.

use tch::nn::{Init, ModuleT};
use tch::{Kind, Tensor, nn};

use crnn_kernels::Plan;

use crate::fused::{self, ConvStack};
use crate::layers::{
    KerasBatchNorm, KerasGru, f_nchw_to_sequence, f_normalize_mels, glorot_uniform,
    to_channels_last,
};
use crate::{ConvAlgorithm, ConvBackend, CrnnConfig, Error, Result};

/// CRNN2D (`src/models.py`), Keras-exact. Input `[batch, 1, n_mels, slice_frames]` (the NCHW
/// view of Keras's channels-last `(n_mels, frames, 1)`):
///
/// 1. BatchNorm over the frequency axis (per-mel-bin statistics, Keras `axis=1`);
/// 2. four blocks: Conv2d 3x3 "same" with bias -> ELU -> BatchNorm over channels ->
///    MaxPool (2,2), (4,2), (4,2), (4,2) -> Dropout 0.1;
/// 3. frequency is now 1: the sequence `(time', 128)` (Keras Permute + Reshape order);
/// 4. GRU 32 returning the sequence -> GRU 32 last state -> Dropout 0.3: the 32-d
///    bottleneck ([`embed_t`](Self::embed_t));
/// 5. Dense `n_classes`: [`forward_t`](ModuleT::forward_t) returns these logits; softmax gives
///    the probabilities Keras outputs ([`probabilities_t`](Self::probabilities_t)).
///
/// 394,324 variables for 20 classes, 393,172 of them trained (the rest are BatchNorm moving
/// statistics), as Keras's `count_params()`.
///
/// How the conv stack runs is the model's [`ConvBackend`], chosen when it is built for the
/// device of its variables ([`ConvBackend::default_for`]) and changed with
/// [`set_backend`](Self::set_backend).
pub struct Crnn2d {
    config: CrnnConfig,
    bn_in: KerasBatchNorm,
    conv_kernels: Vec<Tensor>,
    conv_biases: Vec<Tensor>,
    bns: Vec<KerasBatchNorm>,
    gru1: KerasGru,
    gru2: KerasGru,
    dense_kernel: Tensor,
    dense_bias: Tensor,
    channels_last: bool,
    backend: ConvBackend,
    /// How `FusedCpu` runs the convolutions of blocks 2-4.
    algorithm: ConvAlgorithm,
    /// The fused passes' plan, for `ConvBackend::FusedCpu`.
    plan: Option<Plan>,
}

impl std::fmt::Debug for Crnn2d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crnn2d")
            .field("config", &self.config)
            .field("backend", &self.backend)
            .field("algorithm", &self.algorithm)
            .field("channels_last", &self.channels_last)
            .finish_non_exhaustive()
    }
}

impl Crnn2d {
    /// Builds the network's variables under `path` with Keras's initialisers (glorot uniform
    /// conv, dense and GRU input kernels; orthogonal recurrent kernels; zero biases), with the
    /// default backend of the path's device ([`ConvBackend::default_for`]), the default
    /// [`ConvAlgorithm`] (Winograd) and, on the CPU, the conv kernels stored channels-last.
    /// Reads no environment: an application that honours `CRNN_KERNELS_ISA` or
    /// `CRNN_CONV_ALGORITHM` sets the result of their `from_env` afterwards.
    /// A config of another [`Architecture`](crate::Architecture) is an error: build those
    /// with [`NetworkSpec::build`](crate::NetworkSpec::build).
    pub fn new(path: &nn::Path<'_>, config: &CrnnConfig) -> Result<Self> {
        config.validate()?;
        if config.architecture != crate::Architecture::Crnn2d {
            return Err(Error::InvalidConfig {
                field: "architecture",
                rule: format!(
                    "Crnn2d builds crnn2d, got {}: build it with NetworkSpec::build",
                    config.architecture
                ),
            });
        }
        let c = config;
        let bn_in = KerasBatchNorm::new(path / "bn_in", c.n_mels, c.bn_momentum, c.bn_epsilon);
        let (mut conv_kernels, mut conv_biases, mut bns) = (vec![], vec![], vec![]);
        let mut cin = 1usize;
        for (i, &cout) in c.conv_filters.iter().enumerate() {
            let p = path / format!("conv{}", i + 1);
            conv_kernels.push(p.var(
                "kernel",
                &[cout as i64, cin as i64, 3, 3],
                glorot_uniform(9 * cin, 9 * cout),
            ));
            conv_biases.push(p.var("bias", &[cout as i64], Init::Const(0.0)));
            bns.push(KerasBatchNorm::new(
                path / format!("bn{}", i + 1),
                cout,
                c.bn_momentum,
                c.bn_epsilon,
            ));
            cin = cout;
        }
        let gru1 = KerasGru::new(path / "gru1", c.gru_input_size(), c.gru_units);
        let gru2 = KerasGru::new(path / "gru2", c.gru_units, c.gru_units);
        let d = path / "dense";
        let dense_kernel = d.var(
            "kernel",
            &[c.gru_units as i64, c.n_classes as i64],
            glorot_uniform(c.gru_units, c.n_classes),
        );
        let dense_bias = d.var("bias", &[c.n_classes as i64], Init::Const(0.0));
        let device = path.device();
        let backend = ConvBackend::default_for(device)?;
        let mut model = Self {
            config: c.clone(),
            bn_in,
            conv_kernels,
            conv_biases,
            bns,
            gru1,
            gru2,
            dense_kernel,
            dense_bias,
            channels_last: false,
            backend: ConvBackend::LibtorchOps,
            algorithm: ConvAlgorithm::default(),
            plan: None,
        };
        model.set_backend(backend)?;
        model.set_channels_last(device == tch::Device::Cpu);
        Ok(model)
    }

    /// Stores the conv kernels in channels-last (NHWC) strides, in place, so that libtorch's
    /// oneDNN runs the whole conv stack NHWC (faster on CPU; the same arithmetic up to
    /// summation order). The variables stay the same leaves of the VarStore; only their
    /// memory layout changes. On by default for a model built on the CPU.
    pub fn set_channels_last(&mut self, on: bool) {
        if on == self.channels_last {
            return;
        }
        tch::no_grad(|| {
            for k in &mut self.conv_kernels {
                let data = if on {
                    to_channels_last(k)
                } else {
                    k.contiguous()
                };
                k.set_data(&data);
            }
        });
        self.channels_last = on;
    }

    /// Runs the conv stack with `backend` from now on. `FusedCpu` needs the model on the CPU
    /// and an instruction set this CPU has (else an error, and the backend is unchanged).
    pub fn set_backend(&mut self, backend: ConvBackend) -> Result<()> {
        backend.check(self.dense_kernel.device())?;
        self.plan = backend.plan()?;
        self.backend = backend;
        Ok(())
    }

    /// The conv backend.
    pub fn backend(&self) -> ConvBackend {
        self.backend
    }

    /// How [`ConvBackend::FusedCpu`] runs the 3x3 convolutions of blocks 2-4 from now on
    /// (default [`ConvAlgorithm::Winograd`]; the libtorch-op path always runs libtorch's
    /// convolution).
    pub fn set_conv_algorithm(&mut self, algorithm: ConvAlgorithm) {
        self.algorithm = algorithm;
    }

    /// How `FusedCpu` runs the convolutions of blocks 2-4.
    pub fn conv_algorithm(&self) -> ConvAlgorithm {
        self.algorithm
    }

    pub(crate) fn conv_stack(&self) -> ConvStack<'_> {
        ConvStack {
            bn_in: &self.bn_in,
            kernels: &self.conv_kernels,
            biases: &self.conv_biases,
            bns: &self.bns,
            pools: self.config.pool_sizes,
            dropout: self.config.conv_dropout,
            algorithm: self.algorithm,
        }
    }

    /// The fused passes' plan when the backend is `FusedCpu`, after checking that `xs` (and
    /// the conv variables) are CPU f32; `None` for `LibtorchOps`. The one place where the
    /// path of a forward pass is decided.
    pub(crate) fn fused_plan(&self, xs: &Tensor) -> Result<Option<&Plan>> {
        let Some(plan) = &self.plan else {
            return Ok(None);
        };
        let kinds_ok =
            xs.kind() == Kind::Float && self.conv_kernels.iter().all(|k| k.kind() == Kind::Float);
        if xs.device() != tch::Device::Cpu || !kinds_ok {
            return Err(Error::Backend {
                backend: self.backend.to_string(),
                rule: format!(
                    "runs f32 on the CPU, got input {:?} on {:?}; use ConvBackend::LibtorchOps for other dtypes and devices",
                    xs.kind(),
                    xs.device()
                ),
            });
        }
        Ok(Some(plan))
    }

    /// The bottleneck from the last conv block's output in NHWC (`[batch, f', t', channels]`):
    /// Keras's Permute + Reshape to `(t', f' * channels)`, the GRUs and the dropout.
    pub(crate) fn head_from_nhwc(&self, y: &Tensor, train: bool) -> Result<Tensor> {
        let s = y.size();
        let seq = y
            .f_permute([0, 2, 1, 3])?
            .f_reshape([s[0], s[2], s[1] * s[3]])?;
        let seq = self.gru1.f_forward(&seq, true)?;
        let last = self.gru2.f_forward(&seq, false)?;
        Ok(last.f_dropout(self.config.gru_dropout, train)?)
    }

    /// [`embed_t`](Self::embed_t) with errors returned. In eval mode (`train == false`) on
    /// [`ConvBackend::FusedCpu`] the conv stack runs the fused passes; in train mode every op
    /// is a libtorch op, so that autograd can differentiate it (the fused training step is
    /// [`train_step`](crate::train_step)).
    pub fn f_embed_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.check_input(xs)?;
        if !train && let Some(plan) = self.fused_plan(xs)? {
            let y = fused::eval_stack(plan, &self.conv_stack(), xs)?;
            return self.head_from_nhwc(&y, false);
        }
        self.reference_embed(xs, train)
    }

    /// Logits `[batch, n_classes]`, with errors returned (see [`f_embed_t`](Self::f_embed_t)).
    pub fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self
            .f_embed_t(xs, train)?
            .f_matmul(&self.dense_kernel)?
            .f_add(&self.dense_bias)?)
    }

    /// Logits from the bottleneck.
    pub(crate) fn dense(&self, embedding: &Tensor) -> Result<Tensor> {
        Ok(embedding
            .f_matmul(&self.dense_kernel)?
            .f_add(&self.dense_bias)?)
    }

    /// Whether the conv kernels are stored channels-last.
    pub fn is_channels_last(&self) -> bool {
        self.channels_last
    }

    /// The configuration.
    pub fn config(&self) -> &CrnnConfig {
        &self.config
    }

    /// The input shape without the batch: `[1, n_mels, slice_frames]`.
    pub fn input_shape(&self) -> [i64; 3] {
        [
            1,
            self.config.n_mels as i64,
            self.config.slice_frames as i64,
        ]
    }

    /// Checks that `xs` is `[batch, 1, n_mels, slice_frames]`.
    pub fn check_input(&self, xs: &Tensor) -> Result<()> {
        let got = xs.size();
        let [c, f, t] = self.input_shape();
        if got.len() != 4 || got[1] != c || got[2] != f || got[3] != t {
            return Err(Error::Shape {
                what: "CRNN input",
                expected: vec![-1, c, f, t],
                got,
            });
        }
        Ok(())
    }

    /// The 32-d bottleneck: GRU 2's last state after Dropout 0.3 (identity when `!train`),
    /// what the paper's t-SNE plots. Panics where [`f_embed_t`](Self::f_embed_t) returns an
    /// error (as tch's infallible ops do); library code calls the `f_` methods.
    pub fn embed_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self.f_embed_t(xs, train) {
            Ok(e) => e,
            Err(e) => panic!("Crnn2d::embed_t: {e}"),
        }
    }

    /// The libtorch-op path: every op differentiable by autograd, any device and dtype.
    fn reference_embed(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = f_normalize_mels(&self.bn_in, xs, train)?;
        for i in 0..self.conv_kernels.len() {
            h = h
                .f_conv2d(
                    &self.conv_kernels[i],
                    Some(&self.conv_biases[i]),
                    [1, 1],
                    [1, 1],
                    [1, 1],
                    1,
                )?
                .f_elu()?;
            h = self.bns[i].f_forward_t(&h, train)?;
            let (pf, pt) = self.config.pool_sizes[i];
            let pool = [pf as i64, pt as i64];
            h = h.f_max_pool2d(pool, pool, [0, 0], [1, 1], false)?;
            h = h.f_dropout(self.config.conv_dropout, train)?;
        }
        let seq = f_nchw_to_sequence(&h)?;
        let seq = self.gru1.f_forward(&seq, true)?;
        let last = self.gru2.f_forward(&seq, false)?;
        Ok(last.f_dropout(self.config.gru_dropout, train)?)
    }

    /// Softmax probabilities (what the Keras model outputs), with errors returned.
    pub fn f_probabilities_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let logits = self.f_forward_t(xs, train)?;
        let kind = logits.f_kind()?;
        Ok(logits.f_softmax(-1, kind)?)
    }

    /// Softmax probabilities (what the Keras model outputs). Panics where
    /// [`f_probabilities_t`](Self::f_probabilities_t) returns an error.
    pub fn probabilities_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self.f_probabilities_t(xs, train) {
            Ok(p) => p,
            Err(e) => panic!("Crnn2d::probabilities_t: {e}"),
        }
    }
}

impl ModuleT for Crnn2d {
    /// Logits `[batch, n_classes]`. Panics where [`Crnn2d::f_forward_t`] returns an error.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self.f_forward_t(xs, train) {
            Ok(y) => y,
            Err(e) => panic!("Crnn2d::forward_t: {e}"),
        }
    }
}

/// Keras `categorical_crossentropy` on softmax outputs: probabilities renormalised, clipped to
/// `[1e-7, 1 - 1e-7]`, `-sum(y log p)` averaged over the batch. `labels` are class indices.
/// Panics where [`f_keras_categorical_crossentropy`] returns an error.
pub fn keras_categorical_crossentropy(
    probabilities: &Tensor,
    labels: &Tensor,
    n_classes: i64,
) -> Tensor {
    match f_keras_categorical_crossentropy(probabilities, labels, n_classes) {
        Ok(l) => l,
        Err(e) => panic!("keras_categorical_crossentropy: {e}"),
    }
}

/// [`keras_categorical_crossentropy`] with errors returned: labels that are not integer
/// class indices below `n_classes`, or as many as the rows of `probabilities`, are an error.
pub fn f_keras_categorical_crossentropy(
    probabilities: &Tensor,
    labels: &Tensor,
    n_classes: i64,
) -> Result<Tensor> {
    let k = probabilities.f_kind()?;
    let onehot = labels.f_one_hot(n_classes)?.f_to_kind(k)?;
    f_keras_categorical_crossentropy_soft(probabilities, &onehot)
}

/// Keras `categorical_crossentropy` against soft targets `[batch, n_classes]` (rows summing
/// to 1, as mixup's): `-sum(y log p)` on the renormalised, clipped probabilities, averaged
/// over the batch. One-hot targets give [`f_keras_categorical_crossentropy`].
pub fn f_keras_categorical_crossentropy_soft(
    probabilities: &Tensor,
    targets: &Tensor,
) -> Result<Tensor> {
    let k = probabilities.f_kind()?;
    if targets.size() != probabilities.size() {
        return Err(Error::Shape {
            what: "soft targets",
            expected: probabilities.size(),
            got: targets.size(),
        });
    }
    let p = probabilities.f_div(&probabilities.f_sum_dim_intlist(-1, true, k)?)?;
    let p = p.f_clamp(1e-7, 1.0 - 1e-7)?;
    Ok(targets
        .f_to_kind(k)?
        .f_mul(&p.f_log()?)?
        .f_sum_dim_intlist(-1, false, k)?
        .f_mean(k)?
        .f_neg()?)
}

/// (trainable, all) variable counts of a VarStore: all includes the BatchNorm moving statistics.
pub fn parameter_counts(vs: &nn::VarStore) -> (usize, usize) {
    let trainable = vs.trainable_variables().iter().map(|t| t.numel()).sum();
    let all = vs.variables().values().map(|t| t.numel()).sum();
    (trainable, all)
}
