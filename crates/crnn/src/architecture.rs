//! [`Architecture`]: the five networks of the paper's code (`src/models.py`), and the shape
//! rules of each (how the time and frequency axes shrink on the way to the recurrent layers).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The five Keras 2.1.1 models of the paper's code. `CRNN2D` is the paper's; the other four
/// were "only pre-tested" there and never reported. Each is built Keras-exact in layers,
/// initialisers and parameter count; only `CRNN2D` has the fused CPU kernels, the others run
/// as libtorch ops on any device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// The paper's: BatchNorm over the mel axis, 4 x (Conv2D 3x3 -> ELU -> BatchNorm ->
    /// MaxPool (2,2),(4,2),(4,2),(4,2) -> Dropout 0.1), GRU 32 (sequence), GRU 32 (last),
    /// Dropout 0.3, Dense. Its knobs are [`CrnnConfig`](crate::CrnnConfig)'s fields.
    #[default]
    Crnn2d,
    /// CRNN2D made larger and deeper: 5 blocks of 64, 128, 256, 512, 512 filters, pools
    /// (2,2),(2,2),(2,2),(4,1),(4,1) (time halves three times), then the same GRUs and
    /// Dropout 0.3.
    Crnn2dLarger,
    /// VGG-16-like: block 1 two Conv2D 64, blocks 2-5 of 128 (two convs), 256, 512, 512
    /// (three convs each), every conv followed by ELU and BatchNorm; pools as CRNN2DLarger;
    /// GRU 32 x 2 and Dropout 0.2. About 10x CRNN2D's multiply-adds: a GPU model.
    Crnn2dVgg,
    /// No input BatchNorm: the slice read as a sequence of mel frames, 3 x (Conv1D 5
    /// `valid` -> ReLU -> MaxPool1D 2) with 64, 128, 128 filters, GRU 64 (sequence), GRU 64
    /// (last), Dense. No dropout, no BatchNorm. Needs at least 36 frames.
    Crnn1d,
    /// The slice read as a sequence of mel frames: LSTM 64 (sequence), LSTM 64 (last), Dense
    /// (Keras 2.1.1 LSTM: hard-sigmoid gates, forget bias 1).
    Rnn,
}

/// One block of a 2-D conv stack: its convolutions' filters (3x3 "same", each followed by
/// ELU and BatchNorm), then max-pooling (frequency, time) and dropout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conv2dBlock {
    pub filters: &'static [usize],
    pub pool: (usize, usize),
}

const fn block(filters: &'static [usize], pool: (usize, usize)) -> Conv2dBlock {
    Conv2dBlock { filters, pool }
}

/// `CRNN2DLarger`'s blocks.
const LARGER: [Conv2dBlock; 5] = [
    block(&[64], (2, 2)),
    block(&[128], (2, 2)),
    block(&[256], (2, 2)),
    block(&[512], (4, 1)),
    block(&[512], (4, 1)),
];

/// `CRNN2DVGG`'s blocks (a third conv where the filters are not 128, as the code says).
const VGG: [Conv2dBlock; 5] = [
    block(&[64, 64], (2, 2)),
    block(&[128, 128], (2, 2)),
    block(&[256, 256, 256], (2, 2)),
    block(&[512, 512, 512], (4, 1)),
    block(&[512, 512, 512], (4, 1)),
];

/// `CRNN1D`'s convolutions: (filters, kernel width); each is followed by ReLU and
/// MaxPool1D(2).
pub(crate) const CRNN1D_CONVS: [(usize, usize); 3] = [(64, 5), (128, 5), (128, 5)];
/// `CRNN1D`'s pool size (= stride).
pub(crate) const CRNN1D_POOL: usize = 2;
/// Units of the recurrent layers of `CRNN1D` and `RNN`.
pub(crate) const SEQUENCE_UNITS: usize = 64;
/// Units of the GRUs of `CRNN2DLarger` and `CRNN2DVGG` (as CRNN2D's default).
pub(crate) const CONV2D_GRU_UNITS: usize = 32;

impl Architecture {
    /// All five, in the order of the paper's `models.py`.
    pub const ALL: [Architecture; 5] = [
        Architecture::Crnn2d,
        Architecture::Crnn2dLarger,
        Architecture::Crnn2dVgg,
        Architecture::Crnn1d,
        Architecture::Rnn,
    ];

    /// `crnn2d`, `crnn2d-larger`, `crnn2d-vgg`, `crnn1d` or `rnn` (the CLI's and
    /// `config.json`'s spelling).
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Crnn2d => "crnn2d",
            Architecture::Crnn2dLarger => "crnn2d-larger",
            Architecture::Crnn2dVgg => "crnn2d-vgg",
            Architecture::Crnn1d => "crnn1d",
            Architecture::Rnn => "rnn",
        }
    }

    /// The Keras function of the paper's code that defines it (`CRNN2D`, ...).
    pub fn keras_name(self) -> &'static str {
        match self {
            Architecture::Crnn2d => "CRNN2D",
            Architecture::Crnn2dLarger => "CRNN2DLarger",
            Architecture::Crnn2dVgg => "CRNN2DVGG",
            Architecture::Crnn1d => "CRNN1D",
            Architecture::Rnn => "RNN",
        }
    }

    /// The architecture called `name` ([`name`](Self::name)'s spelling).
    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| Error::InvalidConfig {
                field: "architecture",
                rule: format!(
                    "unknown architecture {name:?}: crnn2d, crnn2d-larger, crnn2d-vgg, crnn1d or rnn"
                ),
            })
    }

    /// Whether [`ConvBackend::FusedCpu`](crate::ConvBackend::FusedCpu) can run it (CRNN2D
    /// only; the others are libtorch ops on every device).
    pub fn has_fused_kernels(self) -> bool {
        self == Architecture::Crnn2d
    }

    /// Whether the network starts with a BatchNorm over the mel bands of its own (the three
    /// 2-D models; CRNN1D and RNN only with [`CrnnConfig::input_norm`](crate::CrnnConfig)).
    pub fn always_has_input_norm(self) -> bool {
        !matches!(self, Architecture::Crnn1d | Architecture::Rnn)
    }

    /// The conv blocks of CRNN2DLarger and CRNN2DVGG (`None` for the others; CRNN2D's come
    /// from its config).
    pub(crate) fn conv2d_blocks(self) -> Option<&'static [Conv2dBlock]> {
        match self {
            Architecture::Crnn2dLarger => Some(&LARGER),
            Architecture::Crnn2dVgg => Some(&VGG),
            _ => None,
        }
    }

    /// Dropout on the bottleneck of CRNN2DLarger (0.3) and CRNN2DVGG (0.2); 0 for CRNN1D and
    /// RNN (CRNN2D's is its config's).
    pub(crate) fn bottleneck_dropout(self) -> f64 {
        match self {
            Architecture::Crnn2dVgg => 0.2,
            Architecture::Crnn2d | Architecture::Crnn2dLarger => 0.3,
            Architecture::Crnn1d | Architecture::Rnn => 0.0,
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A model as the command line names it: an [`Architecture`] and, for CRNN1D and RNN, whether
/// a BatchNorm over the mel bands comes first ([`CrnnConfig::input_norm`](crate::CrnnConfig)):
/// `crnn2d`, `crnn2d-larger`, `crnn2d-vgg`, `crnn1d`, `rnn`, `crnn1d-bn`, `rnn-bn`.
///
/// ```
/// use crnn::{Architecture, ModelChoice};
/// let m = ModelChoice::from_name("rnn-bn")?;
/// assert_eq!((m.architecture, m.input_norm), (Architecture::Rnn, true));
/// assert_eq!(m.config(20, 94).input_norm, true);
/// assert_eq!(m.to_string(), "rnn-bn");
/// assert!(ModelChoice::from_name("crnn2d-bn").is_err());
/// # Ok::<(), crnn::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ModelChoice {
    /// The network.
    ///
    /// Default: [`Architecture::Crnn2d`].
    pub architecture: Architecture,
    /// A BatchNorm over the mel bands before CRNN1D or RNN.
    ///
    /// Default: `false`.
    pub input_norm: bool,
}

/// The suffix of [`ModelChoice`] names with an input BatchNorm.
const INPUT_NORM_SUFFIX: &str = "-bn";

impl ModelChoice {
    /// Every valid choice: the five architectures, then CRNN1D and RNN with input BatchNorm.
    pub fn all() -> Vec<ModelChoice> {
        let plain = Architecture::ALL.into_iter().map(ModelChoice::from);
        let normed = Architecture::ALL
            .into_iter()
            .filter(|a| !a.always_has_input_norm())
            .map(|architecture| ModelChoice {
                architecture,
                input_norm: true,
            });
        plain.chain(normed).collect()
    }

    /// The name (`crnn1d`, `crnn1d-bn`).
    pub fn name(self) -> String {
        let mut name = self.architecture.name().to_string();
        if self.input_norm {
            name.push_str(INPUT_NORM_SUFFIX);
        }
        name
    }

    /// The choice called `name` ([`name`](Self::name)'s spelling).
    pub fn from_name(name: &str) -> Result<Self> {
        Self::all()
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| Error::InvalidConfig {
                field: "model",
                rule: format!(
                    "unknown model {name:?}: {} (the 2-D models always have their input BatchNorm)",
                    Self::all()
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// Its seed network for `n_classes` classes and `slice_frames`-frame slices
    /// ([`CrnnConfig::new`](crate::CrnnConfig::new) with `input_norm` set).
    pub fn config(self, n_classes: usize, slice_frames: usize) -> crate::CrnnConfig {
        crate::CrnnConfig {
            input_norm: self.input_norm,
            ..crate::CrnnConfig::new(self.architecture, n_classes, slice_frames)
        }
    }

    /// The choice a config was built from.
    pub fn of(config: &crate::CrnnConfig) -> Self {
        ModelChoice {
            architecture: config.architecture,
            input_norm: config.input_norm,
        }
    }
}

impl From<Architecture> for ModelChoice {
    fn from(architecture: Architecture) -> Self {
        ModelChoice {
            architecture,
            input_norm: false,
        }
    }
}

impl std::fmt::Display for ModelChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Time steps left by CRNN1D's three `valid` convolutions and poolings of `frames` frames.
pub(crate) fn crnn1d_steps(frames: usize) -> usize {
    CRNN1D_CONVS.iter().fold(
        frames,
        |t, &(_, k)| {
            if t < k { 0 } else { (t - k + 1) / CRNN1D_POOL }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_serde_agrees() {
        for a in Architecture::ALL {
            assert_eq!(Architecture::from_name(a.name()).unwrap(), a);
            assert_eq!(
                serde_json::to_value(a).unwrap(),
                serde_json::Value::String(a.name().into())
            );
        }
        assert!(Architecture::from_name("vgg").is_err());
    }

    #[test]
    fn model_choices_round_trip() {
        let all = ModelChoice::all();
        assert_eq!(all.len(), 7);
        for m in all {
            assert_eq!(ModelChoice::from_name(&m.name()).unwrap(), m);
            assert_eq!(ModelChoice::of(&m.config(3, 94)), m);
            m.config(3, 94).validate().unwrap();
        }
        for bad in ["crnn2d-bn", "crnn2d-vgg-bn", "rnn-bn-bn", "bn"] {
            assert!(ModelChoice::from_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn crnn1d_time_steps_follow_keras() {
        // 94 -> 90 -> 45 -> 41 -> 20 -> 16 -> 8 (models.md); 32 frames leave none.
        assert_eq!(crnn1d_steps(94), 8);
        assert_eq!(crnn1d_steps(32), 0);
        assert_eq!(crnn1d_steps(35), 0);
        assert_eq!(crnn1d_steps(36), 1);
    }
}
