//! [`Trainer`]: the paper's training loop, checkpointed every epoch and resumable exactly.

use std::path::Path;

use crate::checkpoint::{
    CONFIG_FILE, EpochRecord, ModelFile, ResumePaths, ResumeState, RunStatus, read_history,
    read_json, write_json,
};
use crate::coord::Ranks;
use crate::dist_train::Start;
pub use crate::fit_params::FitParams;
use crate::run::Run;
pub use crate::validation::evaluate;
use crate::{Error, Result, TrainConfig};

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
pub(crate) fn epoch_seed(seed: u64, epoch: usize) -> u64 {
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
    pub(crate) fn open_run(
        &self,
        dir: &Path,
        existing: ExistingRun,
        file: &ModelFile,
        spec: &dyn crate::NetworkSpec,
    ) -> Result<Start> {
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
                spec.matches_json(&old.model),
                format!("{} vs {}", old.model, file.model),
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

    /// Trains the network of [`FitParams::model`] (any [`NetworkSpec`](crate::NetworkSpec):
    /// the five built-in architectures of a [`CrnnConfig`](crate::CrnnConfig), or another
    /// project's) as `params` say (checked first: [`FitParams::check`]), with the
    /// augmentation of [`TrainConfig::augment`], reporting to `observer`. With a [`group`](FitParams::group),
    /// every rank of it calls `fit` and they train one model together (the crate README
    /// says how); a rank that fails tells the others ([`Ranks::guard`]).
    ///
    /// The loop: `Run::start` (rank 0's run directory shared, the network built, a resume
    /// checkpoint restored, rank 0's variables on every rank), then per epoch
    /// `Run::train_epoch`, `Run::validate`, `Run::keep` (the monitor and the
    /// checkpoint) and a common decision to stop, then `Run::finish`.
    pub fn fit(
        &self,
        params: FitParams<'_>,
        observer: &mut dyn TrainObserver,
    ) -> Result<TrainOutcome> {
        let ranks = Ranks::of(params.group);
        ranks.guard(|| {
            self.config.validate()?;
            params.check()?;
            self.config.augment.check_source(params.train)?;
            let mut run = Run::start(self, ranks, &params)?;
            while run.wants_another_epoch() {
                let train = run.train_epoch(params.train, observer)?;
                let record = run.validate(params.val, train)?;
                let improved = run.keep(record)?;
                let asked = observer.epoch(&record, improved) == Control::Interrupt;
                // Also the barrier after rank 0's checkpoint: all stop if any rank is told to.
                if ranks.any(asked)? {
                    run.interrupted = true;
                    break;
                }
            }
            run.finish()
        })
    }
}
