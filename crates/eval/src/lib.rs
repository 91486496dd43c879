#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bootstrap;
mod confusion;
mod error;
mod grouping;
mod paired;
pub mod plot;
mod plot_ci;
mod report;
mod summary;
mod tsne;
mod vote;

pub use bootstrap::{
    BootstrapParams, BootstrapReport, ClassInterval, Interval, SongPredictions, bootstrap_indices,
    bootstrap_statistic, cluster_bootstrap, percentile, percentile_interval,
};
pub use confusion::{confusion_matrix, normalize_rows};
pub use error::{Error, Result};
pub use grouping::{SongGroups, argmax, slice_predictions};
pub use paired::{Difference, McNemar, PairedReport, mcnemar_exact, paired_bootstrap};
pub use report::{ClassificationReport, Scores};
pub use summary::{Cell, Level, Summary, TrialRecord};
pub use tsne::{TsneConfig, tsne};
pub use vote::{SongVote, VoteRule, song_vote, song_votes};
