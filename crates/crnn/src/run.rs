//! [`Run`]: one call of [`Trainer::fit`](crate::Trainer::fit) between its start and its end:
//! the network and its optimiser, the monitor's state, and the checkpoint policy.

use std::path::Path;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use tch::{Device, Kind, Tensor, nn};

use crate::adam::KerasAdam;
use crate::checkpoint::{
    CONFIG_FILE, EpochRecord, HISTORY_FILE, ModelFile, ResumePaths, ResumeState, RunStatus,
    WEIGHTS_FILE, epoch_weights_path, load_variables, named_variables, save_tensors, write_history,
    write_json,
};
use crate::coord::Ranks;
use crate::data::{SliceSource, batch_tensor, for_each_batch_cropped};
use crate::trainer::epoch_seed;
use crate::validation::{ValSums, evaluate_sums};
use crate::{Error, FitParams, Monitor, Network, Result, TrainConfig, TrainOutcome, Trainer, step};

/// The monitor's state: the best score so far, its epoch and validation loss, and the epochs
/// waited since.
#[derive(Debug, Clone, Copy)]
struct Best {
    score: f64,
    val_loss: f64,
    epoch: usize,
    wait: usize,
}

/// Training sums of one epoch on this rank: loss times slices, correct argmaxes, slices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrainSums {
    loss: f64,
    correct: i64,
    seen: usize,
    seconds_from: Instant,
}

/// The targets `[batch, n_classes]` of a training batch: one-hot, or what the augmentation
/// made of them (soft under mixup) after augmenting the batch's data in place with the draws
/// of `key`.
fn batch_targets(
    augment: &crate::Augment,
    batch: &mut crate::data::Batch,
    shape: (usize, usize),
    n_classes: usize,
    key: u64,
    device: Device,
) -> Result<Tensor> {
    let n = batch.labels.len() as i64;
    let targets = if augment.changes_batches() {
        augment.apply(&mut batch.data, &batch.labels, shape, n_classes, key)?
    } else {
        crate::augment::one_hot(&batch.labels, n_classes)?
    };
    Ok(Tensor::f_from_slice(&targets)?
        .f_view([n, n_classes as i64])?
        .f_to_device(device)?)
}

/// A run in progress (see [`Trainer::fit`] for the order of the calls).
pub(crate) struct Run<'a> {
    tc: &'a TrainConfig,
    ranks: Ranks<'a>,
    dir: &'a Path,
    device: Device,
    keep_epoch_weights: bool,
    paths: ResumePaths,
    file: ModelFile,
    vs: nn::VarStore,
    model: Box<dyn Network>,
    adam: KerasAdam,
    history: Vec<EpochRecord>,
    best: Best,
    /// Epochs completed.
    epoch: usize,
    stopped_early: bool,
    /// An observer stopped the run; it stays resumable.
    pub interrupted: bool,
}

impl<'a> Run<'a> {
    /// Rank 0 opens the model directory ([`Trainer::open_run`]) and every rank gets its
    /// start; the network is built from the run's seed on `params.device` with the backend
    /// and conv algorithm asked for, a resume checkpoint is restored on rank 0, and rank 0's
    /// variables and Adam moments go to every rank.
    pub fn start(trainer: &'a Trainer, ranks: Ranks<'a>, params: &FitParams<'a>) -> Result<Self> {
        let tc = &trainer.config;
        let file = ModelFile {
            format_version: 1,
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            model: params.model.to_json()?,
            class_names: params.class_names.to_vec(),
            train: tc.clone(),
            metadata: params.metadata.clone(),
            status: RunStatus::Training,
            epochs_completed: 0,
            best_epoch: 0,
            best_val_loss: None,
            stopped_early: None,
        };
        let local = if ranks.is_main() {
            trainer.open_run(params.dir, params.existing, &file, params.model)
        } else {
            Ok(Default::default())
        };
        let start = ranks.share_start(params.dir, local)?;
        tch::manual_seed(tc.seed as i64);
        let vs = nn::VarStore::new(params.device);
        let mut model = params.model.build(&vs.root())?;
        if let Some(b) = params.backend {
            model.set_backend(b)?;
        }
        model.set_conv_algorithm(params.conv_algorithm);
        let adam = KerasAdam::new(&vs, tc);
        let mut run = Run {
            tc,
            ranks,
            dir: params.dir,
            device: params.device,
            keep_epoch_weights: params.keep_epoch_weights,
            paths: ResumePaths::new(params.dir),
            file,
            vs,
            model,
            adam,
            history: start.history,
            best: Best {
                score: tc.monitor.initial(),
                val_loss: f64::INFINITY,
                epoch: 0,
                wait: 0,
            },
            epoch: 0,
            stopped_early: false,
            interrupted: false,
        };
        if let Some(state) = &start.resume {
            run.restore(state)?;
        }
        ranks.sync_model(&run.vs, &run.adam)?;
        Ok(run)
    }

    /// Continues from a resume checkpoint: rank 0 loads the slot's weights and Adam moments
    /// (the others get them by [`Ranks::sync_model`]), every rank takes the counters.
    fn restore(&mut self, state: &ResumeState) -> Result<()> {
        if self.ranks.is_main() {
            load_variables(&mut self.vs, &self.paths.weights(state.slot))?;
            let adam_path = self.paths.adam(state.slot);
            let tensors = Tensor::read_safetensors(&adam_path).map_err(|e| Error::ModelFile {
                path: adam_path.clone(),
                reason: e.to_string(),
            })?;
            self.adam.load_state(&tensors, state.adam_step)?;
        } else {
            self.adam.set_steps(state.adam_step);
        }
        // States written before monitors existed monitored the validation loss.
        self.best = Best {
            score: state
                .best_score
                .or(state.best_val_loss)
                .unwrap_or(self.tc.monitor.initial()),
            val_loss: state.best_val_loss.unwrap_or(f64::INFINITY),
            epoch: state.best_epoch,
            wait: state.wait,
        };
        self.epoch = state.epoch;
        self.file.best_epoch = state.best_epoch;
        self.file.best_val_loss = state.best_val_loss;
        self.file.epochs_completed = state.epoch;
        self.stopped_early = self.patience_used_up() && state.epoch > 0;
        Ok(())
    }

    fn patience_used_up(&self) -> bool {
        self.tc.monitor != Monitor::Last && self.best.wait >= self.tc.patience
    }

    /// Whether another epoch runs: the epoch limit not reached, early stopping not hit.
    pub fn wants_another_epoch(&self) -> bool {
        self.epoch < self.tc.max_epochs && !self.stopped_early
    }

    /// One epoch of training on this rank's share, shuffled and seeded from `(seed, epoch)`
    /// (and the rank), reporting batches to `observer`.
    pub fn train_epoch(
        &mut self,
        train: &dyn SliceSource,
        observer: &mut dyn crate::TrainObserver,
    ) -> Result<TrainSums> {
        let t0 = Instant::now();
        let (tc, ranks, epoch, device) = (self.tc, self.ranks, self.epoch, self.device);
        let (n_mels, frames) = self.model.input_shape();
        let n_classes = self.model.n_classes();
        let seed = epoch_seed(tc.seed, epoch);
        let crops = tc.augment.crop_starts(train, seed)?;
        // Each rank its own dropout draws (libtorch's generator and the fused keys).
        tch::manual_seed(ranks.rank_seed(seed) as i64);
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        let order = ranks.share(order);
        let n_batches = order.len().div_ceil(tc.batch_size);
        let mut sums = TrainSums {
            loss: 0.0,
            correct: 0,
            seen: 0,
            seconds_from: t0,
        };
        let (model, adam, dir) = (&*self.model, &mut self.adam, self.dir);
        let augment = &tc.augment;
        let batches = for_each_batch_cropped(
            train,
            &order,
            tc.batch_size,
            crops.as_deref(),
            |i, batch| {
                let n = batch.labels.len();
                // Dropout masks of the fused CPU kernels and the augmentation's draws: a function
                // of (seed, epoch, batch, rank).
                let key = ranks.rank_seed(epoch_seed(seed, i));
                let targets =
                    batch_targets(augment, batch, (n_mels, frames), n_classes, key, device)?;
                let xs = batch_tensor(&batch.data, n, n_mels, frames, device)?;
                // Accuracy against the dominant class of each (mixed) target, as Keras.
                let ys = targets.f_argmax(-1, false)?;
                let out = step::step(model, adam, &xs, &targets, key, ranks)?;
                if !out.loss.is_finite() {
                    return Err(Error::Diverged {
                        epoch: epoch + 1,
                        batch: i + 1,
                        loss: out.loss,
                        dir: dir.to_path_buf(),
                    });
                }
                sums.loss += out.loss * n as f64;
                sums.correct += out
                    .probabilities
                    .f_argmax(-1, false)?
                    .f_eq_tensor(&ys)?
                    .f_sum(Kind::Int64)?
                    .f_int64_value(&[])?;
                sums.seen += n;
                observer.batch(epoch + 1, i + 1, n_batches);
                Ok(())
            },
        );
        batches?;
        Ok(sums)
    }

    /// Validation of the epoch in eval mode: rank 0's BatchNorm moving averages on every
    /// rank, each rank its share of the slices, the counts (and the training sums) added up
    /// over the ranks; the epoch's record.
    pub fn validate(&mut self, val: &dyn SliceSource, train: TrainSums) -> Result<EpochRecord> {
        let ranks = self.ranks;
        ranks.sync_buffers(&self.vs)?;
        let mine = ranks.validation_share(val.len());
        let v = evaluate_sums(
            &self.model,
            val,
            &mine,
            self.tc.eval_batch_size,
            self.device,
        )?;
        let mut sums = vec![
            v.loss,
            v.correct as f64,
            train.loss,
            train.correct as f64,
            train.seen as f64,
        ];
        sums.extend(v.classes.iter().map(|&c| c as f64));
        ranks.sum(&mut sums)?;
        let n = val.len() as f64;
        let classes = ValSums {
            loss: 0.0,
            correct: 0,
            classes: sums[5..].iter().map(|&c| c as u64).collect(),
        };
        let (val_loss, val_acc) = (sums[0] / n, sums[1] / n);
        if !val_loss.is_finite() {
            return Err(Error::Diverged {
                epoch: self.epoch + 1,
                batch: 0,
                loss: val_loss,
                dir: self.dir.to_path_buf(),
            });
        }
        let (loss_sum, correct, seen) = (sums[2], sums[3] as i64, sums[4] as usize);
        Ok(EpochRecord {
            epoch: self.epoch + 1,
            loss: loss_sum / seen as f64,
            acc: correct as f64 / seen as f64,
            val_loss,
            val_acc,
            val_f1: classes.weighted_f1(),
            seconds: train.seconds_from.elapsed().as_secs_f64(),
        })
    }

    /// The monitor and the checkpoint policy after an epoch: a strictly better score keeps
    /// this epoch's weights (`weights.safetensors`), otherwise the wait grows; early stopping
    /// once it reaches the patience. Then rank 0 checkpoints ([`checkpoint`](Self::checkpoint)).
    /// Returns whether the epoch improved.
    pub fn keep(&mut self, record: EpochRecord) -> Result<bool> {
        self.epoch += 1;
        let monitor = self.tc.monitor;
        let score = monitor.score(&record);
        let improved = monitor.improves(score, self.best.score);
        if improved {
            self.best = Best {
                score,
                val_loss: record.val_loss,
                epoch: self.epoch,
                wait: 0,
            };
            if self.ranks.is_main() {
                save_tensors(&self.dir.join(WEIGHTS_FILE), &named_variables(&self.vs))?;
            }
        } else {
            self.best.wait += 1;
        }
        self.stopped_early = self.patience_used_up();
        self.history.push(record);
        if self.ranks.is_main() {
            self.checkpoint()?;
        }
        Ok(improved)
    }

    /// Rank 0's checkpoint of the epoch, in commit order: the slot's weights (and the kept
    /// epoch's, when asked), Adam's moments, the history, the commit point `state.json`, then
    /// `config.json`. A run killed anywhere in it resumes from the last committed epoch.
    fn checkpoint(&mut self) -> Result<()> {
        let (dir, epoch) = (self.dir, self.epoch);
        let slot = epoch % 2;
        save_tensors(&self.paths.weights(slot), &named_variables(&self.vs))?;
        if self.keep_epoch_weights {
            save_tensors(&epoch_weights_path(dir, epoch), &named_variables(&self.vs))?;
        }
        save_tensors(&self.paths.adam(slot), &self.adam.state())?;
        write_history(&dir.join(HISTORY_FILE), &self.history)?;
        let state = ResumeState {
            epoch,
            slot,
            adam_step: self.adam.steps(),
            best_val_loss: Some(self.best.val_loss),
            best_epoch: self.best.epoch,
            wait: self.best.wait,
            best_score: Some(self.best.score),
        };
        write_json(&self.paths.state, &state)?;
        self.file.epochs_completed = epoch;
        self.file.best_epoch = self.best.epoch;
        self.file.best_val_loss = Some(self.best.val_loss);
        write_json(&dir.join(CONFIG_FILE), &self.file)
    }

    /// The end: unless interrupted, rank 0 marks the run finished (with whether early
    /// stopping ended it) and removes the resume checkpoint; then every rank waits for the
    /// others.
    pub fn finish(mut self) -> Result<TrainOutcome> {
        if !self.interrupted && self.ranks.is_main() {
            self.file.status = RunStatus::Finished;
            self.file.stopped_early = Some(self.stopped_early);
            write_json(&self.dir.join(CONFIG_FILE), &self.file)?;
            let _ = std::fs::remove_dir_all(&self.paths.dir);
        }
        self.ranks.barrier()?;
        Ok(TrainOutcome {
            history: self.history,
            best_epoch: self.best.epoch,
            best_val_loss: self.best.val_loss,
            monitor: self.tc.monitor,
            best_score: self.best.score,
            stopped_early: self.stopped_early,
            interrupted: self.interrupted,
        })
    }
}
