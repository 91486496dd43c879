//! [`AgentStore`]: a c10d TCPStore hosted apart from the ranks, as torchrun's agent hosts one.

use std::ffi::{c_char, c_int, c_void};
use std::ptr::NonNull;
use std::time::Duration;

use crate::backend::c_message;
use crate::{Error, Result};

unsafe extern "C" {
    fn crnn_store_host(
        port: c_int,
        timeout_ms: i64,
        out: *mut *mut c_void,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
    fn crnn_store_free(store: *mut c_void);
}

/// A c10d `TCPStore` server on a port of this machine (all interfaces), hosted by this
/// process for ranks that connect to it as clients: what torchrun's elastic agent does for its
/// workers (`TORCHELASTIC_USE_AGENT_STORE=True`, [`Rendezvous::Tcp`](crate::Rendezvous::Tcp)
/// with `agent_store`). A launcher of your own, or a test, uses it so that the store
/// outlives any one rank. The server stops when this value is dropped.
pub struct AgentStore {
    raw: NonNull<c_void>,
    port: u16,
}

// SAFETY: the TCPStore server runs on its own threads; this handle only owns it and frees
// it once, on drop.
unsafe impl Send for AgentStore {}

impl std::fmt::Debug for AgentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentStore")
            .field("port", &self.port)
            .finish()
    }
}

impl AgentStore {
    /// Hosts a store on `port` (`MASTER_PORT` of the ranks), its client operations bounded
    /// by `timeout`. Fails when the port is taken.
    pub fn host(port: u16, timeout: Duration) -> Result<Self> {
        let timeout_ms = i64::try_from(timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut out: *mut c_void = std::ptr::null_mut();
        let mut error = vec![0 as c_char; 1024];
        // SAFETY: `out` and `error` are writable for the call, `error` of the length given;
        // the shim writes an owned store pointer (or null) into `out`.
        let rc = unsafe {
            crnn_store_host(
                c_int::from(port),
                timeout_ms,
                &mut out,
                error.as_mut_ptr(),
                error.len(),
            )
        };
        match NonNull::new(out) {
            Some(raw) if rc == 0 => Ok(Self { raw, port }),
            _ => Err(Error::Distributed {
                rank: 0,
                world_size: 0,
                op: "hosting the agent store",
                message: format!("TCPStore on port {port}: {}", c_message(&error)),
            }),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for AgentStore {
    fn drop(&mut self) {
        // SAFETY: `raw` came from crnn_store_host and is freed exactly once, here.
        unsafe { crnn_store_free(self.raw.as_ptr()) }
    }
}
