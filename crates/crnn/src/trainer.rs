//! [`Trainer`]: the paper's training loop, checkpointed every epoch and resumable exactly.

use std::path::Path;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use tch::{Device, Kind, Tensor, nn};

use crate::adam::KerasAdam;
use crate::checkpoint::{
    CONFIG_FILE, EpochRecord, HISTORY_FILE, ModelFile, ResumePaths, ResumeState, RunStatus,
    WEIGHTS_FILE, epoch_weights_path, load_variables, named_variables, read_history, read_json,
    save_tensors, write_history, write_json,
};
use crate::data::{SliceSource, batch_tensor, check_source, for_each_batch};
use crate::dist_train::{self, Start};
pub use crate::fit_params::FitParams;
use crate::model::keras_categorical_crossentropy;
use crate::{Crnn2d, Error, Result, TrainConfig, train_step, train_step_distributed};

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
    /// Epoch whose weights are the result (`weights.safetensors`), picked by the monitor.
    pub best_epoch: usize,
    /// Its validation loss.
    pub best_val_loss: f64,
    /// The monitor that picked it ([`TrainConfig::monitor`]).
    pub monitor: crate::Monitor,
    /// Its monitored score (for [`Monitor::Last`](crate::Monitor::Last), the epoch).
    pub best_score: f64,
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

/// The training loop of `src/trainer.py`: batch 16, Adam (Keras), per-epoch shuffle,
/// validation loss, accuracy and weighted F1 each epoch in eval mode, best weights kept on a
/// strictly better monitored score ([`TrainConfig::monitor`]: strictly lower validation loss
/// by default, as the paper), early stopping after `patience` epochs without one, at most
/// `max_epochs`.
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

    /// Reads what the model directory holds (rank 0 only in a group): nothing yet (a new run,
    /// whose `config.json` it writes) or a resumable run (its state and history), or refuses.
    fn open_run(&self, dir: &Path, existing: ExistingRun, file: &ModelFile) -> Result<Start> {
        let paths = ResumePaths::new(dir);
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.exists() {
            std::fs::create_dir_all(&paths.dir).map_err(crate::error::io_err(&paths.dir))?;
            write_json(&config_path, file)?;
            return Ok(Start::default());
        }
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
        let mut history = Vec::new();
        if let Some(state) = &state {
            history = read_history(dir)?;
            history.truncate(state.epoch);
        }
        Ok(Start {
            resume: state,
            history,
        })
    }

    /// Trains a [`Crnn2d`] as `params` say (checked first: [`FitParams::check`]), reporting
    /// to `observer`. With a [`group`](FitParams::group), every rank of it calls `fit` and
    /// they train one model together (the crate README says how).
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
            group,
            keep_epoch_weights,
        } = params;
        let (n_mels, frames) = (model_config.n_mels, model_config.slice_frames);
        // Only rank 0 reads or writes the model directory.
        let main = group.is_none_or(|g| g.is_main());
        let (rank, world) = group.map_or((0, 1), |g| (g.rank(), g.world_size()));

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
        let start = if main {
            self.open_run(dir, existing, &file)
        } else {
            Ok(Start::default())
        };
        let Start {
            resume,
            mut history,
        } = match group {
            Some(g) => dist_train::share_start(g, dir, start)?,
            None => start?,
        };

        tch::manual_seed(tc.seed as i64);
        let mut vs = nn::VarStore::new(device);
        let mut model = Crnn2d::new(&vs.root(), model_config)?;
        if let Some(b) = backend {
            model.set_backend(b)?;
        }
        let mut adam = KerasAdam::new(&vs, tc);
        let monitor = tc.monitor;
        let (mut best_val_loss, mut best_epoch, mut wait, mut start_epoch) =
            (f64::INFINITY, 0usize, 0usize, 0usize);
        let mut best_score = monitor.initial();
        if let Some(state) = &resume {
            if main {
                load_variables(&mut vs, &paths.weights(state.slot))?;
                let adam_path = paths.adam(state.slot);
                let tensors =
                    Tensor::read_safetensors(&adam_path).map_err(|e| Error::ModelFile {
                        path: adam_path.clone(),
                        reason: e.to_string(),
                    })?;
                adam.load_state(&tensors, state.adam_step)?;
            } else {
                adam.set_steps(state.adam_step);
            }
            best_val_loss = state.best_val_loss.unwrap_or(f64::INFINITY);
            // States written before monitors existed monitored the validation loss.
            best_score = state
                .best_score
                .or(state.best_val_loss)
                .unwrap_or(monitor.initial());
            best_epoch = state.best_epoch;
            wait = state.wait;
            start_epoch = state.epoch;
            file.best_epoch = best_epoch;
            file.best_val_loss = state.best_val_loss;
            file.epochs_completed = start_epoch;
        }
        if let Some(g) = group {
            // Parameters, buffers and Adam's moments from rank 0 before the first step.
            dist_train::broadcast_variables(g, &vs, None)?;
            g.broadcast(&mut adam.moments(), 0)?;
        }

        let stops = monitor != crate::Monitor::Last;
        let mut stopped_early = stops && wait >= tc.patience && start_epoch > 0;
        let mut interrupted = false;
        let mut epoch = start_epoch;
        while epoch < tc.max_epochs && !stopped_early {
            let t0 = Instant::now();
            let seed = epoch_seed(tc.seed, epoch);
            // Each rank its own dropout draws (libtorch's generator and the fused keys).
            let rank_seed = |s: u64| match group {
                Some(_) => epoch_seed(s, (1 << 32) + rank),
                None => s,
            };
            tch::manual_seed(rank_seed(seed) as i64);
            let mut order: Vec<usize> = (0..train.len()).collect();
            order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            if group.is_some() {
                order = dist_train::distributed_indices(&order, rank, world);
            }
            let n_batches = order.len().div_ceil(tc.batch_size);
            let (mut loss_sum, mut correct, mut seen) = (0f64, 0i64, 0usize);
            for_each_batch(train, &order, tc.batch_size, |i, batch| {
                let n = batch.labels.len();
                let xs = batch_tensor(&batch.data, n, n_mels, frames, device)?;
                let ys = Tensor::f_from_slice(&batch.labels)?.f_to_device(device)?;
                // Dropout masks of the fused CPU kernels: a function of (seed, epoch, batch).
                let key = rank_seed(epoch_seed(seed, i));
                let step = match group {
                    Some(g) => train_step_distributed(&model, &mut adam, &xs, &ys, key, g)?,
                    None => train_step(&model, &mut adam, &xs, &ys, key)?,
                };
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
            let (val_loss, val_acc, val_f1) = match group {
                None => {
                    let order: Vec<usize> = (0..val.len()).collect();
                    let sums = evaluate_sums(&model, val, &order, tc.eval_batch_size, device)?;
                    let n = val.len() as f64;
                    (sums.loss / n, sums.correct as f64 / n, sums.weighted_f1())
                }
                Some(g) => {
                    // BatchNorm moving averages from rank 0 (DDP's broadcast_buffers), then
                    // each rank validates its share and the sums are added up.
                    dist_train::broadcast_variables(g, &vs, Some(false))?;
                    let mine: Vec<usize> = (rank..val.len()).step_by(world).collect();
                    let v = evaluate_sums(&model, val, &mine, tc.eval_batch_size, device)?;
                    let mut sums = vec![
                        v.loss,
                        v.correct as f64,
                        loss_sum,
                        correct as f64,
                        seen as f64,
                    ];
                    sums.extend(v.classes.iter().map(|&c| c as f64));
                    dist_train::all_reduce_f64(g, &mut sums)?;
                    let n = val.len() as f64;
                    (loss_sum, correct, seen) = (sums[2], sums[3] as i64, sums[4] as usize);
                    let classes = ValSums {
                        loss: 0.0,
                        correct: 0,
                        classes: sums[5..].iter().map(|&c| c as u64).collect(),
                    };
                    (sums[0] / n, sums[1] / n, classes.weighted_f1())
                }
            };
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
                val_f1,
                seconds: t0.elapsed().as_secs_f64(),
            };
            epoch += 1;
            let score = monitor.score(&record);
            let improved = monitor.improves(score, best_score);
            if improved {
                best_score = score;
                best_val_loss = val_loss;
                best_epoch = epoch;
                wait = 0;
                if main {
                    save_tensors(&dir.join(WEIGHTS_FILE), &named_variables(&vs))?;
                }
            } else {
                wait += 1;
            }
            stopped_early = stops && wait >= tc.patience;
            history.push(record);
            if main {
                // Checkpoint: slot, then history, then the commit point, then config.json.
                let slot = epoch % 2;
                save_tensors(&paths.weights(slot), &named_variables(&vs))?;
                if keep_epoch_weights {
                    save_tensors(&epoch_weights_path(dir, epoch), &named_variables(&vs))?;
                }
                save_tensors(&paths.adam(slot), &adam.state())?;
                write_history(&dir.join(HISTORY_FILE), &history)?;
                let state = ResumeState {
                    epoch,
                    slot,
                    adam_step: adam.steps(),
                    best_val_loss: Some(best_val_loss),
                    best_epoch,
                    wait,
                    best_score: Some(best_score),
                };
                write_json(&paths.state, &state)?;
                file.epochs_completed = epoch;
                file.best_epoch = best_epoch;
                file.best_val_loss = Some(best_val_loss);
                write_json(&config_path, &file)?;
            }
            let mut stop = observer.epoch(&record, improved) == Control::Interrupt;
            if let Some(g) = group {
                // Also the barrier after rank 0's checkpoint: all stop if any rank is told to.
                let mut flag = [f64::from(u8::from(stop))];
                dist_train::all_reduce_f64(g, &mut flag)?;
                stop = flag[0] > 0.0;
            }
            if stop {
                interrupted = true;
                break;
            }
        }
        if !interrupted && main {
            file.status = RunStatus::Finished;
            write_json(&config_path, &file)?;
            let _ = std::fs::remove_dir_all(&paths.dir);
        }
        if let Some(g) = group {
            g.barrier()?;
        }
        Ok(TrainOutcome {
            history,
            best_epoch,
            best_val_loss,
            monitor,
            best_score,
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
    let order: Vec<usize> = (0..source.len()).collect();
    let sums = evaluate_sums(model, source, &order, batch_size, device)?;
    let n = source.len() as f64;
    Ok((sums.loss / n, sums.correct as f64 / n))
}

/// Sums over validation slices: loss, correct argmaxes, and per class the true positives,
/// predictions and true slices (`classes` = `[tp; C] ++ [predicted; C] ++ [true; C]`), which
/// add up across ranks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValSums {
    pub loss: f64,
    pub correct: i64,
    pub classes: Vec<u64>,
}

impl ValSums {
    /// scikit-learn's weighted-average F1 of the summed counts (F1 = 2 tp / (predicted +
    /// true), 0 where that is 0/0, weighted by the true count).
    pub fn weighted_f1(&self) -> f64 {
        let n = self.classes.len() / 3;
        let (tp, pred, truth) = (
            &self.classes[..n],
            &self.classes[n..2 * n],
            &self.classes[2 * n..],
        );
        let total: u64 = truth.iter().sum();
        if total == 0 {
            return f64::NAN;
        }
        let sum: f64 = (0..n)
            .map(|c| {
                let den = pred[c] + truth[c];
                let f1 = if den == 0 {
                    0.0
                } else {
                    2.0 * tp[c] as f64 / den as f64
                };
                f1 * truth[c] as f64
            })
            .sum();
        sum / total as f64
    }
}

/// Summed Keras CCE loss, count of correct argmaxes and per-class counts over the slices
/// `order` of `source`.
fn evaluate_sums(
    model: &Crnn2d,
    source: &dyn SliceSource,
    order: &[usize],
    batch_size: usize,
    device: Device,
) -> Result<ValSums> {
    let c = model.config();
    check_source(
        "evaluation data",
        source,
        c.n_mels,
        c.slice_frames,
        Some(c.n_classes),
    )?;
    let (mut loss_sum, mut correct) = (0f64, 0i64);
    let n_classes = c.n_classes;
    let mut classes = vec![0u64; 3 * n_classes];
    tch::no_grad(|| {
        for_each_batch(source, order, batch_size, |_, batch| {
            let n = batch.labels.len();
            let xs = batch_tensor(&batch.data, n, c.n_mels, c.slice_frames, device)?;
            let ys = Tensor::f_from_slice(&batch.labels)?.f_to_device(device)?;
            let probs = model.f_probabilities_t(&xs, false)?;
            loss_sum += keras_categorical_crossentropy(&probs, &ys, c.n_classes as i64)
                .f_double_value(&[])?
                * n as f64;
            let predicted =
                Vec::<i64>::try_from(probs.f_argmax(-1, false)?.f_to_device(Device::Cpu)?)?;
            for (&p, &t) in predicted.iter().zip(&batch.labels) {
                let (p, t) = (p as usize, t as usize);
                if p < n_classes && t < n_classes {
                    classes[t] += u64::from(p == t);
                    classes[n_classes + p] += 1;
                    classes[2 * n_classes + t] += 1;
                }
                correct += i64::from(p == t);
            }
            Ok(())
        })
    })?;
    Ok(ValSums {
        loss: loss_sum,
        correct,
        classes,
    })
}
