//! The one error type of this crate. Errors about a file name the file.

use std::path::PathBuf;

/// Why a corpus, a split, a slice index or the feature store could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A corpus root, list file or manifest breaks a layout rule.
    #[error("{path}: {rule}")]
    Layout {
        /// The file or folder.
        path: PathBuf,
        /// The rule broken.
        rule: String,
    },
    /// The corpus has no usable tracks.
    #[error("{path}: no audio tracks found ({detail})")]
    EmptyCorpus {
        /// The root or list file.
        path: PathBuf,
        /// What was seen instead.
        detail: String,
    },
    /// The corpus cannot support the split asked for.
    #[error("the {split} split is not possible: {reason}")]
    Split {
        /// Split name.
        split: String,
        /// Which artists fail and why, and what to do instead.
        reason: String,
    },
    /// An HDF5 operation failed.
    #[error("{path}: HDF5: {message}")]
    Hdf5 {
        /// The store file.
        path: PathBuf,
        /// What libhdf5 said.
        message: String,
    },
    /// The feature store does not match what is asked of it.
    #[error("{path}: {reason}")]
    Store {
        /// The store file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Invalid parameter.
    #[error("invalid {field}: {rule}")]
    Invalid {
        /// The parameter.
        field: &'static str,
        /// The rule broken.
        rule: String,
    },
    /// Computing features failed.
    #[error(transparent)]
    Mel(#[from] melspec::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
