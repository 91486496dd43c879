//! The one error type of this crate. Errors about a file name the file and the rule broken.

use std::path::PathBuf;

/// Why the corpus could not be fetched.
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
    /// The manifest breaks its layout.
    #[error("corpus manifest: {rule}")]
    Manifest {
        /// The rule broken.
        rule: String,
    },
    /// A package (`.deb`) or a container inside it is not what it should be.
    #[error("{path}: {rule}")]
    Package {
        /// The `.deb`, or `deb!container`.
        path: PathBuf,
        /// What is wrong (truncated, not an ar archive, member missing, ...).
        rule: String,
    },
    /// `apt-get download` failed or could not run.
    #[error("apt-get download {packages}: {message}")]
    Download {
        /// The `name=version` list asked for.
        packages: String,
        /// What apt said, and what to do.
        message: String,
    },
    /// An extracted file's sha256 differs from the manifest's.
    #[error(
        "{path}: sha256 {got} differs from the manifest's {expected} (package {package}, member {member})"
    )]
    Checksum {
        /// The corpus file.
        path: String,
        /// The manifest's sha256.
        expected: String,
        /// The extracted bytes' sha256.
        got: String,
        /// `name version` of the package.
        package: String,
        /// The member it came from.
        member: String,
    },
}

/// This crate's results.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl From<atomic_file::Error<Error>> for Error {
    fn from(e: atomic_file::Error<Error>) -> Self {
        match e {
            atomic_file::Error::Write(e) => e,
            atomic_file::Error::Io { path, source, .. } => Error::Io { path, source },
        }
    }
}
