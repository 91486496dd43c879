//! [`ProcessGroup`]: c10d's ProcessGroupGloo (the collectives `torch.distributed` uses on
//! CPU) or ProcessGroupNCCL (on CUDA), through the C++ shim, for data-parallel training.

use std::ffi::{CString, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::time::Duration;

use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::backend::c_message;
use crate::dist_params::{CollectiveBackend, GlooDevice, GroupParams, Rendezvous};
use crate::{Error, Result};

unsafe extern "C" {
    fn crnn_pg_new(
        store_kind: c_int,
        host: *const c_char,
        port: c_int,
        is_server: c_int,
        file_path: *const c_char,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        gloo_host: *const c_char,
        gloo_iface: *const c_char,
        out: *mut *mut c_void,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    fn crnn_pg_free(group: *mut c_void);
    #[cfg(crnn_nccl)]
    fn crnn_pg_new_nccl(
        store_kind: c_int,
        host: *const c_char,
        port: c_int,
        is_server: c_int,
        file_path: *const c_char,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        device_index: c_int,
        out: *mut *mut c_void,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    fn crnn_pg_all_reduce_sum(
        group: *mut c_void,
        tensor: *const C_tensor,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    fn crnn_pg_broadcast(
        group: *mut c_void,
        tensor: *const C_tensor,
        root: c_int,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    fn crnn_pg_barrier(group: *mut c_void, error: *mut c_char, error_len: usize) -> c_int;
    fn crnn_pg_publish_failure(
        group: *mut c_void,
        rank: c_int,
        world: c_int,
        message: *const c_char,
        grace_ms: i64,
        first: *mut c_int,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
}

/// How long a failed rank keeps waiting for the others to read its published error
/// ([`ProcessGroup::publish_failure`]) before it goes on failing: at most 30 s (or the group's
/// timeout, when shorter). The others read it at their next collective, which in training is
/// at most one batch away.
pub const FAILURE_GRACE: Duration = Duration::from_secs(30);

/// A c10d process group (ProcessGroupGloo, the backend `torch.distributed` uses on CPU):
/// `world_size` processes that all-reduce, broadcast and wait for each other. Every rank must
/// make the same calls in the same order, with tensors of the same shapes and kinds.
///
/// With [`GroupParams::device`] on CUDA it is ProcessGroupNCCL when this build has it
/// ([`nccl_available`](Self::nccl_available)); otherwise tensors on a GPU are staged
/// through host memory for Gloo. Every call is bounded by the group's timeout: a rank that
/// never arrives, or dies, makes the others fail with [`Error::Distributed`] instead of
/// hanging.
pub struct ProcessGroup {
    raw: NonNull<c_void>,
    rank: usize,
    world_size: usize,
    timeout: Duration,
    backend: CollectiveBackend,
    /// Where the flat buffers of the collectives live.
    buffer_device: Device,
    stats: std::cell::Cell<CommStats>,
}

/// What a [`ProcessGroup`] has done so far: collective calls, the time spent in them
/// (waiting for slower ranks included) and the bytes this rank contributed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommStats {
    /// All-reduce, broadcast and barrier calls.
    pub calls: u64,
    /// Wall time inside them.
    pub seconds: f64,
    /// Payload bytes passed in.
    pub bytes: u64,
}

impl CommStats {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &CommStats) -> CommStats {
        CommStats {
            calls: self.calls.saturating_sub(earlier.calls),
            seconds: self.seconds - earlier.seconds,
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}

// SAFETY: the c10d group may be used from any one thread at a time (ProcessGroupGloo queues
// work under its own locks); `ProcessGroup` is not `Sync`, so calls never overlap.
unsafe impl Send for ProcessGroup {}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from crnn_pg_new and is freed exactly once, here.
        unsafe { crnn_pg_free(self.raw.as_ptr()) }
    }
}

fn c_string(field: &'static str, value: &str) -> Result<CString> {
    CString::new(value).map_err(|_| Error::InvalidConfig {
        field,
        rule: format!("{value:?} contains a NUL byte"),
    })
}

impl ProcessGroup {
    /// Joins the group: creates (rank 0) or connects to the store, then connects Gloo to
    /// every other rank. Returns when all `world_size` ranks have joined, or fails after the
    /// timeout naming what it waited for.
    pub fn new(params: &GroupParams) -> Result<Self> {
        let GroupParams {
            rank,
            world_size,
            rendezvous,
            timeout,
            gloo,
            device,
            backend,
        } = params;
        let backend = match (backend, device) {
            (None, Device::Cuda(_)) if Self::nccl_available() => CollectiveBackend::Nccl,
            (None, _) => CollectiveBackend::Gloo,
            (Some(CollectiveBackend::Nccl), Device::Cuda(_)) if !Self::nccl_available() => {
                return Err(Error::InvalidConfig {
                    field: "backend",
                    rule: "nccl: this build has no ProcessGroupNCCL (crnn's build.rs compiles it with the CUDA libtorch; its cargo warning says why not)".into(),
                });
            }
            (Some(CollectiveBackend::Nccl), Device::Cuda(_)) => CollectiveBackend::Nccl,
            (Some(CollectiveBackend::Nccl), d) => {
                return Err(Error::InvalidConfig {
                    field: "backend",
                    rule: format!("nccl needs a CUDA device, not {d:?}"),
                });
            }
            (Some(CollectiveBackend::Gloo), _) => CollectiveBackend::Gloo,
        };
        let (rank, world_size) = (*rank, *world_size);
        if world_size == 0 || rank >= world_size {
            return Err(Error::InvalidConfig {
                field: "rank",
                rule: format!(
                    "rank {rank} must be below world_size {world_size} (and world_size at least 1)"
                ),
            });
        }
        if world_size > i32::MAX as usize {
            return Err(Error::InvalidConfig {
                field: "world_size",
                rule: format!("{world_size} ranks is more than c10d takes"),
            });
        }
        let timeout_ms = i64::try_from(timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let (kind, host, port, is_server, file) = match rendezvous {
            Rendezvous::Tcp {
                addr,
                port,
                agent_store,
            } => (
                0,
                c_string("rendezvous address", addr)?,
                i32::from(*port),
                i32::from(rank == 0 && !agent_store),
                CString::default(),
            ),
            Rendezvous::File { path } => (
                1,
                CString::default(),
                0,
                0,
                c_string("rendezvous file", &path.to_string_lossy())?,
            ),
        };
        let (gloo_host, gloo_iface) = match gloo {
            GlooDevice::Default => (CString::default(), CString::default()),
            GlooDevice::Hostname(h) => (c_string("gloo hostname", h)?, CString::default()),
            GlooDevice::Interface(i) => (CString::default(), c_string("gloo interface", i)?),
        };
        let mut out: *mut c_void = std::ptr::null_mut();
        let mut error = vec![0 as c_char; 2048];
        let rc = match (backend, device) {
            // SAFETY: as below, plus a CUDA device index for the call.
            #[cfg(crnn_nccl)]
            (CollectiveBackend::Nccl, Device::Cuda(index)) => unsafe {
                crnn_pg_new_nccl(
                    kind,
                    host.as_ptr(),
                    port,
                    is_server,
                    file.as_ptr(),
                    rank as c_int,
                    world_size as c_int,
                    timeout_ms,
                    *index as c_int,
                    &mut out,
                    error.as_mut_ptr(),
                    error.len(),
                )
            },
            // SAFETY: every string is a live NUL-terminated CString for the call; the shim
            // writes an owned group pointer (or null) into `out` and a message into `error`.
            _ => unsafe {
                crnn_pg_new(
                    kind,
                    host.as_ptr(),
                    port,
                    is_server,
                    file.as_ptr(),
                    rank as c_int,
                    world_size as c_int,
                    timeout_ms,
                    gloo_host.as_ptr(),
                    gloo_iface.as_ptr(),
                    &mut out,
                    error.as_mut_ptr(),
                    error.len(),
                )
            },
        };
        let where_ = match rendezvous {
            Rendezvous::Tcp { addr, port, .. } => format!("TCPStore {addr}:{port}"),
            Rendezvous::File { path } => format!("FileStore {}", path.display()),
        };
        match NonNull::new(out) {
            Some(raw) if rc == 0 => Ok(Self {
                raw,
                rank,
                world_size,
                timeout: *timeout,
                backend,
                buffer_device: match backend {
                    CollectiveBackend::Nccl => *device,
                    CollectiveBackend::Gloo => Device::Cpu,
                },
                stats: Default::default(),
            }),
            _ => Err(Error::Distributed {
                rank,
                world_size,
                op: "joining the process group",
                message: format!(
                    "{backend}: {} (rendezvous at {where_}, timeout {:.0?}: were all {world_size} ranks started, with the same address and port?)",
                    c_message(&error),
                    timeout
                ),
            }),
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of processes in the group.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Whether this is rank 0, the one that writes files.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// Whether this build has ProcessGroupNCCL (built with the CUDA libtorch and its
    /// headers; see the crate README).
    pub fn nccl_available() -> bool {
        cfg!(crnn_nccl)
    }

    /// The c10d backend in use.
    pub fn backend(&self) -> CollectiveBackend {
        self.backend
    }

    /// The bound on every call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Calls, time and bytes so far (see [`CommStats::since`] for an interval).
    pub fn stats(&self) -> CommStats {
        self.stats.get()
    }

    fn failed(&self, op: &'static str, rc: c_int, error: &[c_char]) -> Error {
        if rc == 2 {
            // Another rank's published failure: "<rank>\n<its error>".
            let text = c_message(error);
            let (rank, message) = text.split_once('\n').unwrap_or(("?", text.as_str()));
            return Error::PeerFailed {
                rank: self.rank,
                world_size: self.world_size,
                failed_rank: rank.parse().ok(),
                message: message.to_string(),
            };
        }
        Error::Distributed {
            rank: self.rank,
            world_size: self.world_size,
            op,
            message: format!(
                "{} (timeout {:.0?}; another rank may have failed or stopped: see its log)",
                c_message(error),
                self.timeout
            ),
        }
    }

    /// Runs one collective of the shim (`call` gets the group and an error buffer),
    /// counting it in [`stats`](Self::stats); a non-zero return is an error of `op`.
    fn collective(
        &self,
        op: &'static str,
        bytes: usize,
        call: impl FnOnce(*mut c_void, *mut c_char, usize) -> c_int,
    ) -> Result<()> {
        let mut error = vec![0 as c_char; 2048];
        let t0 = std::time::Instant::now();
        let rc = call(self.raw.as_ptr(), error.as_mut_ptr(), error.len());
        let mut s = self.stats.get();
        s.calls += 1;
        s.seconds += t0.elapsed().as_secs_f64();
        s.bytes += bytes as u64;
        self.stats.set(s);
        if rc == 0 {
            Ok(())
        } else {
            Err(self.failed(op, rc, &error))
        }
    }

    /// Sums a contiguous tensor on the group's buffer device in place across the group.
    fn raw_all_reduce_sum(&self, flat: &Tensor) -> Result<()> {
        let bytes = flat.numel() * flat.kind().elt_size_in_bytes();
        self.collective("all_reduce", bytes, |raw, error, len| {
            // SAFETY: `raw` is the live group; `flat` a live tensor borrowed for the call;
            // `error` a writable buffer of `len` bytes.
            unsafe { crnn_pg_all_reduce_sum(raw, flat.as_ptr(), error, len) }
        })
    }

    fn raw_broadcast(&self, flat: &Tensor, root: usize) -> Result<()> {
        let bytes = flat.numel() * flat.kind().elt_size_in_bytes();
        self.collective("broadcast", bytes, |raw, error, len| {
            // SAFETY: as in raw_all_reduce_sum.
            unsafe { crnn_pg_broadcast(raw, flat.as_ptr(), root as c_int, error, len) }
        })
    }

    fn check_root(&self, root: usize) -> Result<()> {
        if root >= self.world_size {
            return Err(Error::InvalidConfig {
                field: "root",
                rule: format!("rank {root} is not in a group of {}", self.world_size),
            });
        }
        Ok(())
    }

    /// Runs `op` on one flat buffer holding all `tensors` (one call however many tensors),
    /// then writes the result back into each tensor in place. Tensors of one kind; any
    /// device: the buffer is on the CPU for Gloo (other devices staged through host memory)
    /// and on the group's GPU for NCCL.
    fn on_flat(
        &self,
        tensors: &mut [Tensor],
        op: impl FnOnce(&Tensor) -> Result<()>,
    ) -> Result<()> {
        if tensors.is_empty() {
            return op(&Tensor::zeros([0], (Kind::Float, self.buffer_device)));
        }
        let kind = tensors[0].f_kind()?;
        if let Some(t) = tensors.iter().find(|t| t.kind() != kind) {
            return Err(Error::InvalidConfig {
                field: "tensors",
                rule: format!("one kind per call: {kind:?} and {:?}", t.kind()),
            });
        }
        tch::no_grad(|| -> Result<()> {
            let pieces: Vec<Tensor> = tensors
                .iter()
                .map(|t| t.f_reshape([-1])?.f_to_device(self.buffer_device))
                .collect::<std::result::Result<_, _>>()?;
            let flat = Tensor::f_cat(&pieces, 0)?.f_contiguous()?;
            op(&flat)?;
            let mut offset = 0i64;
            for t in tensors.iter_mut() {
                let n = t.numel() as i64;
                let part = flat.f_narrow(0, offset, n)?.f_view_as(t)?;
                t.f_copy_(&part)?;
                offset += n;
            }
            Ok(())
        })
    }

    /// Sums `tensors` element-wise across the group, in place (one collective call).
    pub fn all_reduce_sum(&self, tensors: &mut [Tensor]) -> Result<()> {
        self.on_flat(tensors, |flat| self.raw_all_reduce_sum(flat))
    }

    /// Averages `tensors` element-wise across the group, in place: a sum (one collective
    /// call; Gloo has no average) divided by the world size.
    pub fn all_reduce_mean(&self, tensors: &mut [Tensor]) -> Result<()> {
        let n = self.world_size as f64;
        self.on_flat(tensors, |flat| {
            self.raw_all_reduce_sum(flat)?;
            let _ = flat.shallow_clone().f_div_scalar_(n)?;
            Ok(())
        })
    }

    /// Overwrites `tensors` on every rank with rank `root`'s, in place (one call).
    pub fn broadcast(&self, tensors: &mut [Tensor], root: usize) -> Result<()> {
        self.check_root(root)?;
        self.on_flat(tensors, |flat| self.raw_broadcast(flat, root))
    }

    /// Sends `root`'s bytes to every rank (`bytes` is replaced on the others; its length
    /// need not be known there).
    pub fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()> {
        self.check_root(root)?;
        let len = Tensor::from_slice(&[bytes.len() as i64]).f_to_device(self.buffer_device)?;
        self.raw_broadcast(&len, root)?;
        let n = len.f_int64_value(&[0])?.max(0) as usize;
        bytes.resize(n, 0);
        let buffer = Tensor::f_from_slice(bytes.as_slice())?.f_to_device(self.buffer_device)?;
        self.raw_broadcast(&buffer, root)?;
        bytes.clear();
        bytes.extend(Vec::<u8>::try_from(&buffer.f_to_device(Device::Cpu)?)?);
        Ok(())
    }

    /// Tells the other ranks that this one failed, with `message` (its error): their
    /// collectives, now or next, end with [`Error::PeerFailed`] carrying it, instead of
    /// waiting out the timeout or failing with the backend's "connection closed". The first
    /// rank to publish waits until every other rank has read it, at most [`FAILURE_GRACE`],
    /// so that a store this process hosts (rank 0's TCPStore) outlives their reading; a later
    /// one only acknowledges. Best effort: returns whether this rank's message is the one the
    /// others get (`false` also when the store cannot be reached).
    pub fn publish_failure(&self, message: &str) -> bool {
        let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
        let grace = FAILURE_GRACE.min(self.timeout);
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let mut first: c_int = 0;
        let mut error = vec![0 as c_char; 512];
        // SAFETY: `raw` is the live group; `text` a NUL-terminated string alive for the call;
        // `first` and `error` writable, `error` of the length given.
        let rc = unsafe {
            crnn_pg_publish_failure(
                self.raw.as_ptr(),
                self.rank as c_int,
                self.world_size as c_int,
                text.as_ptr(),
                grace_ms,
                &mut first,
                error.as_mut_ptr(),
                error.len(),
            )
        };
        rc == 0 && first == 1
    }

    /// Returns when every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        self.collective("barrier", 0, |raw, error, len| {
            // SAFETY: `raw` is the live group; `error` a writable buffer of `len` bytes.
            unsafe { crnn_pg_barrier(raw, error, len) }
        })
    }
}
