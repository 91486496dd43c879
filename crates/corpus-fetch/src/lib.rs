#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod deb;
mod error;
mod fetch;
mod manifest;

pub use error::{Error, Result};
pub use fetch::{FetchReport, LOCK_FILE, STAMP_FILE, fetch, fetch_entries};
pub use manifest::{
    MANIFEST_TSV, ManifestEntry, Tier, codec_decodable, credits_markdown, manifest, parse_manifest,
    tier_entries,
};
