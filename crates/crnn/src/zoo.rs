//! The seed's four other networks, Keras-exact, as libtorch ops on any device:
//! [`ZooNetwork`], whose body is a 2-D conv stack (CRNN2DLarger, CRNN2DVGG), CRNN1D's or
//! RNN's. Built through [`NetworkSpec::build`](crate::NetworkSpec::build) of a [`CrnnConfig`].

use tch::nn::Init;
use tch::{Tensor, nn};

use crate::architecture::{CONV2D_GRU_UNITS, CRNN1D_CONVS, CRNN1D_POOL, SEQUENCE_UNITS};
use crate::layers::{
    KerasBatchNorm, KerasGru, KerasLstm, f_nchw_to_sequence, f_normalize_mels, glorot_uniform,
};
use crate::network::Network;
use crate::{Architecture, CrnnConfig, Error, Result};

/// Keras `Dense(n_classes)`: glorot-uniform kernel `[input, n_classes]`, zero bias.
#[derive(Debug)]
struct Dense {
    kernel: Tensor,
    bias: Tensor,
}

impl Dense {
    fn new(path: nn::Path<'_>, input: usize, classes: usize) -> Self {
        Self {
            kernel: path.var(
                "kernel",
                &[input as i64, classes as i64],
                glorot_uniform(input, classes),
            ),
            bias: path.var("bias", &[classes as i64], Init::Const(0.0)),
        }
    }

    fn f_forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_matmul(&self.kernel)?.f_add(&self.bias)?)
    }
}

/// Two Keras GRUs (the first returning the sequence, the second its last state) and dropout
/// on that state: the recurrent end of the conv-recurrent models.
#[derive(Debug)]
struct GruPair {
    gru1: KerasGru,
    gru2: KerasGru,
    dropout: f64,
}

impl GruPair {
    fn new(path: &nn::Path<'_>, input: usize, units: usize, dropout: f64) -> Self {
        Self {
            gru1: KerasGru::new(path / "gru1", input, units),
            gru2: KerasGru::new(path / "gru2", units, units),
            dropout,
        }
    }

    fn f_forward(&self, seq: &Tensor, train: bool) -> Result<Tensor> {
        let seq = self.gru1.f_forward(seq, true)?;
        let last = self.gru2.f_forward(&seq, false)?;
        Ok(last.f_dropout(self.dropout, train)?)
    }
}

/// The input `[batch, 1, n_mels, frames]` as Keras's Permute + Reshape to time reads it:
/// `[batch, frames, n_mels]`.
fn frames_as_sequence(xs: &Tensor) -> Result<Tensor> {
    let s = xs.size();
    Ok(xs.f_reshape([s[0], s[2], s[3]])?.f_permute([0, 2, 1])?)
}

/// One Conv2D 3x3 "same" with bias, followed by ELU and BatchNorm over channels.
#[derive(Debug)]
struct ConvUnit {
    kernel: Tensor,
    bias: Tensor,
    bn: KerasBatchNorm,
}

/// CRNN2DLarger's and CRNN2DVGG's body after their input BatchNorm ([`ZooNetwork`]'s
/// `bn_in`): blocks of (Conv2D 3x3 -> ELU -> BatchNorm) x k -> MaxPool -> Dropout 0.1, reshape
/// to time (Keras Permute + Reshape), GRU 32 (sequence), GRU 32 (last), Dropout (0.3 / 0.2).
/// Variables `conv<i>`/`bn<i>` numbered over all convolutions, `gru1`, `gru2`.
#[derive(Debug)]
struct Conv2dBody {
    blocks: Vec<(Vec<ConvUnit>, (usize, usize))>,
    recurrent: GruPair,
}

/// Dropout after each conv block of the 2-D models.
const CONV_DROPOUT: f64 = 0.1;

impl Conv2dBody {
    fn new(
        path: &nn::Path<'_>,
        config: &CrnnConfig,
        blocks_spec: &[crate::architecture::Conv2dBlock],
    ) -> Self {
        let (m, e) = (config.bn_momentum, config.bn_epsilon);
        let (mut cin, mut k) = (1usize, 0usize);
        let mut blocks = Vec::new();
        for b in blocks_spec {
            let mut units = Vec::new();
            for &cout in b.filters {
                k += 1;
                let p = path / format!("conv{k}");
                units.push(ConvUnit {
                    kernel: p.var(
                        "kernel",
                        &[cout as i64, cin as i64, 3, 3],
                        glorot_uniform(9 * cin, 9 * cout),
                    ),
                    bias: p.var("bias", &[cout as i64], Init::Const(0.0)),
                    bn: KerasBatchNorm::new(path / format!("bn{k}"), cout, m, e),
                });
                cin = cout;
            }
            blocks.push((units, b.pool));
        }
        Self {
            blocks,
            recurrent: GruPair::new(
                path,
                config.gru_input_size(),
                CONV2D_GRU_UNITS,
                config.architecture.bottleneck_dropout(),
            ),
        }
    }

    fn embed(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = xs.shallow_clone();
        for (units, (pf, pt)) in &self.blocks {
            for u in units {
                h = h
                    .f_conv2d(&u.kernel, Some(&u.bias), [1, 1], [1, 1], [1, 1], 1)?
                    .f_elu()?;
                h = u.bn.f_forward_t(&h, train)?;
            }
            let pool = [*pf as i64, *pt as i64];
            h = h.f_max_pool2d(pool, pool, [0, 0], [1, 1], false)?;
            h = h.f_dropout(CONV_DROPOUT, train)?;
        }
        self.recurrent.f_forward(&f_nchw_to_sequence(&h)?, train)
    }
}

/// CRNN1D's body: the slice as a sequence of mel frames (Keras Permute + Reshape), 3 x
/// (Conv1D 5 `valid` -> ReLU -> MaxPool1D 2) with 64, 128, 128 filters, GRU 64 (sequence),
/// GRU 64 (last); no BatchNorm (unless `input_norm` puts one before it), no dropout.
/// Variables `conv1`-`conv3`, `gru1`, `gru2`; Conv1D kernels are stored
/// `[filters, input, width]` (PyTorch's layout of Keras's `(width, input, filters)`), glorot
/// uniform over Keras's fans.
#[derive(Debug)]
struct Crnn1dBody {
    convs: Vec<(Tensor, Tensor)>,
    recurrent: GruPair,
}

impl Crnn1dBody {
    fn new(path: &nn::Path<'_>, config: &CrnnConfig) -> Self {
        let mut cin = config.n_mels;
        let mut convs = Vec::new();
        for (i, &(cout, width)) in CRNN1D_CONVS.iter().enumerate() {
            let p = path / format!("conv{}", i + 1);
            convs.push((
                p.var(
                    "kernel",
                    &[cout as i64, cin as i64, width as i64],
                    glorot_uniform(width * cin, width * cout),
                ),
                p.var("bias", &[cout as i64], Init::Const(0.0)),
            ));
            cin = cout;
        }
        Self {
            convs,
            recurrent: GruPair::new(path, cin, SEQUENCE_UNITS, 0.0),
        }
    }

    fn embed(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let s = xs.size();
        // (B, 1, F, T) is already Conv1D's (batch, channels = mel bands, time).
        let mut h = xs.f_reshape([s[0], s[2], s[3]])?;
        let pool = CRNN1D_POOL as i64;
        for (kernel, bias) in &self.convs {
            h = h
                .f_conv1d(kernel, Some(bias), [1], [0], [1], 1)?
                .f_relu()?
                .f_max_pool1d([pool], [pool], [0], [1], false)?;
        }
        let seq = h.f_permute([0, 2, 1])?;
        self.recurrent.f_forward(&seq, train)
    }
}

/// RNN's body: the slice as a sequence of mel frames, LSTM 64 (sequence), LSTM 64 (last)
/// (Keras 2.1.1 LSTMs, [`KerasLstm`]). Variables `lstm1`, `lstm2`.
#[derive(Debug)]
struct RnnBody {
    lstm1: KerasLstm,
    lstm2: KerasLstm,
}

impl RnnBody {
    fn new(path: &nn::Path<'_>, config: &CrnnConfig) -> Self {
        Self {
            lstm1: KerasLstm::new(path / "lstm1", config.n_mels, SEQUENCE_UNITS),
            lstm2: KerasLstm::new(path / "lstm2", SEQUENCE_UNITS, SEQUENCE_UNITS),
        }
    }

    fn embed(&self, xs: &Tensor) -> Result<Tensor> {
        let seq = self.lstm1.f_forward(&frames_as_sequence(xs)?, true)?;
        Ok(self.lstm2.f_forward(&seq, false)?)
    }
}

#[derive(Debug)]
enum Body {
    Conv2d(Conv2dBody),
    Crnn1d(Crnn1dBody),
    Rnn(RnnBody),
}

/// One of the seed's four other networks, CRNN2DLarger, CRNN2DVGG, CRNN1D or RNN (the
/// [`Architecture`] of its config), as libtorch ops on any device: its body (the layers up
/// to the bottleneck) and a Dense layer `dense` to the classes. Keras's initialisers
/// (glorot-uniform kernels, orthogonal recurrent kernels, zero biases, LSTM forget bias 1).
#[derive(Debug)]
pub struct ZooNetwork {
    config: CrnnConfig,
    /// The BatchNorm over the mel bands before the body (`bn_in`): always for the 2-D models,
    /// for CRNN1D and RNN when `config.input_norm` ([`CrnnConfig::has_input_norm`]).
    bn_in: Option<KerasBatchNorm>,
    body: Body,
    dense: Dense,
}

impl ZooNetwork {
    /// The network of `config` under `path` (CRNN2D is [`Crnn2d`](crate::Crnn2d), not this).
    pub fn new(path: &nn::Path<'_>, config: &CrnnConfig) -> Result<Self> {
        config.validate()?;
        let bn_in = config.has_input_norm().then(|| {
            KerasBatchNorm::new(
                path / "bn_in",
                config.n_mels,
                config.bn_momentum,
                config.bn_epsilon,
            )
        });
        let body = match config.architecture {
            Architecture::Crnn2d => {
                return Err(Error::InvalidConfig {
                    field: "architecture",
                    rule: "crnn2d is built by Crnn2d::new, not ZooNetwork".into(),
                });
            }
            Architecture::Crnn1d => Body::Crnn1d(Crnn1dBody::new(path, config)),
            Architecture::Rnn => Body::Rnn(RnnBody::new(path, config)),
            a => Body::Conv2d(Conv2dBody::new(
                path,
                config,
                a.conv2d_blocks().unwrap_or_default(),
            )),
        };
        Ok(Self {
            dense: Dense::new(path / "dense", config.embedding_size(), config.n_classes),
            config: config.clone(),
            bn_in,
            body,
        })
    }

    /// Which of the four it is.
    pub fn architecture(&self) -> Architecture {
        self.config.architecture
    }
}

impl Network for ZooNetwork {
    fn input_shape(&self) -> (usize, usize) {
        (self.config.n_mels, self.config.slice_frames)
    }
    fn n_classes(&self) -> usize {
        self.config.n_classes
    }
    fn embedding_size(&self) -> usize {
        self.config.embedding_size()
    }
    fn f_embed_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.check_input(xs)?;
        let normed = self
            .bn_in
            .as_ref()
            .map(|bn| f_normalize_mels(bn, xs, train))
            .transpose()?;
        let xs = normed.as_ref().unwrap_or(xs);
        match &self.body {
            Body::Conv2d(b) => b.embed(xs, train),
            Body::Crnn1d(b) => b.embed(xs, train),
            Body::Rnn(b) => b.embed(xs),
        }
    }
    fn f_logits(&self, embedding: &Tensor) -> Result<Tensor> {
        self.dense.f_forward(embedding)
    }
}
