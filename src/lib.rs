//! artist-crnn: the paper's experiment put together from the workspace crates.
//!
//! This root package holds the examples (`melspec`, `prepare`, `experiment`, `predict`,
//! `representation`), the criterion benches, and the small pieces of glue they share.

pub mod cli;
pub mod compare;
pub mod data;
pub mod evidence;
pub mod experiment;
pub mod experiment_args;
pub mod experiment_cli;
pub mod experiment_summary;
pub mod predict;
pub mod progress;
pub mod representation;
pub mod run_report;
pub mod slices;
