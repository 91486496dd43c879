//! The one error type of this crate.

use std::path::PathBuf;

/// Why an evaluation could not be computed or drawn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Inputs that must have the same length do not.
    #[error("{what}: lengths differ ({left} vs {right})")]
    LengthMismatch {
        /// Which inputs.
        what: &'static str,
        /// First length.
        left: usize,
        /// Second length.
        right: usize,
    },
    /// A label is outside `0..n_classes`.
    #[error("{what}: label {label} at position {index} is outside 0..{n_classes}")]
    LabelOutOfRange {
        /// Which input.
        what: &'static str,
        /// The label.
        label: usize,
        /// Where.
        index: usize,
        /// The number of classes.
        n_classes: usize,
    },
    /// An input is empty where values are needed.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// A song id in `0..n_songs` has no slice.
    #[error("song {song} has no slices (song ids must be 0..n_songs, each with >= 1 slice)")]
    SongWithoutSlices {
        /// The song id.
        song: usize,
    },
    /// A probability is NaN or infinite.
    #[error("probability at slice {slice}, class {class} is not finite")]
    NonFiniteProbability {
        /// Row.
        slice: usize,
        /// Column.
        class: usize,
    },
    /// Too few points for the requested perplexity.
    #[error(
        "t-SNE needs n_samples - 1 >= 3 * perplexity: {n_samples} samples, perplexity {perplexity} \
         (use at least {} samples or a perplexity <= {:.1})",
        (3.0 * perplexity).ceil() as usize + 1, (*n_samples as f64 - 1.0) / 3.0
    )]
    TooFewSamples {
        /// Points given.
        n_samples: usize,
        /// Perplexity asked for.
        perplexity: f64,
    },
    /// A parameter breaks a rule.
    #[error("invalid {field}: {rule}")]
    Invalid {
        /// The parameter.
        field: &'static str,
        /// The rule, with the value.
        rule: String,
    },
    /// Drawing or writing a plot failed.
    #[error("{path}: cannot draw plot: {reason}")]
    Plot {
        /// The output file.
        path: PathBuf,
        /// What the backend said.
        reason: String,
    },
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn check_labels(what: &'static str, labels: &[usize], n_classes: usize) -> Result<()> {
    match labels.iter().position(|&l| l >= n_classes) {
        Some(index) => Err(Error::LabelOutOfRange {
            what,
            label: labels[index],
            index,
            n_classes,
        }),
        None => Ok(()),
    }
}
