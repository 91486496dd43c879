//! The one error type of this crate.

/// Why a pass did not run, or a plan could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A slice does not have the length the geometry asks for.
    #[error("{what}: expected {expected} values, got {got}")]
    Length {
        /// Which argument.
        what: &'static str,
        /// The length the geometry implies.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A geometry (shape, pooling) that the passes cannot run.
    #[error("invalid geometry {what}: {rule}")]
    Geometry {
        /// Which geometry.
        what: &'static str,
        /// The rule broken, with the values given.
        rule: String,
    },
    /// An instruction set was asked for that this CPU (or this build) does not have.
    #[error("instruction set {isa} is not available here: {reason}")]
    IsaUnavailable {
        /// The instruction set asked for.
        isa: crate::Isa,
        /// Why not (the CPU lacks a feature, or the target architecture differs).
        reason: String,
    },
    /// A name that is not an instruction set (`CRNN_KERNELS_ISA`, [`Isa::from_name`](crate::Isa::from_name)).
    #[error("unknown instruction set {given:?} (expected one of: {expected})")]
    UnknownIsa {
        /// The name given.
        given: String,
        /// The names accepted.
        expected: String,
    },
    /// A plan setting out of range.
    #[error("invalid plan setting {field}: {rule}")]
    Plan {
        /// The setting.
        field: &'static str,
        /// The rule broken, with the value given.
        rule: String,
    },
    /// The thread runner ([`Parallel`](crate::Parallel)) failed.
    #[error("parallel runner failed: {0}")]
    Parallel(String),
    /// A job of a pass panicked (a bug in this crate: lengths are checked before any job
    /// starts). The panic is contained and reported here.
    #[error("a job of pass {pass} panicked: {message}")]
    JobPanicked {
        /// The pass.
        pass: &'static str,
        /// The panic message.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// `Ok` when `got == expected`, else [`Error::Length`].
pub(crate) fn check_len(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::Length {
            what,
            expected,
            got,
        })
    }
}
