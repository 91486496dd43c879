//! [`reselect`]: another monitor's choice of epoch, made after training.
//!
//! The monitor never changes the training trajectory. It only decides which epoch's weights
//! are kept and when training stops. So a finished run that kept every epoch's weights
//! ([`FitParams::keep_epoch_weights`](crate::FitParams::keep_epoch_weights)) holds what a run
//! with another monitor would have trained, as long as that run would have stopped no later.
//! [`reselect`] replays the other monitor's rule over the recorded history and writes the
//! model directory that run would have written. On CPU it is bit-identical to training again.

use std::path::Path;

use crate::checkpoint::{
    CONFIG_FILE, ModelFile, RunStatus, WEIGHTS_FILE, epoch_weights_path, read_history, read_json,
    write_atomic, write_history, write_json,
};
use crate::error::io_err;
use crate::{EpochRecord, Error, Monitor, Result, TrainOutcome};

/// What `monitor` keeps and where it stops over `history`, with `patience` and
/// `max_epochs` as in training: `(kept epoch, epochs it trains, best score)`, or `None` when
/// it would train past the end of `history` (that history ended earlier than `max_epochs`).
pub fn replay_monitor(
    monitor: Monitor,
    history: &[EpochRecord],
    patience: usize,
    max_epochs: usize,
) -> Option<(usize, usize, f64)> {
    let (mut best, mut best_epoch, mut wait) = (monitor.initial(), 0usize, 0usize);
    for r in history.iter().take(max_epochs) {
        let s = monitor.score(r);
        if monitor.improves(s, best) {
            (best, best_epoch, wait) = (s, r.epoch, 0);
        } else {
            wait += 1;
        }
        if monitor != Monitor::Last && wait >= patience {
            return Some((best_epoch, r.epoch, best));
        }
    }
    (history.len() >= max_epochs).then_some((best_epoch, max_epochs, best))
}

/// The trainer's early-stopping rule after `history`: a monitor other than
/// [`Monitor::Last`] went `patience` epochs without a strictly better score.
fn patience_used_up(monitor: Monitor, history: &[EpochRecord], patience: usize) -> bool {
    let (mut best, mut wait) = (monitor.initial(), 0usize);
    for r in history {
        let s = monitor.score(r);
        if monitor.improves(s, best) {
            (best, wait) = (s, 0);
        } else {
            wait += 1;
        }
    }
    monitor != Monitor::Last && wait >= patience
}

/// What training a finished run reported, read back from its model directory (`config.json`
/// and `history.csv`), for a caller that finds the run already trained
/// ([`Error::AlreadyTrained`]): the kept epoch and its scores, and whether early stopping
/// ended it, as recorded when it finished (in files written before that was recorded, the
/// monitor's rule replayed over the history, [`replay_monitor`]). An unfinished run is an
/// error.
pub fn recorded_outcome(dir: &Path) -> Result<TrainOutcome> {
    let file: ModelFile = read_json(&dir.join(CONFIG_FILE))?;
    if file.status != RunStatus::Finished {
        return Err(Error::UnfinishedRun {
            dir: dir.to_path_buf(),
            epoch: file.epochs_completed,
        });
    }
    let history = read_history(dir)?;
    let tc = &file.train;
    let kept = file
        .best_epoch
        .checked_sub(1)
        .and_then(|i| history.get(i))
        .ok_or_else(|| Error::ModelFile {
            path: dir.join(CONFIG_FILE),
            reason: format!(
                "best epoch {} is not in the {} epochs of history.csv",
                file.best_epoch,
                history.len()
            ),
        })?;
    // Files written before it was recorded: the trainer's rule replayed over the history.
    let stopped_early = file
        .stopped_early
        .unwrap_or_else(|| patience_used_up(tc.monitor, &history, tc.patience));
    Ok(TrainOutcome {
        best_epoch: file.best_epoch,
        best_val_loss: file.best_val_loss.unwrap_or(kept.val_loss),
        monitor: tc.monitor,
        best_score: tc.monitor.score(kept),
        stopped_early,
        interrupted: false,
        history,
    })
}

/// Writes into `dst` the model directory that training `src`'s run with `monitor` would have
/// written, from `src`'s recorded history and kept epoch weights, without training again.
/// `src` must be a finished run trained with
/// [`keep_epoch_weights`](crate::FitParams::keep_epoch_weights). Refused, with the reason,
/// when `dst` already holds a run, or when `src` stopped early at an epoch where `monitor`
/// would still have trained on.
pub fn reselect(src: &Path, dst: &Path, monitor: Monitor) -> Result<TrainOutcome> {
    let config_path = src.join(CONFIG_FILE);
    let file: ModelFile = read_json(&config_path)?;
    let refuse = |reason: String| Error::ModelFile {
        path: src.to_path_buf(),
        reason,
    };
    if file.status != RunStatus::Finished {
        return Err(refuse(
            "the run is not finished; finish it before reselecting".into(),
        ));
    }
    if dst.join(CONFIG_FILE).exists() {
        return Err(Error::AlreadyTrained {
            dir: dst.to_path_buf(),
        });
    }
    let history = read_history(src)?;
    let tc = &file.train;
    let (best_epoch, epochs, best_score) =
        replay_monitor(monitor, &history, tc.patience, tc.max_epochs).ok_or_else(|| {
            refuse(format!(
                "it stopped early after {} epochs (monitor {}), but monitor {monitor} would train on: only training again can tell",
                history.len(),
                tc.monitor
            ))
        })?;
    if best_epoch == 0 {
        return Err(refuse(format!("monitor {monitor} kept no epoch")));
    }
    let weights = epoch_weights_path(src, best_epoch);
    if !weights.is_file() {
        return Err(refuse(format!(
            "{} is missing: reselecting needs the run trained with keep_epoch_weights",
            weights.display()
        )));
    }
    let history: Vec<EpochRecord> = history.into_iter().take(epochs).collect();
    let kept = history[best_epoch - 1];
    std::fs::create_dir_all(dst).map_err(io_err(dst))?;
    write_atomic(&dst.join(WEIGHTS_FILE), |tmp| {
        std::fs::copy(&weights, tmp)
            .map(|_| ())
            .map_err(io_err(tmp))
    })?;
    write_history(&dst.join(crate::HISTORY_FILE), &history)?;
    let stopped_early = patience_used_up(monitor, &history, tc.patience);
    let mut out = file.clone();
    out.train.monitor = monitor;
    out.stopped_early = Some(stopped_early);
    out.epochs_completed = epochs;
    out.best_epoch = best_epoch;
    out.best_val_loss = Some(kept.val_loss);
    write_json(&dst.join(CONFIG_FILE), &out)?;
    Ok(TrainOutcome {
        best_epoch,
        best_val_loss: kept.val_loss,
        monitor,
        best_score,
        stopped_early,
        interrupted: false,
        history,
    })
}
