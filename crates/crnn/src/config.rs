//! [`CrnnConfig`] (the network) and [`TrainConfig`] (the training loop), paper defaults.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The slice lengths the paper ran, in frames at 31.25 frames/s: 1, 3, 5, 6, 10, 20 and
/// 29.12 s (`main.py`; 188 only in the album split).
pub const PAPER_SLICE_FRAMES: [usize; 7] = [32, 94, 157, 188, 313, 628, 911];

/// The CRNN2D architecture (`src/models.py: CRNN2D`). `Default` is the paper's network for
/// 20 artists and 911-frame slices (`train_model`'s defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrnnConfig {
    /// Mel bands of the input (the frequency axis). The poolings divide it by 128, so it must
    /// be >= 128; a multiple of 128 gives a wider GRU input.
    ///
    /// Default: `128` (paper).
    pub n_mels: usize,
    /// Frames per input slice (the time axis); >= 16.
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
}

impl Default for CrnnConfig {
    fn default() -> Self {
        Self {
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

    /// Frequency bins left after the four poolings (1 for 128 mels).
    pub fn frequency_after_pooling(&self) -> usize {
        self.pool_sizes
            .iter()
            .fold(self.n_mels, |f, p| f / p.0.max(1))
    }

    /// GRU sequence length: the time axis after the four poolings (5 for 94 frames).
    pub fn sequence_length(&self) -> usize {
        self.pool_sizes
            .iter()
            .fold(self.slice_frames, |t, p| t / p.1.max(1))
    }

    /// Shortest slice the poolings accept.
    pub fn min_slice_frames(&self) -> usize {
        self.pool_sizes.iter().map(|p| p.1.max(1)).product()
    }

    /// Features per GRU step: remaining frequency bins x last conv filters.
    pub fn gru_input_size(&self) -> usize {
        self.frequency_after_pooling() * self.conv_filters[3]
    }

    /// Checks every rule; [`Crnn2d::new`](crate::Crnn2d::new) calls it.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, rule: String| Err(Error::InvalidConfig { field, rule });
        if self.n_classes < 1 {
            return bad("n_classes", "must be >= 1".into());
        }
        if self.pool_sizes.iter().any(|p| p.0 == 0 || p.1 == 0) {
            return bad(
                "pool_sizes",
                format!("must be >= 1, got {:?}", self.pool_sizes),
            );
        }
        if self.frequency_after_pooling() == 0 {
            let need: usize = self.pool_sizes.iter().map(|p| p.0).product();
            return bad(
                "n_mels",
                format!(
                    "the poolings need at least {need} mel bands, got {}",
                    self.n_mels
                ),
            );
        }
        if self.sequence_length() == 0 {
            return Err(Error::SliceTooShort {
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
        Ok(())
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
                    minimum: 16
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
}
