#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod conv1;
mod dense;
mod error;
mod geometry;
mod groups;
mod isa;
mod math;
mod mel_bins;
mod parallel;
mod plan;
mod simd;
mod winograd;

pub use conv1::{Conv1, Conv1Grads, GradIn, InputNorm, Plane, Winners};
pub use dense::PooledOut;
pub use error::{Error, Result};
pub use geometry::{Affine, BatchStatistics, BnBackward, ChannelSums, Geometry};
pub use isa::{ISA_ENV, Isa};
pub use math::{DropoutMask, elu, expm1_nonpositive};
pub use parallel::{Parallel, Serial};
pub use plan::{Machine, Plan};
pub use winograd::{
    TILE_ELEMENTS, WinogradShape, winograd_weight_grad, winograd_weights, winograd_weights_flipped,
};
