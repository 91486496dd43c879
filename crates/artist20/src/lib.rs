#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod corpus;
mod error;
pub mod fetch;
mod slice;
mod split;
mod store;

pub use corpus::{Corpus, OfficialLists, SkipReason, Track, audio_extensions};
pub use error::{Error, Result};
pub use slice::{SliceIndex, SliceMode, SliceRef};
pub use split::{AlbumFallback, Split, SplitKind, SplitOptions, make_split};
pub use store::{
    BuildReport, FailedTrack, FeatureConfig, FeatureStore, ResamplerChoice, STORE_FORMAT_VERSION,
    TrackEntry, TrackFeatures, build_store,
};
