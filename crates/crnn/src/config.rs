//! [`CrnnConfig`] (the network) and [`TrainConfig`] (the training loop), paper defaults.

use serde::{Deserialize, Serialize};

use crate::architecture::{CONV2D_GRU_UNITS, CRNN1D_CONVS, SEQUENCE_UNITS, crnn1d_steps};
use crate::{Architecture, Error, Result};

/// The slice lengths the paper ran, in frames at 31.25 frames/s: 1, 3, 5, 6, 10, 20 and
/// 29.12 s (`main.py`; 188 only in the album split).
pub const PAPER_SLICE_FRAMES: [usize; 7] = [32, 94, 157, 188, 313, 628, 911];

/// A network of the paper's code (`src/models.py`): which [`Architecture`], the input shape
/// and classes, and the knobs of CRNN2D. `Default` is the paper's CRNN2D for 20 artists and
/// 911-frame slices (`train_model`'s defaults). It is this crate's built-in
/// [`NetworkSpec`](crate::NetworkSpec): [`build`](crate::NetworkSpec::build) makes the network.
///
/// `n_mels`, `slice_frames`, `n_classes`, `bn_momentum` and `bn_epsilon` apply to every
/// architecture; `conv_filters`, `pool_sizes`, `gru_units`, `conv_dropout` and
/// `gru_dropout` are CRNN2D's (the other four have the seed's fixed layer lists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrnnConfig {
    /// Which network. Absent in `config.json` files of CRNN2D (written before there were
    /// others, and still now), which read as CRNN2D.
    ///
    /// Default: [`Architecture::Crnn2d`] (the paper's).
    #[serde(default, skip_serializing_if = "is_crnn2d")]
    pub architecture: Architecture,
    /// Mel bands of the input (the frequency axis). The 2-D models' frequency poolings divide
    /// it by 128, so for them it must be a multiple of 128 (a larger multiple gives a wider
    /// GRU input); CRNN1D and RNN read the bands as features of each frame.
    ///
    /// Default: `128` (paper).
    pub n_mels: usize,
    /// Frames per input slice (the time axis): >= 16 for CRNN2D, 8 for CRNN2DLarger and
    /// CRNN2DVGG, 36 for CRNN1D, 1 for RNN ([`min_slice_frames`](Self::min_slice_frames)).
    ///
    /// Default: `911` (paper's `train_model` default; `main.py` also runs 628, 313, 157, 94, 32).
    pub slice_frames: usize,
    /// Output classes.
    ///
    /// Default: `20` (artist20).
    pub n_classes: usize,
    /// Filters of the four conv blocks (3x3, "same", with bias).
    ///
    /// Default: `[64, 128, 128, 128]` (paper).
    pub conv_filters: [usize; 4],
    /// Max-pool size = stride of each block, (frequency, time).
    ///
    /// Default: `[(2, 2), (4, 2), (4, 2), (4, 2)]` (paper).
    pub pool_sizes: [(usize, usize); 4],
    /// Units of each of the two GRUs (the first returns the sequence, the second its last
    /// state: the bottleneck).
    ///
    /// Default: `32` (paper).
    pub gru_units: usize,
    /// Dropout after each conv block.
    ///
    /// Default: `0.1` (paper).
    pub conv_dropout: f64,
    /// Dropout on the bottleneck, before the dense layer.
    ///
    /// Default: `0.3` (paper).
    pub gru_dropout: f64,
    /// BatchNorm momentum, Keras convention (moving = m * moving + (1 - m) * batch).
    ///
    /// Default: `0.99` (Keras 2.1.1).
    pub bn_momentum: f64,
    /// BatchNorm epsilon.
    ///
    /// Default: `1e-3` (Keras 2.1.1).
    pub bn_epsilon: f64,
    /// CRNN1D and RNN only: a Keras `BatchNormalization` over the mel bands before the first
    /// layer (`bn_in`, as the 2-D models have; 4 x `n_mels` parameters, half trainable). The
    /// seed's CRNN1D and RNN read the raw dB values (about -80 to +40), which saturate their
    /// first layer; this is the sane choice, named `crnn1d-bn` and `rnn-bn`
    /// ([`ModelChoice`](crate::ModelChoice)). Refused for the 2-D models, which always have it.
    /// Absent in `config.json` when `false`.
    ///
    /// Default: `false` (the seed's CRNN1D and RNN).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub input_norm: bool,
}

fn is_crnn2d(a: &Architecture) -> bool {
    *a == Architecture::Crnn2d
}

impl Default for CrnnConfig {
    fn default() -> Self {
        Self {
            architecture: Architecture::Crnn2d,
            n_mels: 128,
            slice_frames: 911,
            n_classes: 20,
            conv_filters: [64, 128, 128, 128],
            pool_sizes: [(2, 2), (4, 2), (4, 2), (4, 2)],
            gru_units: 32,
            conv_dropout: 0.1,
            gru_dropout: 0.3,
            bn_momentum: 0.99,
            bn_epsilon: 1e-3,
            input_norm: false,
        }
    }
}

impl CrnnConfig {
    /// The paper's network for `n_classes` classes and `slice_frames`-frame slices.
    pub fn paper(n_classes: usize, slice_frames: usize) -> Self {
        Self {
            n_classes,
            slice_frames,
            ..Self::default()
        }
    }

    /// The seed's `architecture` for `n_classes` classes and `slice_frames`-frame slices,
    /// 128 mels, Keras's BatchNorm settings.
    pub fn new(architecture: Architecture, n_classes: usize, slice_frames: usize) -> Self {
        Self {
            architecture,
            ..Self::paper(n_classes, slice_frames)
        }
    }

    /// Whether the network starts with a BatchNorm over the mel bands: the 2-D models always,
    /// CRNN1D and RNN when [`input_norm`](Self::input_norm).
    pub fn has_input_norm(&self) -> bool {
        self.input_norm || self.architecture.always_has_input_norm()
    }

    /// The frequency and time pool of each 2-D block (empty for CRNN1D and RNN).
    pub(crate) fn pools_2d(&self) -> Vec<(usize, usize)> {
        match self.architecture {
            Architecture::Crnn2d => self.pool_sizes.to_vec(),
            a => a
                .conv2d_blocks()
                .map(|b| b.iter().map(|b| b.pool).collect())
                .unwrap_or_default(),
        }
    }

    /// Frequency bins left after the 2-D poolings (1 for 128 mels); `n_mels` for CRNN1D and
    /// RNN, whose recurrent input is the whole frame.
    pub fn frequency_after_pooling(&self) -> usize {
        self.pools_2d()
            .iter()
            .fold(self.n_mels, |f, p| f / p.0.max(1))
    }

    /// Time steps that reach the first recurrent layer (5 for CRNN2D on 94 frames; 0 when the
    /// slice is too short).
    pub fn sequence_length(&self) -> usize {
        match self.architecture {
            Architecture::Crnn1d => crnn1d_steps(self.slice_frames),
            Architecture::Rnn => self.slice_frames,
            _ => self
                .pools_2d()
                .iter()
                .fold(self.slice_frames, |t, p| t / p.1.max(1)),
        }
    }

    /// Shortest slice that leaves a time step.
    pub fn min_slice_frames(&self) -> usize {
        match self.architecture {
            Architecture::Crnn1d => (1..).find(|&f| crnn1d_steps(f) > 0).unwrap_or(usize::MAX),
            Architecture::Rnn => 1,
            _ => self.pools_2d().iter().map(|p| p.1.max(1)).product(),
        }
    }

    /// Features per step of the first recurrent layer: remaining frequency bins x last conv
    /// filters for the 2-D models, CRNN1D's last filters, the mel bands for RNN.
    pub fn gru_input_size(&self) -> usize {
        match self.architecture {
            Architecture::Crnn2d => self.frequency_after_pooling() * self.conv_filters[3],
            Architecture::Crnn1d => CRNN1D_CONVS[2].0,
            Architecture::Rnn => self.n_mels,
            a => {
                let last = a
                    .conv2d_blocks()
                    .and_then(|b| b.last())
                    .and_then(|b| b.filters.last())
                    .copied()
                    .unwrap_or(0);
                self.frequency_after_pooling() * last
            }
        }
    }

    /// Width of the bottleneck ([`Network::f_embed_t`](crate::Network::f_embed_t)): the last
    /// recurrent layer's units (32 for the 2-D models, 64 for CRNN1D and RNN).
    pub fn embedding_size(&self) -> usize {
        match self.architecture {
            Architecture::Crnn2d => self.gru_units,
            Architecture::Crnn2dLarger | Architecture::Crnn2dVgg => CONV2D_GRU_UNITS,
            Architecture::Crnn1d | Architecture::Rnn => SEQUENCE_UNITS,
        }
    }

    /// What shortens the time axis, for [`Error::SliceTooShort`].
    fn time_rule(&self) -> String {
        match self.architecture {
            Architecture::Crnn1d => {
                "three Conv1D 5 `valid` (4 frames each) and MaxPool1D 2 (halving)".to_string()
            }
            Architecture::Rnn => "it reads one step per frame".to_string(),
            _ => format!(
                "the time poolings {:?} divide it by {}",
                self.pools_2d().iter().map(|p| p.1).collect::<Vec<_>>(),
                self.min_slice_frames()
            ),
        }
    }

    /// Checks every rule; [`Crnn2d::new`](crate::Crnn2d::new) and
    /// [`NetworkSpec::build`](crate::NetworkSpec::build) call it. A shape the network cannot
    /// take is refused here, with the rule named: too few frames for its time poolings
    /// ([`Error::SliceTooShort`]), or, for the 2-D models, mel bands that are not a multiple of
    /// the product of their frequency pools.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, rule: String| Err(Error::InvalidConfig { field, rule });
        if self.n_classes < 1 {
            return bad("n_classes", "must be >= 1".into());
        }
        if self.n_mels < 1 {
            return bad("n_mels", "must be >= 1".into());
        }
        if self.pool_sizes.iter().any(|p| p.0 == 0 || p.1 == 0) {
            return bad(
                "pool_sizes",
                format!("must be >= 1, got {:?}", self.pool_sizes),
            );
        }
        let pools = self.pools_2d();
        let need: usize = pools.iter().map(|p| p.0).product();
        if !pools.is_empty() && (self.n_mels < need || !self.n_mels.is_multiple_of(need)) {
            return bad(
                "n_mels",
                format!(
                    "{}'s frequency poolings {:?} need a multiple of {need} mel bands (at least {need}), got {}",
                    self.architecture,
                    pools.iter().map(|p| p.0).collect::<Vec<_>>(),
                    self.n_mels
                ),
            );
        }
        if self.input_norm && self.architecture.always_has_input_norm() {
            return bad(
                "input_norm",
                format!(
                    "{} always normalises its input (BatchNorm over the mel bands); input_norm \
                     adds one to crnn1d and rnn only",
                    self.architecture
                ),
            );
        }
        if self.sequence_length() == 0 {
            return Err(Error::SliceTooShort {
                architecture: self.architecture.to_string(),
                rule: self.time_rule(),
                given: self.slice_frames,
                minimum: self.min_slice_frames(),
            });
        }
        if self.conv_filters.contains(&0) || self.gru_units == 0 {
            return bad("conv_filters / gru_units", "must be >= 1".into());
        }
        for (field, p) in [
            ("conv_dropout", self.conv_dropout),
            ("gru_dropout", self.gru_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(field, format!("must be in [0, 1), got {p}"));
            }
        }
        if !(0.0..1.0).contains(&self.bn_momentum)
            || self.bn_epsilon.is_nan()
            || self.bn_epsilon <= 0.0
        {
            return bad(
                "bn_momentum / bn_epsilon",
                format!(
                    "need momentum in [0, 1) and epsilon > 0, got {} / {}",
                    self.bn_momentum, self.bn_epsilon
                ),
            );
        }
        Ok(())
    }
}

/// The training loop (`src/trainer.py: train_model` as `main.py` calls it). How the network
/// runs is not part of it (that is the model's [`ConvBackend`](crate::ConvBackend)); the
/// `channels_last` and `fused_cpu_kernels` fields of older `config.json` files are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Adam learning rate. `main.py` passes 1e-3; the README's figure and `train_model`'s own
    /// default say 1e-4. Which produced the published numbers is unknown.
    ///
    /// Default: `1e-3` (`main.py`).
    pub learning_rate: f64,
    /// Adam beta 1.
    ///
    /// Default: `0.9` (Keras).
    pub beta1: f64,
    /// Adam beta 2.
    ///
    /// Default: `0.999` (Keras).
    pub beta2: f64,
    /// Adam epsilon, added to the bias-uncorrected sqrt(v) as Keras 2.1.1 does.
    ///
    /// Default: `1e-8` (Keras 2.1.1).
    pub epsilon: f64,
    /// Slices per training batch.
    ///
    /// Default: `16` (paper).
    pub batch_size: usize,
    /// Most epochs.
    ///
    /// Default: `200` (paper).
    pub max_epochs: usize,
    /// Stop after this many epochs without a strictly lower validation loss; the weights of
    /// the best epoch are the result.
    ///
    /// Default: `10` (paper).
    pub patience: usize,
    /// Seeds libtorch (initialisation, dropout) and the per-epoch shuffle. The paper seeded
    /// neither; with one CPU thread two runs with the same seed are bit-identical.
    ///
    /// Default: `0`.
    pub seed: u64,
    /// Slices per batch for validation and inference (eval mode: no effect on results).
    ///
    /// Default: `256`.
    pub eval_batch_size: usize,
    /// Which validation score picks the epoch whose weights are kept, and what `patience`
    /// counts epochs without an improvement of. (Missing in `config.json` files written before
    /// it existed: read as the default.)
    ///
    /// Default: [`Monitor::ValLoss`] (the paper's Keras `ModelCheckpoint` and `EarlyStopping`
    /// on `val_loss`).
    #[serde(default)]
    pub monitor: Monitor,
    /// Augmentation of the training batches (validation and test are never augmented);
    /// absent in `config.json` when off.
    ///
    /// Default: none ([`Augment::default`](crate::Augment), the paper's training).
    #[serde(default, skip_serializing_if = "crate::Augment::is_off")]
    pub augment: crate::Augment,
}

/// The validation score that selects the kept epoch and drives early stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Monitor {
    /// Validation loss (Keras categorical cross-entropy); an epoch improves on a strictly
    /// lower one. The paper's.
    #[default]
    ValLoss,
    /// Validation slice accuracy; an epoch improves on a strictly higher one.
    ValAccuracy,
    /// Weighted F1 (scikit-learn's `weighted avg`) of the validation slices; an epoch improves
    /// on a strictly higher one.
    ValF1,
    /// The last epoch: every epoch replaces the kept weights, and nothing stops early
    /// (`patience` is not used).
    Last,
}

impl Monitor {
    /// Every monitor, in the order of [`name`](Self::name)'s list.
    pub const ALL: [Monitor; 4] = [
        Monitor::ValLoss,
        Monitor::ValAccuracy,
        Monitor::ValF1,
        Monitor::Last,
    ];

    /// `val-loss`, `val-accuracy`, `val-f1` or `last`.
    pub fn name(self) -> &'static str {
        match self {
            Monitor::ValLoss => "val-loss",
            Monitor::ValAccuracy => "val-accuracy",
            Monitor::ValF1 => "val-f1",
            Monitor::Last => "last",
        }
    }

    /// The monitor called `name` ([`name`](Self::name)'s spelling).
    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| Error::InvalidConfig {
                field: "monitor",
                rule: format!("unknown monitor {name:?}: val-loss, val-accuracy, val-f1 or last"),
            })
    }

    /// The score this monitor reads from an epoch's record (for [`Last`](Self::Last), the
    /// epoch number).
    pub fn score(self, record: &crate::EpochRecord) -> f64 {
        match self {
            Monitor::ValLoss => record.val_loss,
            Monitor::ValAccuracy => record.val_acc,
            Monitor::ValF1 => record.val_f1,
            Monitor::Last => record.epoch as f64,
        }
    }

    /// The score before the first epoch: anything improves on it.
    pub fn initial(self) -> f64 {
        match self {
            Monitor::ValLoss => f64::INFINITY,
            _ => f64::NEG_INFINITY,
        }
    }

    /// Whether `score` improves on `best`.
    pub fn improves(self, score: f64, best: f64) -> bool {
        match self {
            Monitor::ValLoss => score < best,
            Monitor::ValAccuracy | Monitor::ValF1 => score > best,
            Monitor::Last => true,
        }
    }
}

impl std::fmt::Display for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            batch_size: 16,
            max_epochs: 200,
            patience: 10,
            seed: 0,
            eval_batch_size: 256,
            monitor: Monitor::ValLoss,
            augment: crate::Augment::default(),
        }
    }
}

impl TrainConfig {
    /// Checks every rule.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, rule: String| Err(Error::InvalidConfig { field, rule });
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(
                "learning_rate",
                format!("must be > 0, got {}", self.learning_rate),
            );
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("batch_size", "must be >= 1".into());
        }
        if self.max_epochs == 0 {
            return bad("max_epochs", "must be >= 1".into());
        }
        if !(0.0..1.0).contains(&self.beta1)
            || !(0.0..1.0).contains(&self.beta2)
            || self.epsilon.is_nan()
            || self.epsilon <= 0.0
        {
            return bad(
                "beta1 / beta2 / epsilon",
                "need betas in [0, 1) and epsilon > 0".into(),
            );
        }
        self.augment.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_sequence_lengths() {
        let lens: Vec<usize> = PAPER_SLICE_FRAMES
            .iter()
            .map(|&f| CrnnConfig::paper(20, f).sequence_length())
            .collect();
        assert_eq!(lens, vec![2, 5, 9, 11, 19, 39, 56]);
        assert_eq!(CrnnConfig::default().frequency_after_pooling(), 1);
        assert_eq!(CrnnConfig::default().gru_input_size(), 128);
    }

    #[test]
    fn too_short_slices_name_the_minimum() {
        let err = CrnnConfig::paper(20, 15).validate().unwrap_err();
        assert!(
            matches!(
                err,
                Error::SliceTooShort {
                    given: 15,
                    minimum: 16,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("at least 16"));
        assert!(CrnnConfig::paper(20, 16).validate().is_ok());
        let err = CrnnConfig {
            n_mels: 96,
            ..CrnnConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("at least 128"), "{err}");
    }

    #[test]
    fn every_architecture_names_the_shape_it_refuses() {
        // CRNN1D on 32 frames has no time steps left.
        let err = CrnnConfig::new(Architecture::Crnn1d, 20, 32)
            .validate()
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("crnn1d") && text.contains("at least 36") && text.contains("valid"),
            "{text}"
        );
        assert!(
            CrnnConfig::new(Architecture::Crnn1d, 20, 36)
                .validate()
                .is_ok()
        );
        // The 2-D models need n_mels divisible by their frequency pools (2*2*2*4*4 = 128).
        for a in [
            Architecture::Crnn2d,
            Architecture::Crnn2dLarger,
            Architecture::Crnn2dVgg,
        ] {
            let err = CrnnConfig {
                n_mels: 192,
                ..CrnnConfig::new(a, 20, 94)
            }
            .validate()
            .unwrap_err();
            assert!(err.to_string().contains("multiple of 128"), "{a}: {err}");
            let ok = CrnnConfig {
                n_mels: 256,
                ..CrnnConfig::new(a, 20, 94)
            };
            ok.validate().unwrap();
            assert_eq!(ok.frequency_after_pooling(), 2, "{a}");
        }
        // The larger 2-D models halve time three times: 8 frames are the least.
        let err = CrnnConfig::new(Architecture::Crnn2dVgg, 20, 7)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("at least 8"), "{err}");
        // RNN takes any length and any band count.
        let rnn = CrnnConfig {
            n_mels: 40,
            ..CrnnConfig::new(Architecture::Rnn, 3, 1)
        };
        rnn.validate().unwrap();
        assert_eq!(rnn.gru_input_size(), 40);
    }

    #[test]
    fn crnn2d_files_keep_their_layout() {
        // A CRNN2D config serialises without `architecture` (files written before the zoo read
        // the same), the others with it.
        let v = serde_json::to_value(CrnnConfig::paper(20, 94)).unwrap();
        assert!(v.get("architecture").is_none());
        let back: CrnnConfig = serde_json::from_value(v).unwrap();
        assert_eq!(back.architecture, Architecture::Crnn2d);
        let v = serde_json::to_value(CrnnConfig::new(Architecture::Rnn, 20, 94)).unwrap();
        assert_eq!(v["architecture"], "rnn");
    }
}
