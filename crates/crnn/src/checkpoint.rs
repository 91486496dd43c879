//! The model directory: `config.json`, `weights.safetensors`, `history.csv`, and while
//! training, `resume/` (two alternating checkpoint slots and `state.json`, the commit point).
//! Every file is written to a temporary name and renamed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor, nn};

use crate::error::io_err;
use crate::{CrnnConfig, Error, Network, NetworkSpec, Result, TrainConfig};

/// `config.json`.
pub const CONFIG_FILE: &str = "config.json";
/// The best weights (all variables, BatchNorm moving statistics included).
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// Per-epoch history.
pub const HISTORY_FILE: &str = "history.csv";
const RESUME_DIR: &str = "resume";
/// Folder of every epoch's weights ([`FitParams::keep_epoch_weights`](crate::FitParams::keep_epoch_weights)).
pub const EPOCHS_DIR: &str = "epochs";

/// `epochs/epoch-<n>.safetensors` of a model directory (`epoch` 1-based).
pub fn epoch_weights_path(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(EPOCHS_DIR)
        .join(format!("epoch-{epoch}.safetensors"))
}
const STATE_FILE: &str = "state.json";

/// Whether the run behind a model directory has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Training is under way or was interrupted; `weights.safetensors` holds the best epoch so far.
    Training,
    /// Training ended (early stop or the epoch limit); `weights.safetensors` is the result.
    Finished,
}

/// `config.json`: everything needed to rebuild and use the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// Version of this layout.
    pub format_version: u32,
    /// Version of the crnn crate that wrote it.
    pub crate_version: String,
    /// The network: its [`NetworkSpec::to_json`]. For the built-in architectures a
    /// [`CrnnConfig`] ([`config`](Self::config) reads it; files of CRNN2D runs, also those
    /// written before there were other architectures, have no `architecture` field).
    pub model: serde_json::Value,
    /// Class names in label order.
    pub class_names: Vec<String>,
    /// The training settings.
    pub train: TrainConfig,
    /// Caller's metadata (this project stores the mel configuration and the split here).
    pub metadata: serde_json::Value,
    /// Run status.
    pub status: RunStatus,
    /// Epochs completed.
    pub epochs_completed: usize,
    /// Epoch (1-based) whose weights are in `weights.safetensors`; 0 before the first.
    pub best_epoch: usize,
    /// Its validation loss.
    pub best_val_loss: Option<f64>,
    /// Whether early stopping ended the run, recorded when it finished (absent in files of
    /// unfinished runs and in files written before it was recorded:
    /// [`recorded_outcome`](crate::recorded_outcome) then replays the monitor over the
    /// history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<bool>,
}

impl ModelFile {
    /// The built-in network of this file, or an error naming `path` when `model` is not a
    /// [`CrnnConfig`] (another project's architecture: load it with
    /// [`TrainedModel::load_with`]).
    pub fn config(&self, path: &Path) -> Result<CrnnConfig> {
        serde_json::from_value(self.model.clone()).map_err(|e| Error::ModelFile {
            path: path.to_path_buf(),
            reason: format!(
                "model is not one of the built-in architectures ({e}); load it with TrainedModel::load_with and its NetworkSpec"
            ),
        })
    }
}

/// The resume commit point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ResumeState {
    pub epoch: usize,
    pub slot: usize,
    pub adam_step: u64,
    pub best_val_loss: Option<f64>,
    pub best_epoch: usize,
    pub wait: usize,
    /// The monitored score of `best_epoch` (absent in states written before monitors: then
    /// the monitor was the validation loss, `best_val_loss`).
    #[serde(default)]
    pub best_score: Option<f64>,
}

/// One epoch of history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss (train mode, dropout on), as Keras logs it.
    pub loss: f64,
    /// Training accuracy.
    pub acc: f64,
    /// Validation loss (eval mode).
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_acc: f64,
    /// Weighted F1 of the validation slices (scikit-learn's `weighted avg`); NaN in histories
    /// written before it was recorded.
    #[serde(default = "nan", deserialize_with = "null_as_nan")]
    pub val_f1: f64,
    /// Wall time of the epoch (training + validation).
    pub seconds: f64,
}

fn nan() -> f64 {
    f64::NAN
}

/// JSON has no NaN: serde_json writes it as `null`, read back here as NaN.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Writes through [`atomic_file::write_atomic`]: a temporary file in the same directory
/// (extension last: tch picks the format from it), fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    atomic_file::write_atomic(path, write).map_err(|e| match e {
        atomic_file::Error::Write(e) => e,
        atomic_file::Error::Io { path, source, .. } => Error::Io { path, source },
    })
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, |tmp| {
        let text = serde_json::to_string_pretty(value).map_err(|e| Error::ModelFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        std::fs::write(tmp, text).map_err(io_err(tmp))
    })
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| Error::ModelFile {
        path: path.to_path_buf(),
        reason: format!("unreadable JSON: {e}"),
    })
}

pub(crate) fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    write_atomic(path, |tmp| Ok(Tensor::write_safetensors(tensors, tmp)?))
}

/// All variables of a VarStore, by name, sorted, contiguous (channels-last kernels are copied
/// to the standard layout: safetensors stores row-major data).
pub(crate) fn named_variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.contiguous()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

pub(crate) fn load_variables(vs: &mut nn::VarStore, path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(Error::ModelFile {
            path: path.to_path_buf(),
            reason: "missing".into(),
        });
    }
    vs.load(path).map_err(|e| Error::ModelFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

pub(crate) fn write_history(path: &Path, history: &[EpochRecord]) -> Result<()> {
    let mut text = String::from("epoch,loss,acc,val_loss,val_acc,seconds,val_f1\n");
    for h in history {
        text += &format!(
            "{},{},{},{},{},{:.3},{}\n",
            h.epoch, h.loss, h.acc, h.val_loss, h.val_acc, h.seconds, h.val_f1
        );
    }
    write_atomic(path, |tmp| std::fs::write(tmp, text).map_err(io_err(tmp)))
}

/// Reads `history.csv` of a model directory (`epoch,loss,acc,val_loss,val_acc,seconds`, and
/// `val_f1` since monitors exist: older files read with `val_f1` NaN).
pub fn read_history(dir: &Path) -> Result<Vec<EpochRecord>> {
    let path = dir.join(HISTORY_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let bad = |line: usize| Error::ModelFile {
        path: path.clone(),
        reason: format!("line {line} is not epoch,loss,acc,val_loss,val_acc,seconds[,val_f1]"),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 6 && f.len() != 7 {
            return Err(bad(i + 1));
        }
        let num = |k: usize| f[k].parse::<f64>().map_err(|_| bad(i + 1));
        out.push(EpochRecord {
            epoch: f[0].parse().map_err(|_| bad(i + 1))?,
            loss: num(1)?,
            acc: num(2)?,
            val_loss: num(3)?,
            val_acc: num(4)?,
            seconds: num(5)?,
            val_f1: if f.len() == 7 { num(6)? } else { f64::NAN },
        });
    }
    Ok(out)
}

pub(crate) struct ResumePaths {
    pub state: PathBuf,
    pub dir: PathBuf,
}

impl ResumePaths {
    pub fn new(model_dir: &Path) -> Self {
        let dir = model_dir.join(RESUME_DIR);
        Self {
            state: dir.join(STATE_FILE),
            dir,
        }
    }
    pub fn weights(&self, slot: usize) -> PathBuf {
        self.dir.join(format!("slot-{slot}.weights.safetensors"))
    }
    pub fn adam(&self, slot: usize) -> PathBuf {
        self.dir.join(format!("slot-{slot}.adam.safetensors"))
    }
}

/// A trained model loaded from its directory, ready for inference.
#[derive(Debug)]
pub struct TrainedModel {
    /// The variables.
    pub vs: nn::VarStore,
    /// The network (for a CRNN2D, [`Network::as_crnn2d`] gives the [`Crnn2d`](crate::Crnn2d)).
    pub model: Box<dyn Network>,
    /// Its `config.json`.
    pub file: ModelFile,
}

impl TrainedModel {
    /// Loads `config.json` and `weights.safetensors` from `dir` onto `device`, with the
    /// device's default [`ConvBackend`](crate::ConvBackend) (change it with
    /// [`Network::set_backend`]), for any of the built-in architectures (a file without
    /// `architecture` is a CRNN2D).
    ///
    /// The directory of an unfinished run (killed, interrupted, or still training) loads too:
    /// its weights are the best epoch so far, not a result. [`is_finished`](Self::is_finished)
    /// and [`unfinished_note`](Self::unfinished_note) tell; an application should say so
    /// before it predicts (this workspace's `predict` and `representation` examples do).
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let file: ModelFile = read_json(&path)?;
        let config = file.config(&path)?;
        Self::load_from(dir, device, file, &config)
    }

    /// Loads a model of another project's architecture: `spec` must describe the saved
    /// network ([`NetworkSpec::matches_json`]), else [`Error::Mismatch`].
    pub fn load_with(dir: &Path, device: Device, spec: &dyn NetworkSpec) -> Result<Self> {
        let file: ModelFile = read_json(&dir.join(CONFIG_FILE))?;
        if !spec.matches_json(&file.model) {
            return Err(Error::Mismatch {
                dir: dir.to_path_buf(),
                what: "model config",
                detail: format!("saved {} vs given {:?}", file.model, spec.to_json().ok()),
            });
        }
        Self::load_from(dir, device, file, spec)
    }

    fn load_from(
        dir: &Path,
        device: Device,
        file: ModelFile,
        spec: &dyn NetworkSpec,
    ) -> Result<Self> {
        if file.class_names.len() != spec.n_classes() {
            return Err(Error::ModelFile {
                path: dir.join(CONFIG_FILE),
                reason: format!(
                    "{} class names for {} classes",
                    file.class_names.len(),
                    spec.n_classes()
                ),
            });
        }
        let mut vs = nn::VarStore::new(device);
        let model = spec.build(&vs.root())?;
        load_variables(&mut vs, &dir.join(WEIGHTS_FILE))?;
        Ok(Self { vs, model, file })
    }

    /// Whether training finished (early stop or the epoch limit): the weights are the run's
    /// result. `false` for an unfinished run, whose weights are the best epoch so far.
    pub fn is_finished(&self) -> bool {
        self.file.status == RunStatus::Finished
    }

    /// `None` for a finished run; for an unfinished one, a sentence saying what its weights
    /// are (epochs completed, the epoch kept, the epoch limit).
    pub fn unfinished_note(&self) -> Option<String> {
        let f = &self.file;
        (!self.is_finished()).then(|| {
            format!(
                "the run is unfinished ({} of at most {} epochs completed): its weights are the best epoch so far (epoch {}), not a result; resume training to finish it",
                f.epochs_completed, f.train.max_epochs, f.best_epoch
            )
        })
    }
}
