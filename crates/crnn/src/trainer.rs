//! [`Trainer`]: the paper's training loop, checkpointed every epoch and resumable exactly.

use std::path::Path;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use tch::{Device, Kind, Tensor, nn};

use crate::adam::KerasAdam;
use crate::checkpoint::{
    CONFIG_FILE, EpochRecord, HISTORY_FILE, ModelFile, ResumePaths, ResumeState, RunStatus,
    WEIGHTS_FILE, load_variables, named_variables, read_history, read_json, save_tensors,
    write_history, write_json,
};
use crate::data::{SliceSource, batch_tensor, check_source, for_each_batch};
use crate::model::keras_categorical_crossentropy;
use crate::{ConvBackend, Crnn2d, CrnnConfig, Error, Result, TrainConfig, train_step};

/// What an observer tells the trainer after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop now, leaving the run resumable (e.g. on Ctrl-C).
    Interrupt,
}

/// Receives progress. Every method has a no-op default.
pub trait TrainObserver {
    /// A training batch finished: `done` of `total` in this epoch.
    fn batch(&mut self, _epoch: usize, _done: usize, _total: usize) {}
    /// An epoch finished and was checkpointed.
    fn epoch(&mut self, _record: &EpochRecord, _improved: bool) -> Control {
        Control::Continue
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl TrainObserver for Silent {}

/// How a call to [`Trainer::fit`] ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// Every epoch of the run (including those before a resume).
    pub history: Vec<EpochRecord>,
    /// Epoch whose weights are the result (`weights.safetensors`).
    pub best_epoch: usize,
    /// Its validation loss.
    pub best_val_loss: f64,
    /// Early stopping ended the run (else the epoch limit, or an interrupt).
    pub stopped_early: bool,
    /// An observer interrupted the run; it can be resumed.
    pub interrupted: bool,
}

/// What to do with an existing model directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExistingRun {
    /// Refuse to touch a directory that holds a run (finished or not).
    #[default]
    Refuse,
    /// Continue an unfinished run from its last completed epoch (refuse a finished one).
    Resume,
}

/// What [`Trainer::fit`] trains and where: the network, its class names, the data and the
/// model directory (required, [`FitParams::new`]), and settings with defaults, each set by a
/// method of the same name. [`check`](Self::check) tests every rule; `fit` calls it.
///
/// ```no_run
/// # use crnn::{CrnnConfig, ExistingRun, FitParams, Silent, Trainer, ViewSource};
/// # fn demo(train: &ViewSource<'_>, val: &ViewSource<'_>, names: &[String]) -> crnn::Result<()> {
/// let config = CrnnConfig::paper(names.len(), 94);
/// let params = FitParams::new(&config, names, train, val, "model".as_ref())
///     .device(tch::Device::Cpu)
///     .existing(ExistingRun::Resume);
/// let outcome = Trainer::default().fit(params, &mut Silent)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FitParams<'a> {
    /// The network to build.
    pub model: &'a CrnnConfig,
    /// One name per class, in label order (saved in `config.json`).
    pub class_names: &'a [String],
    /// Training slices.
    pub train: &'a dyn SliceSource,
    /// Validation slices (best epoch, early stopping).
    pub val: &'a dyn SliceSource,
    /// The model directory.
    pub dir: &'a Path,
    /// Where to train.
    ///
    /// Default: `Device::Cpu`.
    pub device: Device,
    /// What to do with a run already in `dir`.
    ///
    /// Default: [`ExistingRun::Refuse`].
    pub existing: ExistingRun,
    /// Anything to keep in `config.json` beside the run (a resumed run must match it).
    ///
    /// Default: `null`.
    pub metadata: serde_json::Value,
    /// How the conv stack runs; `None` is the device's default
    /// ([`ConvBackend::default_for`]). Not saved: resume with the same backend to continue
    /// bit for bit (the backends draw different dropout masks).
    ///
    /// Default: `None`.
    pub backend: Option<ConvBackend>,
}

impl std::fmt::Debug for FitParams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FitParams")
            .field("model", self.model)
            .field("class_names", &self.class_names)
            .field("train_slices", &self.train.len())
            .field("val_slices", &self.val.len())
            .field("dir", &self.dir)
            .field("device", &self.device)
            .field("existing", &self.existing)
            .field("metadata", &self.metadata)
            .field("backend", &self.backend)
            .finish()
    }
}

impl<'a> FitParams<'a> {
    /// The required parts; the rest at their defaults.
    pub fn new(
        model: &'a CrnnConfig,
        class_names: &'a [String],
        train: &'a dyn SliceSource,
        val: &'a dyn SliceSource,
        dir: &'a Path,
    ) -> Self {
        Self {
            model,
            class_names,
            train,
            val,
            dir,
            device: Device::Cpu,
            existing: ExistingRun::Refuse,
            metadata: serde_json::Value::Null,
            backend: None,
        }
    }

    /// Sets [`device`](Self::device).
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Sets [`existing`](Self::existing).
    pub fn existing(mut self, existing: ExistingRun) -> Self {
        self.existing = existing;
        self
    }

    /// Sets [`metadata`](Self::metadata).
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets [`backend`](Self::backend).
    pub fn backend(mut self, backend: ConvBackend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Every rule: a valid network, one class name per class, non-empty sources of the
    /// network's slice shape with labels below the class count, and a backend that runs on
    /// the device.
    pub fn check(&self) -> Result<()> {
        let c = self.model;
        c.validate()?;
        if self.class_names.len() != c.n_classes {
            return Err(Error::InvalidConfig {
                field: "class_names",
                rule: format!(
                    "{} names for {} classes",
                    self.class_names.len(),
                    c.n_classes
                ),
            });
        }
        check_source(
            "training data",
            self.train,
            c.n_mels,
            c.slice_frames,
            Some(c.n_classes),
        )?;
        check_source(
            "validation data",
            self.val,
            c.n_mels,
            c.slice_frames,
            Some(c.n_classes),
        )?;
        if let Some(b) = self.backend {
            b.check(self.device)?;
        }
        Ok(())
    }
}

/// The training loop of `src/trainer.py`: batch 16, Adam (Keras), per-epoch shuffle,
/// validation loss and accuracy each epoch in eval mode, best weights kept on strictly lower
/// validation loss, early stopping after `patience` epochs without one, at most `max_epochs`.
///
/// Everything is written to the model directory after every epoch: the best weights, the
/// history, and a resume checkpoint (weights, Adam moments, counters) in one of two
/// alternating slots, committed by an atomic `resume/state.json`. A killed run resumes from
/// its last completed epoch and, on CPU, ends bit-identical to an uninterrupted one: the
/// shuffle and libtorch's RNG are re-seeded from `(seed, epoch)` at every epoch.
#[derive(Debug, Clone, Default)]
pub struct Trainer {
    /// Settings.
    pub config: TrainConfig,
}

/// A seed for `(seed, epoch)` (splitmix64 of both).
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    let mut z = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Trainer {
    /// A trainer with these settings.
    pub fn new(config: TrainConfig) -> Self {
        Self { config }
    }

    /// Trains a [`Crnn2d`] as `params` say (checked first: [`FitParams::check`]), reporting
    /// to `observer`.
    pub fn fit(
        &self,
        params: FitParams<'_>,
        observer: &mut dyn TrainObserver,
    ) -> Result<TrainOutcome> {
        let tc = &self.config;
        tc.validate()?;
        params.check()?;
        let FitParams {
            model: model_config,
            class_names,
            train,
            val,
            dir,
            device,
            existing,
            metadata,
            backend,
        } = params;
        let (n_mels, frames) = (model_config.n_mels, model_config.slice_frames);

        let paths = ResumePaths::new(dir);
        let config_path = dir.join(CONFIG_FILE);
        let mut file = ModelFile {
            format_version: 1,
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            model: model_config.clone(),
            class_names: class_names.to_vec(),
            train: tc.clone(),
            metadata,
            status: RunStatus::Training,
            epochs_completed: 0,
            best_epoch: 0,
            best_val_loss: None,
        };
        // What is already there?
        let resume: Option<ResumeState> = if config_path.exists() {
            let old: ModelFile = read_json(&config_path)?;
            if old.status == RunStatus::Finished {
                return Err(Error::AlreadyTrained {
                    dir: dir.to_path_buf(),
                });
            }
            let state: Option<ResumeState> = if paths.state.exists() {
                Some(read_json(&paths.state)?)
            } else {
                None
            };
            if existing == ExistingRun::Refuse {
                return Err(Error::UnfinishedRun {
                    dir: dir.to_path_buf(),
                    epoch: state.as_ref().map_or(0, |s| s.epoch),
                });
            }
            for (what, same, detail) in [
                (
                    "model config",
                    old.model == file.model,
                    format!("{:?} vs {:?}", old.model, file.model),
                ),
                (
                    "training config",
                    old.train == file.train,
                    format!("{:?} vs {:?}", old.train, file.train),
                ),
                (
                    "class names",
                    old.class_names == file.class_names,
                    format!("{:?} vs {:?}", old.class_names, file.class_names),
                ),
                (
                    "metadata",
                    old.metadata == file.metadata,
                    format!("{} vs {}", old.metadata, file.metadata),
                ),
            ] {
                if !same {
                    return Err(Error::Mismatch {
                        dir: dir.to_path_buf(),
                        what,
                        detail,
                    });
                }
            }
            state
        } else {
            None
        };

        tch::manual_seed(tc.seed as i64);
        let mut vs = nn::VarStore::new(device);
        let mut model = Crnn2d::new(&vs.root(), model_config)?;
        if let Some(b) = backend {
            model.set_backend(b)?;
        }
        let mut adam = KerasAdam::new(&vs, tc);
        let mut history = Vec::new();
        let (mut best_val_loss, mut best_epoch, mut wait, mut start_epoch) =
            (f64::INFINITY, 0usize, 0usize, 0usize);
        if let Some(state) = &resume {
            load_variables(&mut vs, &paths.weights(state.slot))?;
            let adam_path = paths.adam(state.slot);
            let tensors = Tensor::read_safetensors(&adam_path).map_err(|e| Error::ModelFile {
                path: adam_path.clone(),
                reason: e.to_string(),
            })?;
            adam.load_state(&tensors, state.adam_step)?;
            history = read_history(dir)?;
            history.truncate(state.epoch);
            best_val_loss = state.best_val_loss.unwrap_or(f64::INFINITY);
            best_epoch = state.best_epoch;
            wait = state.wait;
            start_epoch = state.epoch;
            file.best_epoch = best_epoch;
            file.best_val_loss = state.best_val_loss;
            file.epochs_completed = start_epoch;
        } else {
            std::fs::create_dir_all(&paths.dir).map_err(crate::error::io_err(&paths.dir))?;
            write_json(&config_path, &file)?;
        }

        let mut stopped_early = wait >= tc.patience && start_epoch > 0;
        let mut interrupted = false;
        let mut epoch = start_epoch;
        while epoch < tc.max_epochs && !stopped_early {
            let t0 = Instant::now();
            let seed = epoch_seed(tc.seed, epoch);
            tch::manual_seed(seed as i64);
            let mut order: Vec<usize> = (0..train.len()).collect();
            order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            let n_batches = order.len().div_ceil(tc.batch_size);
            let (mut loss_sum, mut correct, mut seen) = (0f64, 0i64, 0usize);
            for_each_batch(train, &order, tc.batch_size, |i, batch| {
                let n = batch.labels.len();
                let xs = batch_tensor(&batch.data, n, n_mels, frames, device)?;
                let ys = Tensor::f_from_slice(&batch.labels)?.f_to_device(device)?;
                // Dropout masks of the fused CPU kernels: a function of (seed, epoch, batch).
                let key = epoch_seed(seed, i);
                let step = train_step(&model, &mut adam, &xs, &ys, key)?;
                let l = step.loss;
                if !l.is_finite() {
                    return Err(Error::Diverged {
                        epoch: epoch + 1,
                        batch: i + 1,
                        loss: l,
                        dir: dir.to_path_buf(),
                    });
                }
                loss_sum += l * n as f64;
                correct += step
                    .probabilities
                    .f_argmax(-1, false)?
                    .f_eq_tensor(&ys)?
                    .f_sum(Kind::Int64)?
                    .f_int64_value(&[])?;
                seen += n;
                observer.batch(epoch + 1, i + 1, n_batches);
                Ok(())
            })?;
            let (val_loss, val_acc) = evaluate(&model, val, tc.eval_batch_size, device)?;
            if !val_loss.is_finite() {
                return Err(Error::Diverged {
                    epoch: epoch + 1,
                    batch: 0,
                    loss: val_loss,
                    dir: dir.to_path_buf(),
                });
            }
            let record = EpochRecord {
                epoch: epoch + 1,
                loss: loss_sum / seen as f64,
                acc: correct as f64 / seen as f64,
                val_loss,
                val_acc,
                seconds: t0.elapsed().as_secs_f64(),
            };
            epoch += 1;
            let improved = val_loss < best_val_loss;
            if improved {
                best_val_loss = val_loss;
                best_epoch = epoch;
                wait = 0;
                save_tensors(&dir.join(WEIGHTS_FILE), &named_variables(&vs))?;
            } else {
                wait += 1;
            }
            stopped_early = wait >= tc.patience;
            history.push(record);
            // Checkpoint: slot, then history, then the commit point, then config.json.
            let slot = epoch % 2;
            save_tensors(&paths.weights(slot), &named_variables(&vs))?;
            save_tensors(&paths.adam(slot), &adam.state())?;
            write_history(&dir.join(HISTORY_FILE), &history)?;
            let state = ResumeState {
                epoch,
                slot,
                adam_step: adam.steps(),
                best_val_loss: Some(best_val_loss),
                best_epoch,
                wait,
            };
            write_json(&paths.state, &state)?;
            file.epochs_completed = epoch;
            file.best_epoch = best_epoch;
            file.best_val_loss = Some(best_val_loss);
            write_json(&config_path, &file)?;
            if observer.epoch(&record, improved) == Control::Interrupt {
                interrupted = true;
                break;
            }
        }
        if !interrupted {
            file.status = RunStatus::Finished;
            write_json(&config_path, &file)?;
            let _ = std::fs::remove_dir_all(&paths.dir);
        }
        Ok(TrainOutcome {
            history,
            best_epoch,
            best_val_loss,
            stopped_early,
            interrupted,
        })
    }
}

/// Keras CCE loss and accuracy of `model` on `source` in eval mode.
pub fn evaluate(
    model: &Crnn2d,
    source: &dyn SliceSource,
    batch_size: usize,
    device: Device,
) -> Result<(f64, f64)> {
    let c = model.config();
    check_source(
        "evaluation data",
        source,
        c.n_mels,
        c.slice_frames,
        Some(c.n_classes),
    )?;
    let order: Vec<usize> = (0..source.len()).collect();
    let (mut loss_sum, mut correct) = (0f64, 0i64);
    tch::no_grad(|| {
        for_each_batch(source, &order, batch_size, |_, batch| {
            let n = batch.labels.len();
            let xs = batch_tensor(&batch.data, n, c.n_mels, c.slice_frames, device)?;
            let ys = Tensor::f_from_slice(&batch.labels)?.f_to_device(device)?;
            let probs = model.f_probabilities_t(&xs, false)?;
            loss_sum += keras_categorical_crossentropy(&probs, &ys, c.n_classes as i64)
                .f_double_value(&[])?
                * n as f64;
            correct += probs
                .f_argmax(-1, false)?
                .f_eq_tensor(&ys)?
                .f_sum(Kind::Int64)?
                .f_int64_value(&[])?;
            Ok(())
        })
    })?;
    let n = source.len() as f64;
    Ok((loss_sum / n, correct as f64 / n))
}
