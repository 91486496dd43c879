//! What [`ProcessGroup::new`](crate::ProcessGroup::new)(crate::ProcessGroup::new) is given: ranks, the rendezvous,
//! the Gloo address, the collectives' device and backend, the timeout.

use std::path::PathBuf;
use std::time::Duration;

use tch::Device;

use crate::launch::Launch;

/// How long a rendezvous or a collective may wait for the other ranks before it fails:
/// 30 minutes, as `torch.distributed`'s default for Gloo.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Where the ranks find each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendezvous {
    /// A c10d `TCPStore` at `addr:port` (`MASTER_ADDR`, `MASTER_PORT`). Rank 0 hosts it,
    /// unless `agent_store` says the launcher's agent already does (torchrun sets
    /// `TORCHELASTIC_USE_AGENT_STORE=True`); then every rank is a client.
    Tcp {
        /// Host name or address of the store.
        addr: String,
        /// Its port.
        port: u16,
        /// The launcher hosts the store.
        agent_store: bool,
    },
    /// A c10d `FileStore`: one file on a file system every rank sees (tests, or clusters
    /// without a usable network for the store). Use a fresh path per run.
    File {
        /// The store's file.
        path: PathBuf,
    },
}

/// Which network address Gloo binds to for its connections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GlooDevice {
    /// This machine's host name resolved, falling back to loopback (as `torch.distributed`
    /// without `GLOO_SOCKET_IFNAME`).
    #[default]
    Default,
    /// This host name or address (`127.0.0.1` for single-machine tests).
    Hostname(String),
    /// The address of this network interface (`GLOO_SOCKET_IFNAME`, e.g. `eth0`).
    Interface(String),
}

/// What [`ProcessGroup::new`](crate::ProcessGroup::new) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupParams {
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
    /// Where the ranks meet.
    pub rendezvous: Rendezvous,
    /// Bound on the rendezvous and on every collective.
    ///
    /// Default: [`DEFAULT_TIMEOUT`] (30 min).
    pub timeout: Duration,
    /// Gloo's address.
    ///
    /// Default: [`GlooDevice::Default`].
    pub gloo: GlooDevice,
    /// Where the tensors of the collectives live. `Device::Cpu`: ProcessGroupGloo.
    /// `Device::Cuda(i)`: ProcessGroupNCCL on GPU `i` when this build has it
    /// ([`ProcessGroup::nccl_available`](crate::ProcessGroup::nccl_available)), else Gloo with the tensors staged through host
    /// memory.
    ///
    /// Default: `Device::Cpu`.
    pub device: Device,
    /// The c10d backend, as `torch.distributed`'s `backend` argument; `None` chooses as
    /// [`device`](Self::device) says. `Some(Gloo)` on a CUDA device stages through host
    /// memory; `Some(Nccl)` needs a CUDA device and a build with NCCL.
    ///
    /// Default: `None`.
    pub backend: Option<CollectiveBackend>,
}

/// The c10d backend of a [`ProcessGroup`](crate::ProcessGroup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectiveBackend {
    /// ProcessGroupGloo over TCP (CPU tensors; others staged through host memory).
    Gloo,
    /// ProcessGroupNCCL (tensors on the group's GPU).
    Nccl,
}

impl std::fmt::Display for CollectiveBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gloo => "gloo",
            Self::Nccl => "nccl",
        })
    }
}

impl GroupParams {
    /// Rank, size and rendezvous; the rest at the defaults.
    pub fn new(rank: usize, world_size: usize, rendezvous: Rendezvous) -> Self {
        Self {
            rank,
            world_size,
            rendezvous,
            timeout: DEFAULT_TIMEOUT,
            gloo: GlooDevice::Default,
            device: Device::Cpu,
            backend: None,
        }
    }

    /// What a launcher's environment says ([`Launch`]): its ranks, a TCPStore at
    /// `MASTER_ADDR:MASTER_PORT`, and `GLOO_SOCKET_IFNAME` (its first name) when set.
    pub fn from_launch(launch: &Launch) -> Self {
        let rendezvous = Rendezvous::Tcp {
            addr: launch.master_addr.clone(),
            port: launch.master_port,
            agent_store: launch.agent_store,
        };
        Self {
            gloo: match &launch.gloo_socket_ifname {
                Some(name) => GlooDevice::Interface(name.clone()),
                None => GlooDevice::Default,
            },
            ..Self::new(launch.rank, launch.world_size, rendezvous)
        }
    }

    /// Sets [`device`](Self::device).
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Sets [`backend`](Self::backend).
    pub fn backend(mut self, backend: CollectiveBackend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`gloo`](Self::gloo).
    pub fn gloo(mut self, gloo: GlooDevice) -> Self {
        self.gloo = gloo;
        self
    }
}
