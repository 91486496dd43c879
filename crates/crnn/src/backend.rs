//! [`ConvBackend`]: how the conv stack runs, chosen when a model is placed on a device.

use std::ffi::{c_char, c_int, c_void};
use std::fmt;
use std::sync::Arc;

use crnn_kernels::{Isa, Parallel, Plan};
use tch::Device;

use crate::{Error, Result};

/// How [`Crnn2d`](crate::Crnn2d) runs its conv stack. Both compute the same mathematics;
/// they differ in summation order (outputs agree to float rounding, tested) and in where
/// the dropout masks of training come from. Not part of what a model is: it is not saved
/// in the model directory, and a model trained with one runs with the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvBackend {
    /// One libtorch op per layer, differentiable by autograd: any device (the CUDA path),
    /// any dtype. Training dropout draws from libtorch's generator.
    LibtorchOps,
    /// CPU, f32 only: the [`crnn_kernels`] passes for everything between the convolutions
    /// (ELU, BatchNorm, max-pool, dropout, and all of block 1 with its convolution), and the
    /// convolutions of blocks 2-4 by Winograd F(2x2, 3x3) (the transforms are `crnn_kernels`
    /// passes, the products libtorch's GEMM) or by oneDNN ([`ConvAlgorithm`]), all on
    /// libtorch's intra-op threads; inference and [`train_step`](crate::train_step). Dropout masks are a keyed hash
    /// ([`crnn_kernels::DropoutMask`]). The instruction set is fixed here.
    FusedCpu(Isa),
}

/// How [`ConvBackend::FusedCpu`] runs the 3x3 "same" convolutions of blocks 2-4
/// ([`Crnn2d::set_conv_algorithm`](crate::Crnn2d::set_conv_algorithm)). Both compute the same
/// convolution; they differ in rounding (Winograd's f32 error is ~1e-7 of the output's
/// magnitude, tested against an f64 direct convolution in `crnn_kernels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConvAlgorithm {
    /// Winograd F(2x2, 3x3): the transforms are [`crnn_kernels`] passes, the 16 products in
    /// the Winograd domain are libtorch batched matmuls (MKL's GEMM). 2.25x fewer
    /// multiply-adds than the direct convolution, for the forward pass and both gradients.
    /// The default.
    #[default]
    Winograd,
    /// oneDNN's direct convolution through libtorch, the one the libtorch-op path runs.
    Direct,
}

/// The environment variable that [`ConvAlgorithm::from_env`] reads: `winograd`, `direct` or
/// `auto` (the default).
pub const CONV_ALGORITHM_ENV: &str = "CRNN_CONV_ALGORITHM";

impl ConvAlgorithm {
    /// The algorithm that `CRNN_CONV_ALGORITHM` names ([`Winograd`](Self::Winograd) when it
    /// is unset, empty or `auto`); another value is an error.
    ///
    /// The only place crnn reads this variable, and nothing in the library calls it: an
    /// application (the workspace's examples and benches) calls it and passes the value on
    /// ([`Crnn2d::set_conv_algorithm`](crate::Crnn2d::set_conv_algorithm),
    /// [`FitParams::conv_algorithm`](crate::FitParams::conv_algorithm)).
    pub fn from_env() -> Result<Self> {
        match std::env::var_os(CONV_ALGORITHM_ENV) {
            None => Ok(Self::default()),
            Some(v) => {
                let v = v.to_string_lossy();
                if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("auto") {
                    Ok(Self::default())
                } else {
                    Self::from_name(&v)
                }
            }
        }
    }

    /// `winograd` or `direct`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "winograd" => Ok(Self::Winograd),
            "direct" => Ok(Self::Direct),
            _ => Err(Error::InvalidConfig {
                field: "conv algorithm",
                rule: format!("{name:?} is neither winograd nor direct"),
            }),
        }
    }
}

impl fmt::Display for ConvAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Winograd => "winograd",
            Self::Direct => "direct",
        })
    }
}

impl ConvBackend {
    /// The default for `device`: on the CPU, [`FusedCpu`](Self::FusedCpu) with the fastest
    /// instruction set this CPU has, but [`LibtorchOps`](Self::LibtorchOps) when that would be
    /// the portable build (a CPU without AVX2+FMA: the portable build computes each fused
    /// multiply-add in software there, ~60x slower in block 1 than AVX2, and slower than
    /// libtorch). On other devices `LibtorchOps`. Reads no environment and never fails (the
    /// `Result` keeps the signature of earlier versions); [`choose`](Self::choose) takes an
    /// instruction set that the caller asked for.
    pub fn default_for(device: Device) -> Result<Self> {
        Self::choose(device, None)
    }

    /// The backend for `device` when the caller asked for instruction set `isa` (for example
    /// `crnn_kernels::Isa::from_env()?`, what an application's `CRNN_KERNELS_ISA` says):
    /// `Some(isa)` on the CPU is [`FusedCpu(isa)`](Self::FusedCpu), checked against this CPU
    /// (`portable` included: asking for it forces it); `None` is
    /// [`default_for`](Self::default_for). On other devices `LibtorchOps` whatever `isa` is:
    /// an instruction set is a CPU matter.
    pub fn choose(device: Device, isa: Option<Isa>) -> Result<Self> {
        if device != Device::Cpu {
            return Ok(Self::LibtorchOps);
        }
        Ok(match isa {
            Some(isa) => {
                isa.check()?;
                Self::FusedCpu(isa)
            }
            None => match Isa::best() {
                Isa::Portable => Self::LibtorchOps,
                isa => Self::FusedCpu(isa),
            },
        })
    }

    /// Checks that this backend can run a model on `device` (CPU, and an instruction set the
    /// CPU has, for `FusedCpu`).
    pub fn check(self, device: Device) -> Result<()> {
        match self {
            Self::LibtorchOps => Ok(()),
            Self::FusedCpu(_) if device != Device::Cpu => Err(Error::Backend {
                backend: self.to_string(),
                rule: format!("runs on the CPU only, the model is on {device:?}"),
            }),
            Self::FusedCpu(isa) => Ok(isa.check()?),
        }
    }

    /// Parses `libtorch-ops`, `fused` (the default instruction set), or `fused-avx512`,
    /// `fused-avx2`, `fused-portable`.
    pub fn from_name(name: &str) -> Result<Self> {
        let n = name.trim().to_ascii_lowercase();
        if n == "libtorch-ops" || n == "libtorch" {
            return Ok(Self::LibtorchOps);
        }
        if n == "fused" {
            return Ok(Self::FusedCpu(Isa::best()));
        }
        match n.strip_prefix("fused-") {
            Some(isa) => Ok(Self::FusedCpu(Isa::from_name(isa)?)),
            None => Err(Error::InvalidConfig {
                field: "backend",
                rule: format!(
                    "{name:?} is none of libtorch-ops, fused, fused-avx512, fused-avx2, fused-portable"
                ),
            }),
        }
    }

    /// The plan of the fused passes, on libtorch's threads.
    pub(crate) fn plan(self) -> Result<Option<Plan>> {
        match self {
            Self::LibtorchOps => Ok(None),
            Self::FusedCpu(isa) => Ok(Some(
                Plan::detect()
                    .with_isa(isa)?
                    .with_parallel(Arc::new(LibtorchThreads)),
            )),
        }
    }
}

impl fmt::Display for ConvBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LibtorchOps => f.write_str("libtorch-ops"),
            Self::FusedCpu(isa) => write!(f, "fused-{isa}"),
        }
    }
}

unsafe extern "C" {
    fn crnn_parallel_for(
        n: i64,
        context: *mut c_void,
        job: extern "C" fn(*mut c_void, i64, i64),
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
}

/// The fused passes' jobs on libtorch's intra-op (OpenMP) threads, through `at::parallel_for`
/// in the C++ shim: the passes share the cores with oneDNN (a second pool would fight
/// OpenMP workers that spin-wait after each libtorch op) and follow `tch::set_num_threads`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LibtorchThreads;

type JobRef<'a> = &'a (dyn Fn(usize) + Sync);

extern "C" fn trampoline(context: *mut c_void, begin: i64, end: i64) {
    // SAFETY: `context` points at the `JobRef` that `for_each` passes to crnn_parallel_for,
    // alive until that call returns. The job never unwinds (crnn_kernels catches panics in
    // it), so nothing unwinds into C++.
    let job = unsafe { &*(context as *const JobRef<'_>) };
    for j in begin.max(0)..end.max(0) {
        job(j as usize);
    }
}

impl Parallel for LibtorchThreads {
    fn for_each(&self, n: usize, job: &(dyn Fn(usize) + Sync)) -> std::result::Result<(), String> {
        let mut error = vec![0 as c_char; 512];
        let job: JobRef<'_> = job;
        // SAFETY: `job` outlives the call; the trampoline reads it back with the same type;
        // `error` is a writable buffer of the length given.
        let rc = unsafe {
            crnn_parallel_for(
                n as i64,
                &job as *const JobRef<'_> as *mut c_void,
                trampoline,
                error.as_mut_ptr(),
                error.len(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("at::parallel_for: {}", c_message(&error)))
        }
    }
}

/// The NUL-terminated message a C function wrote into `buffer`.
pub(crate) fn c_message(buffer: &[c_char]) -> String {
    let bytes: Vec<u8> = buffer
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn libtorch_threads_run_every_job_once_on_any_thread_count() {
        for threads in [1, 2, 3] {
            tch::set_num_threads(threads);
            let hits: Vec<AtomicUsize> = (0..100).map(|_| AtomicUsize::new(0)).collect();
            LibtorchThreads
                .for_each(100, &|j| {
                    hits[j].fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn names_and_checks() {
        assert_eq!(
            ConvBackend::from_name("libtorch-ops").unwrap(),
            ConvBackend::LibtorchOps
        );
        assert_eq!(
            ConvBackend::from_name("fused-avx2").unwrap(),
            ConvBackend::FusedCpu(Isa::Avx2Fma)
        );
        assert!(ConvBackend::from_name("gpu").is_err());
        for isa in Isa::ALL {
            let b = ConvBackend::FusedCpu(isa);
            assert_eq!(ConvBackend::from_name(&b.to_string()).unwrap(), b);
            assert_eq!(b.check(Device::Cpu).is_ok(), isa.is_available());
            assert!(b.check(Device::Cuda(0)).is_err());
        }
        assert!(ConvBackend::LibtorchOps.check(Device::Cuda(0)).is_ok());
        for a in [ConvAlgorithm::Winograd, ConvAlgorithm::Direct] {
            assert_eq!(ConvAlgorithm::from_name(&a.to_string()).unwrap(), a);
        }
        assert!(ConvAlgorithm::from_name("fft").is_err());
        assert_eq!(
            ConvBackend::default_for(Device::Cuda(0)).unwrap(),
            ConvBackend::LibtorchOps
        );
        // An instruction set asked for is a CPU matter: CUDA ignores it, the CPU checks it.
        for isa in Isa::ALL {
            assert_eq!(
                ConvBackend::choose(Device::Cuda(0), Some(isa)).unwrap(),
                ConvBackend::LibtorchOps
            );
            assert_eq!(
                ConvBackend::choose(Device::Cpu, Some(isa)).is_ok(),
                isa.is_available()
            );
        }
        assert_eq!(
            ConvBackend::choose(Device::Cpu, None).unwrap(),
            ConvBackend::default_for(Device::Cpu).unwrap()
        );
    }
}
