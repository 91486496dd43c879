//! Training progress of one run: a bar on a terminal, log lines when stderr is a file.

use std::time::Instant;

use crnn::{Control, EpochRecord, TrainObserver};
use indicatif::ProgressBar;

/// Epoch progress for one run: a bar on a terminal; when stderr is not one (a log file), a
/// line at most every [`LOG_EVERY`] with the batches done, the speed and the epoch's ETA.
pub struct Progress {
    /// The bar (hidden when stderr is not a terminal).
    pub bar: ProgressBar,
    label: String,
    batch_size: usize,
    log_lines: bool,
    epoch_start: Instant,
    last_line: Instant,
}

/// Longest silence of the log-line progress.
pub const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(20);

impl Progress {
    /// Progress of the run `label`, `batch_size` slices per step.
    pub fn new(bar: ProgressBar, label: String, batch_size: usize) -> Self {
        use std::io::IsTerminal;
        Self {
            bar,
            label,
            batch_size,
            log_lines: !std::io::stderr().is_terminal(),
            epoch_start: Instant::now(),
            last_line: Instant::now(),
        }
    }
}

impl TrainObserver for Progress {
    fn batch(&mut self, epoch: usize, done: usize, total: usize) {
        if done == 1 {
            self.bar.set_length(total as u64);
            self.bar.set_position(0);
            self.bar
                .set_message(format!("{} epoch {epoch}", self.label));
            self.epoch_start = Instant::now();
            self.last_line = self.epoch_start;
        }
        self.bar.set_position(done as u64);
        if self.log_lines && (self.last_line.elapsed() >= LOG_EVERY || done == total) {
            let secs = self.epoch_start.elapsed().as_secs_f64().max(1e-9);
            let rate = (done * self.batch_size) as f64 / secs;
            let eta = secs / done as f64 * (total - done) as f64;
            eprintln!(
                "{} epoch {epoch}: batch {done}/{total}, {rate:.1} slices/s, {:.0} s in, ETA {:.0} s (then validation)",
                self.label, secs, eta
            );
            self.last_line = Instant::now();
        }
    }
    fn epoch(&mut self, r: &EpochRecord, improved: bool) -> Control {
        let line = format!(
            "{} epoch {:>3}: loss {:.4} acc {:.3} | val_loss {:.4} val_acc {:.3} | {:.0} s{}",
            self.label,
            r.epoch,
            r.loss,
            r.acc,
            r.val_loss,
            r.val_acc,
            r.seconds,
            if improved { " *" } else { "" }
        );
        self.bar.suspend(|| eprintln!("{line}"));
        Control::Continue
    }
}
