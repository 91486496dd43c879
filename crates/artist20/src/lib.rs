#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod build;
mod corpus;
mod error;
mod h5attr;
mod kfold;
mod merge;
mod shard;
mod slice;
mod split;
mod store;

pub use build::build_store;
pub use corpus::{Corpus, OfficialLists, SkipReason, Track, audio_extensions};
pub use error::{Error, Result};
pub use kfold::song_fold_assignment;
pub use merge::{MergeReport, find_shards, merge_shards};
pub use shard::{Shard, fnv1a64};
pub use slice::{SliceIndex, SliceMode, SliceRef};
pub use split::{AlbumFallback, Split, SplitKind, SplitOptions, make_split};
pub use store::{
    BuildReport, FailedTrack, FeatureConfig, FeatureStore, ResamplerChoice, STORE_FORMAT_VERSION,
    TrackEntry, TrackFeatures,
};
