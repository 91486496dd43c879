//! What [`Trainer::fit`](crate::Trainer::fit) adds for data-parallel training over a
//! [`ProcessGroup`]: the sampler's split, the start shared by rank 0, and the broadcasts.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor, nn};

use crate::checkpoint::{EpochRecord, ResumeState};
use crate::{Error, ProcessGroup, Result};

/// How a run starts: fresh, or from rank 0's resume checkpoint and history.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Start {
    pub resume: Option<ResumeState>,
    pub history: Vec<EpochRecord>,
}

/// PyTorch `DistributedSampler`'s share of `order` for `rank`: `order` padded by wrapping
/// around to a multiple of `world` (so every rank gets as many), then every `world`-th item
/// from position `rank`.
pub fn distributed_indices(order: &[usize], rank: usize, world: usize) -> Vec<usize> {
    if order.is_empty() || world == 0 {
        return Vec::new();
    }
    let total = order.len().div_ceil(world) * world;
    (rank..total)
        .step_by(world)
        .map(|i| order[i % order.len()])
        .collect()
}

/// What rank 0 tells the others about the model directory.
#[derive(Serialize, Deserialize)]
enum Shared {
    Start(Start),
    /// [`Error::AlreadyTrained`]: the same error on every rank, so that callers that handle
    /// it (evaluate the finished model) do so on all ranks.
    AlreadyTrained,
    Failed(String),
}

/// Rank 0's [`Start`] (or its error) on every rank. Rank 0 gets its own result back; the
/// others get rank 0's start, [`Error::AlreadyTrained`] for `dir`, or an error saying that
/// rank 0 could not start.
pub(crate) fn share_start(group: &ProcessGroup, dir: &Path, local: Result<Start>) -> Result<Start> {
    let mut bytes = Vec::new();
    if group.is_main() {
        let shared = match &local {
            Ok(start) => Shared::Start(start.clone()),
            Err(Error::AlreadyTrained { .. }) => Shared::AlreadyTrained,
            Err(e) => Shared::Failed(e.to_string()),
        };
        bytes = serde_json::to_vec(&shared).map_err(|e| Error::Distributed {
            rank: 0,
            world_size: group.world_size(),
            op: "sharing the start of the run",
            message: e.to_string(),
        })?;
    }
    group.broadcast_bytes(&mut bytes, 0)?;
    if group.is_main() {
        return local;
    }
    let fail = |message: String| Error::Distributed {
        rank: group.rank(),
        world_size: group.world_size(),
        op: "starting the run",
        message,
    };
    match serde_json::from_slice(&bytes) {
        Ok(Shared::Start(start)) => Ok(start),
        Ok(Shared::AlreadyTrained) => Err(Error::AlreadyTrained {
            dir: dir.to_path_buf(),
        }),
        Ok(Shared::Failed(m)) => Err(fail(format!("rank 0 could not start it: {m}"))),
        Err(e) => Err(fail(format!("unreadable start from rank 0: {e}"))),
    }
}

/// Overwrites the variables of `vs` with rank 0's, in name order: all of them, or only the
/// trainable ones (`Some(true)`) or only the buffers (`Some(false)`, BatchNorm's moving
/// averages). One broadcast per kind of tensor.
pub(crate) fn broadcast_variables(
    group: &ProcessGroup,
    vs: &nn::VarStore,
    trainable: Option<bool>,
) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| trainable.is_none_or(|want| t.requires_grad() == want))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    // Kinds in order of first appearance: the same on every rank (names are sorted).
    let mut kinds: Vec<Kind> = Vec::new();
    for (_, t) in &named {
        if !kinds.contains(&t.kind()) {
            kinds.push(t.kind());
        }
    }
    for kind in kinds {
        let mut of_kind: Vec<Tensor> = named
            .iter()
            .filter(|(_, t)| t.kind() == kind)
            .map(|(_, t)| t.shallow_clone())
            .collect();
        group.broadcast(&mut of_kind, 0)?;
    }
    Ok(())
}

/// Sums `values` across the group, in place (float64, one call).
pub(crate) fn all_reduce_f64(group: &ProcessGroup, values: &mut [f64]) -> Result<()> {
    let mut t = [Tensor::f_from_slice(values)?.f_to_device(Device::Cpu)?];
    group.all_reduce_sum(&mut t)?;
    values.copy_from_slice(&Vec::<f64>::try_from(&t[0])?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::distributed_indices;

    #[test]
    fn sampler_split_pads_by_wrapping_like_pytorch() {
        // torch.utils.data.DistributedSampler(range(5), num_replicas=2, shuffle=False):
        // rank 0 -> [0, 2, 4], rank 1 -> [1, 3, 0].
        let order: Vec<usize> = (0..5).collect();
        assert_eq!(distributed_indices(&order, 0, 2), vec![0, 2, 4]);
        assert_eq!(distributed_indices(&order, 1, 2), vec![1, 3, 0]);
        // More ranks than items: the padding wraps more than once, as `indices * ceil(..)`.
        assert_eq!(distributed_indices(&[7, 8], 3, 4), vec![8]);
        assert_eq!(distributed_indices(&[7, 8], 2, 4), vec![7]);
        // One rank: the order itself.
        assert_eq!(distributed_indices(&order, 0, 1), order);
        assert!(distributed_indices(&[], 0, 2).is_empty());
    }
}
