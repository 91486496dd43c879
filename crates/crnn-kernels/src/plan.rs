//! [`Plan`]: the instruction set, the job split and the thread runner, chosen once.

use std::fmt;
use std::sync::Arc;

use crate::parallel::{Parallel, Serial, par_map};
use crate::simd::{Job, dispatch};
use crate::{Error, Isa, Result};

/// What the plan derives its sizes from: core count and cache sizes, read from Linux's sysfs
/// (`/sys/devices/system/cpu/cpu0/cache`), with fallbacks where it is not readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// Cores this process may use (`std::thread::available_parallelism`).
    pub cores: usize,
    /// Level-2 cache of one core, in bytes (fallback 1 MiB).
    pub l2_per_core: usize,
    /// The last-level cache visible to this process, in bytes (fallback 8 MiB per core).
    pub l3: usize,
}

impl Machine {
    /// Reads this machine.
    pub fn detect() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (mut l2, mut l3) = (None, None);
        if let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache") {
            for entry in dir.flatten() {
                let p = entry.path();
                let read = |name: &str| std::fs::read_to_string(p.join(name)).unwrap_or_default();
                let kind = read("type");
                if kind.trim() == "Instruction" {
                    continue;
                }
                let size = parse_size(read("size").trim());
                match read("level").trim() {
                    "2" => l2 = size.or(l2),
                    "3" => l3 = size.or(l3),
                    _ => {}
                }
            }
        }
        let l2_per_core = l2.unwrap_or(1 << 20);
        Self {
            cores,
            l2_per_core,
            l3: l3.unwrap_or(cores * (8 << 20)),
        }
    }

    /// Bytes of cache a working set may fill and stay resident: every core's L2 plus this
    /// process's share of the last level, counted as at most 8 MiB per core (a VM often
    /// reports the whole socket's L3, of which a few cores get a slice).
    pub fn cache_budget(&self) -> usize {
        self.l2_per_core * self.cores + self.l3.min(self.cores * (8 << 20))
    }
}

/// `48K`, `2048K`, `32M` (sysfs cache sizes) in bytes.
fn parse_size(s: &str) -> Option<usize> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: usize = digits.parse().ok()?;
    match unit.trim() {
        "" => Some(n),
        "K" | "k" | "KB" => Some(n << 10),
        "M" | "MB" => Some(n << 20),
        "G" | "GB" => Some(n << 30),
        _ => None,
    }
}

/// The passes, with the choices made once: an instruction set this CPU runs (checked when the
/// plan is made), the number of jobs each pass is split into, and the [`Parallel`] runner
/// that executes them. Cheap to clone.
///
/// Results depend on the instruction set not at all (the variants compute the same bits)
/// and on the runner not at all (partial sums are added in job order); they depend on
/// [`jobs`](Self::jobs) in the last bits of the per-channel `f64` sums.
#[derive(Clone)]
pub struct Plan {
    isa: Isa,
    jobs: usize,
    machine: Machine,
    parallel: Arc<dyn Parallel>,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("isa", &self.isa)
            .field("jobs", &self.jobs)
            .field("machine", &self.machine)
            .finish_non_exhaustive()
    }
}

impl Plan {
    /// The fastest instruction set this CPU runs ([`Isa::best`]), serial runner, jobs from
    /// the machine ([`Plan::default_jobs`]).
    pub fn detect() -> Self {
        let machine = Machine::detect();
        Self {
            isa: Isa::best(),
            jobs: Self::default_jobs(&machine),
            machine,
            parallel: Arc::new(Serial),
        }
    }

    /// For applications: [`detect`](Self::detect) with the instruction set of
    /// [`Isa::from_env`] (`CRNN_KERNELS_ISA`: `portable`, `avx2`, `avx512` or `auto`); an
    /// unknown or unavailable one is an error. Nothing in the libraries calls it.
    pub fn from_env() -> Result<Self> {
        let plan = Self::detect();
        match Isa::from_env()? {
            Some(isa) => plan.with_isa(isa),
            None => Ok(plan),
        }
    }

    /// This plan with instruction set `isa`, if the CPU runs it.
    pub fn with_isa(mut self, isa: Isa) -> Result<Self> {
        isa.check()?;
        self.isa = isa;
        Ok(self)
    }

    /// This plan with passes split into `jobs` jobs (1 ..= 4096).
    pub fn with_jobs(mut self, jobs: usize) -> Result<Self> {
        if !(1..=4096).contains(&jobs) {
            return Err(Error::Plan {
                field: "jobs",
                rule: format!("must be in 1..=4096, got {jobs}"),
            });
        }
        self.jobs = jobs;
        Ok(self)
    }

    /// This plan with jobs run by `parallel`.
    pub fn with_parallel(mut self, parallel: Arc<dyn Parallel>) -> Self {
        self.parallel = parallel;
        self
    }

    /// Jobs per pass for `machine`: 8 per core, at least 16 and at most 256, so that the
    /// threads stay busy when jobs differ in cost while the per-job partial sums stay
    /// negligible.
    pub fn default_jobs(machine: &Machine) -> usize {
        (8 * machine.cores).clamp(16, 256)
    }

    /// The instruction set.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Jobs per pass.
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    /// The machine the sizes were derived from.
    pub fn machine(&self) -> Machine {
        self.machine
    }

    /// How many items of `bytes_per_item` working set to process together so that they stay
    /// in cache ([`Machine::cache_budget`]): at least 1, at most 64.
    pub fn micro_batch(&self, bytes_per_item: usize) -> usize {
        (self.machine.cache_budget() / bytes_per_item.max(1)).clamp(1, 64)
    }

    /// Rows per job when `rows` rows are split into [`jobs`](Self::jobs) jobs.
    pub(crate) fn rows_per_job(&self, rows: usize) -> usize {
        rows.div_ceil(self.jobs).max(1)
    }

    /// `job` on this plan's vector unit.
    #[inline]
    pub(crate) fn run<J: Job>(&self, job: J) -> J::Out {
        // SAFETY: `self.isa` was checked against the CPU when it was set (`with_isa`) or
        // comes from `Isa::best`, which only returns available variants.
        unsafe { dispatch(self.isa, job) }
    }

    /// `f(index, item)` for every item on this plan's runner, results in order.
    pub(crate) fn map<I: Send, R: Send, F: Fn(usize, I) -> R + Sync>(
        &self,
        pass: &'static str,
        items: Vec<I>,
        f: F,
    ) -> Result<Vec<R>> {
        par_map(self.parallel.as_ref(), pass, items, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_plans_check_their_settings() {
        assert_eq!(parse_size("48K"), Some(48 << 10));
        assert_eq!(parse_size("32M"), Some(32 << 20));
        assert_eq!(parse_size("x"), None);
        let m = Machine::detect();
        assert!(m.cores >= 1 && m.l2_per_core > 0 && m.l3 > 0);
        let plan = Plan::detect();
        assert!(plan.isa().is_available());
        assert!((16..=256).contains(&plan.jobs()));
        assert!(plan.clone().with_jobs(0).is_err());
        assert_eq!(plan.clone().with_jobs(7).map(|p| p.jobs()), Ok(7));
        assert!((1..=64).contains(&plan.micro_batch(1 << 20)));
        assert_eq!(plan.micro_batch(usize::MAX), 1);
        for isa in Isa::ALL {
            assert_eq!(plan.clone().with_isa(isa).is_ok(), isa.is_available());
        }
    }
}
