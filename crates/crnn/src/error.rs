//! The one error type of this crate.

use std::path::PathBuf;

/// Why a model could not be built, trained, saved, loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration field breaks a rule.
    #[error("invalid {field}: {rule}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// The rule broken, with the value given.
        rule: String,
    },
    /// Slices too short for the network: its time poolings (and valid convolutions) would
    /// leave no time step.
    #[error(
        "slice_frames = {given} is too short for {architecture}: {rule}, so it needs at least {minimum} frames (fewer leave no time step)"
    )]
    SliceTooShort {
        /// The network (`crnn2d`, `crnn1d`, ...).
        architecture: String,
        /// What shortens the time axis.
        rule: String,
        /// Frames given.
        given: usize,
        /// The minimum.
        minimum: usize,
    },
    /// Data of the wrong shape.
    #[error("{what}: expected shape {expected:?}, got {got:?}")]
    Shape {
        /// Which input.
        what: &'static str,
        /// Expected shape.
        expected: Vec<i64>,
        /// Shape given.
        got: Vec<i64>,
    },
    /// A label outside `0..n_classes`.
    #[error("{what}: label {label} at index {index} is outside 0..{n_classes}")]
    Label {
        /// Which data.
        what: &'static str,
        /// The label.
        label: usize,
        /// Where.
        index: usize,
        /// Classes of the model.
        n_classes: usize,
    },
    /// A [`SliceSource`](crate::SliceSource) could not give a slice it counts.
    #[error("slice {index} of the {what}: {reason}")]
    Slice {
        /// Which data.
        what: &'static str,
        /// The slice's index.
        index: usize,
        /// Why, as the source says.
        reason: String,
    },
    /// An empty data source where data is needed.
    #[error("{0} has no slices")]
    EmptyData(&'static str),
    /// The loss became NaN or infinite; the last good checkpoint on disk is kept.
    #[error(
        "training diverged: loss is {loss} in epoch {epoch} (batch {batch}); the checkpoint of the \
         last completed epoch is kept in {dir} (lower the learning rate, check the inputs for NaN)"
    )]
    Diverged {
        /// Epoch (1-based).
        epoch: usize,
        /// Batch within the epoch.
        batch: usize,
        /// The loss value.
        loss: f64,
        /// The model directory.
        dir: PathBuf,
    },
    /// The model directory holds a finished run.
    #[error(
        "{dir} holds a finished training run; delete it or choose another directory to train again"
    )]
    AlreadyTrained {
        /// The model directory.
        dir: PathBuf,
    },
    /// The model directory holds an unfinished run and resume was not asked for.
    #[error(
        "{dir} holds an unfinished training run (epoch {epoch}); resume it or delete the directory"
    )]
    UnfinishedRun {
        /// The model directory.
        dir: PathBuf,
        /// Last completed epoch.
        epoch: usize,
    },
    /// A saved run or model does not match what is being asked of it.
    #[error("{dir}: {what} differs from the saved run ({detail})")]
    Mismatch {
        /// The model directory.
        dir: PathBuf,
        /// What differs.
        what: &'static str,
        /// How.
        detail: String,
    },
    /// A model directory file is missing or unreadable.
    #[error("{path}: {reason}")]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// libtorch failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A libtorch call of the C++ shim (one that tch does not wrap) threw.
    #[error("libtorch {call}: {message}")]
    Shim {
        /// The libtorch function.
        call: &'static str,
        /// The C++ exception's message.
        message: String,
    },
    /// The fused CPU kernels refused their input or failed.
    #[error("fused CPU kernels: {0}")]
    Kernels(#[from] crnn_kernels::Error),
    /// The conv backend cannot run this model or input.
    #[error("conv backend {backend} {rule}")]
    Backend {
        /// The backend.
        backend: String,
        /// The rule broken.
        rule: String,
    },
    /// A collective of the process group failed or timed out (another rank died, never
    /// came, or called something else).
    #[error("rank {rank} of {world_size}: {op}: {message}")]
    Distributed {
        /// This process's rank.
        rank: usize,
        /// The group's size.
        world_size: usize,
        /// What it was doing.
        op: &'static str,
        /// The c10d message and what to check.
        message: String,
    },
    /// Another rank of the group failed and published its error
    /// ([`ProcessGroup::publish_failure`](crate::ProcessGroup::publish_failure)): this rank
    /// stops too, at its next collective, with that rank's own message.
    #[error(
        "rank {} failed: {message} (rank {rank} of {world_size} stopped with it)",
        failed_rank.map_or_else(|| "?".to_string(), |r| r.to_string())
    )]
    PeerFailed {
        /// This process's rank.
        rank: usize,
        /// The group's size.
        world_size: usize,
        /// The rank that failed (`None` when its message did not say).
        failed_rank: Option<usize>,
        /// Its error, as it printed it.
        message: String,
    },
    /// A launcher's environment variable is there but wrong.
    #[error("{var} {rule}")]
    Launch {
        /// The variable.
        var: String,
        /// The rule broken, with the value found.
        rule: String,
    },
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Whether a rank that stops with this error should tell the others
    /// ([`Ranks::guard`](crate::Ranks::guard)): every error but another rank's published
    /// failure (already told) and [`AlreadyTrained`](Error::AlreadyTrained) (every rank
    /// gets it alike, and callers go on from it).
    pub fn ends_the_group(&self) -> bool {
        !matches!(
            self,
            Error::PeerFailed { .. } | Error::AlreadyTrained { .. }
        )
    }
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
