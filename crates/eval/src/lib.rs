#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod confusion;
mod error;
pub mod plot;
mod report;
mod summary;
mod tsne;
mod vote;

pub use confusion::{confusion_matrix, normalize_rows};
pub use error::{Error, Result};
pub use report::{ClassificationReport, Scores};
pub use summary::{Cell, Level, Summary, TrialRecord};
pub use tsne::{TsneConfig, tsne};
pub use vote::{SongVote, VoteRule, song_vote, song_votes};
