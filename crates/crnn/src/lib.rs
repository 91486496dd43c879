#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod adam;
mod architecture;
mod augment;
mod backend;
mod checkpoint;
mod config;
mod coord;
mod data;
mod dist;
mod dist_params;
mod dist_store;
mod dist_train;
mod error;
mod fit_params;
mod fused;
mod launch;
mod layers;
mod model;
mod network;
mod predict;
mod reselect;
mod run;
mod step;
mod summary;
mod trainer;
mod tuning;
mod validation;
mod zoo;

pub use adam::KerasAdam;
pub use architecture::{Architecture, ModelChoice};
pub use augment::{Augment, Gain, Mixup, SpecAugment, SpecAugmentMasks};
pub use backend::{CONV_ALGORITHM_ENV, ConvAlgorithm, ConvBackend, LibtorchThreads};
pub use checkpoint::{
    CONFIG_FILE, EPOCHS_DIR, EpochRecord, HISTORY_FILE, ModelFile, RunStatus, TrainedModel,
    WEIGHTS_FILE, epoch_weights_path, read_history,
};
pub use config::{CrnnConfig, Monitor, PAPER_SLICE_FRAMES, TrainConfig};
pub use coord::Ranks;
/// The kernel crate behind [`ConvBackend::FusedCpu`] (its [`Isa`](crnn_kernels::Isa) names the
/// instruction set).
pub use crnn_kernels;
pub use data::{SliceSource, ViewSource};
pub use dist::{CommStats, FAILURE_GRACE, ProcessGroup};
pub use dist_params::{CollectiveBackend, DEFAULT_TIMEOUT, GlooDevice, GroupParams, Rendezvous};
pub use dist_store::AgentStore;
pub use dist_train::distributed_indices;
pub use error::{Error, Result};
pub use launch::{Launch, Launcher, first_slurm_host};
pub use layers::{
    KerasBatchNorm, KerasGru, KerasLstm, f_hard_sigmoid, glorot_uniform, hard_sigmoid,
    to_channels_last,
};
pub use model::{
    Crnn2d, f_keras_categorical_crossentropy, f_keras_categorical_crossentropy_soft,
    keras_categorical_crossentropy, parameter_counts,
};
pub use network::{Network, NetworkSpec};
pub use predict::{embed, predict_proba};
pub use reselect::{recorded_outcome, replay_monitor, reselect};
pub use step::{StepOutput, train_step, train_step_distributed};
pub use summary::{LayerRow, format_keras_summary, keras_summary};
/// The tch this crate is built on (use its `Device`, `Tensor`, so the versions match).
pub use tch;
pub use trainer::{
    Control, ExistingRun, FitParams, Silent, TrainObserver, TrainOutcome, Trainer, evaluate,
};
pub use tuning::recycle_large_allocations;
pub use zoo::ZooNetwork;
