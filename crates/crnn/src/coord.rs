//! [`Ranks`]: what the training loop agrees on with the other ranks, the same calls for one
//! process and for many.

use std::path::Path;

use tch::{Tensor, nn};

use crate::dist_train::{self, Start};
use crate::{KerasAdam, ProcessGroup, Result};

/// The coordination the epoch loop needs, in one place: which share of the data this rank
/// trains and validates, its own random streams, rank 0's start of the run, rank 0's
/// parameters, buffers and Adam moments, the sums of the per-rank counts, a common stop and a
/// barrier, and what happens when a rank fails. [`Solo`](Ranks::Solo), one process, does
/// nothing in each (its share is everything, its streams the run's own, its sums its own);
/// [`Group`](Ranks::Group) does each through c10d. So [`Trainer::fit`](crate::Trainer::fit)
/// reads the same for one rank and many, and every rank makes the same calls in the same
/// order because there is one sequence of them.
///
/// Applications that run stages of their own around training (the workspace's `experiment`
/// example: rank 0 prepares the data, the others wait) use it too, so that their barriers
/// and failures behave as the trainer's.
#[derive(Debug, Clone, Copy)]
pub enum Ranks<'a> {
    /// One process: every call does nothing or is the identity.
    Solo,
    /// Rank [`rank`](ProcessGroup::rank) of a c10d process group.
    Group(&'a ProcessGroup),
}

impl<'a> Ranks<'a> {
    /// `Group(g)` for `Some(g)`, else `Solo`.
    pub fn of(group: Option<&'a ProcessGroup>) -> Self {
        group.map_or(Ranks::Solo, Ranks::Group)
    }

    /// The group, if any.
    pub fn group(&self) -> Option<&'a ProcessGroup> {
        match self {
            Ranks::Solo => None,
            Ranks::Group(g) => Some(g),
        }
    }

    /// This process's rank (0 alone).
    pub fn rank(&self) -> usize {
        self.group().map_or(0, ProcessGroup::rank)
    }

    /// Number of ranks (1 alone).
    pub fn world_size(&self) -> usize {
        self.group().map_or(1, ProcessGroup::world_size)
    }

    /// Whether this rank reads and writes files (rank 0; the one process alone).
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// This rank's stream of a seed: the seed itself alone; in a group one per rank (dropout
    /// draws differ across ranks, as in DDP).
    pub fn rank_seed(&self, seed: u64) -> u64 {
        match self {
            Ranks::Solo => seed,
            Ranks::Group(g) => crate::trainer::epoch_seed(seed, (1 << 32) + g.rank()),
        }
    }

    /// This rank's share of a shuffled `order`: all of it alone; in a group PyTorch
    /// `DistributedSampler`'s ([`distributed_indices`](crate::distributed_indices)).
    pub fn share(&self, order: Vec<usize>) -> Vec<usize> {
        match self {
            Ranks::Solo => order,
            Ranks::Group(g) => dist_train::distributed_indices(&order, g.rank(), g.world_size()),
        }
    }

    /// The validation slices this rank evaluates (`rank, rank + world, ...` of `0..len`): all
    /// of them alone, in order.
    pub fn validation_share(&self, len: usize) -> Vec<usize> {
        (self.rank()..len).step_by(self.world_size()).collect()
    }

    /// Rank 0's start of the run on every rank (its own result alone).
    pub(crate) fn share_start(&self, dir: &Path, local: Result<Start>) -> Result<Start> {
        match self {
            Ranks::Solo => local,
            Ranks::Group(g) => dist_train::share_start(g, dir, local),
        }
    }

    /// Rank 0's parameters, buffers and Adam moments on every rank, before the first step.
    pub fn sync_model(&self, vs: &nn::VarStore, adam: &KerasAdam) -> Result<()> {
        if let Ranks::Group(g) = self {
            dist_train::broadcast_variables(g, vs, None)?;
            g.broadcast(&mut adam.moments(), 0)?;
        }
        Ok(())
    }

    /// Rank 0's BatchNorm moving averages on every rank (DDP's `broadcast_buffers`), before
    /// validation.
    pub fn sync_buffers(&self, vs: &nn::VarStore) -> Result<()> {
        match self {
            Ranks::Solo => Ok(()),
            Ranks::Group(g) => dist_train::broadcast_variables(g, vs, Some(false)),
        }
    }

    /// Sums `values` over the ranks, in place (float64; unchanged alone).
    pub fn sum(&self, values: &mut [f64]) -> Result<()> {
        match self {
            Ranks::Solo => Ok(()),
            Ranks::Group(g) => dist_train::all_reduce_f64(g, values),
        }
    }

    /// Whether any rank says `yes` (this rank's `yes` alone). Also a barrier in a group.
    pub fn any(&self, yes: bool) -> Result<bool> {
        let mut flag = [f64::from(u8::from(yes))];
        self.sum(&mut flag)?;
        Ok(flag[0] > 0.0)
    }

    /// Rank 0's bytes on every rank (unchanged alone).
    pub fn share_bytes(&self, bytes: &mut Vec<u8>) -> Result<()> {
        match self {
            Ranks::Solo => Ok(()),
            Ranks::Group(g) => g.broadcast_bytes(bytes, 0),
        }
    }

    /// Returns when every rank has called it (at once alone).
    pub fn barrier(&self) -> Result<()> {
        match self {
            Ranks::Solo => Ok(()),
            Ranks::Group(g) => g.barrier(),
        }
    }

    /// Averages gradients over the ranks, in place (unchanged alone).
    pub fn average(&self, tensors: &mut [Tensor]) -> Result<()> {
        match self {
            Ranks::Solo => Ok(()),
            Ranks::Group(g) => g.all_reduce_mean(tensors),
        }
    }

    /// Runs `body` on this rank; when it fails with an error that
    /// [ends the group](crate::Error::ends_the_group), first tells the other ranks
    /// ([`ProcessGroup::publish_failure`]), so that they stop at once with this rank's error
    /// ([`Error::PeerFailed`](crate::Error::PeerFailed)) instead of waiting out the timeout. Alone it is `body()`.
    pub fn guard<T>(&self, body: impl FnOnce() -> Result<T>) -> Result<T> {
        self.guard_with(
            |e: &crate::Error| e.ends_the_group().then(|| e.to_string()),
            body,
        )
    }

    /// [`guard`](Self::guard) for an application's own error type: `publish` gives the
    /// message the others print for an error that ends the group, or `None` for one that
    /// does not (another rank's failure, say).
    pub fn guard_with<T, E>(
        &self,
        publish: impl FnOnce(&E) -> Option<String>,
        body: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let result = body();
        if let (Ranks::Group(g), Err(e)) = (self, &result)
            && let Some(message) = publish(e)
        {
            g.publish_failure(&message);
        }
        result
    }
}
