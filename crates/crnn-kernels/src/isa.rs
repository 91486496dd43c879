//! [`Isa`]: the instruction sets the passes are compiled for, detected once.

use std::fmt;

use crate::{Error, Result};

/// The environment variable that forces an instruction set (see [`Isa::from_env`]).
pub const ISA_ENV: &str = "CRNN_KERNELS_ISA";

/// An instruction set the passes are compiled for. Every pass is one generic body compiled
/// once per variant; all variants compute the same bits (every lane does the same IEEE
/// operations in the same order), which the tests check on every variant the CPU has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Isa {
    /// Plain Rust on 16-lane arrays, for any target (libm's `fmaf` for the fused multiply-adds
    /// where the target has no FMA instruction). The reference of the bit-for-bit tests.
    Portable,
    /// x86-64 with AVX2 and FMA (Intel Haswell and later, AMD Zen and later): each 16-lane
    /// vector is two 256-bit registers.
    Avx2Fma,
    /// x86-64 with AVX-512 F, BW, DQ and VL (Intel Skylake-SP and later, AMD Zen 4 and later):
    /// one 512-bit register per vector, masked loads and stores.
    Avx512,
}

impl Isa {
    /// Every variant, slowest first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2Fma, Isa::Avx512];

    /// The name used by [`from_name`](Self::from_name) and `CRNN_KERNELS_ISA`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2Fma => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses `portable`, `avx2` (or `avx2fma`) or `avx512`, in any case.
    pub fn from_name(name: &str) -> Result<Isa> {
        match name.trim().to_ascii_lowercase().as_str() {
            "portable" => Ok(Isa::Portable),
            "avx2" | "avx2fma" | "avx2+fma" => Ok(Isa::Avx2Fma),
            "avx512" | "avx-512" => Ok(Isa::Avx512),
            _ => Err(Error::UnknownIsa {
                given: name.to_string(),
                expected: "portable, avx2, avx512 (or auto)".into(),
            }),
        }
    }

    /// Whether this CPU runs the variant (runtime feature detection; `Portable` always).
    pub fn is_available(self) -> bool {
        self.missing().is_none()
    }

    /// Why the variant cannot run here, or `None` when it can.
    pub fn missing(self) -> Option<String> {
        match self {
            Isa::Portable => None,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => lacking(&[
                ("avx2", std::arch::is_x86_feature_detected!("avx2")),
                ("fma", std::arch::is_x86_feature_detected!("fma")),
            ]),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => lacking(&[
                ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
                ("avx512bw", std::arch::is_x86_feature_detected!("avx512bw")),
                ("avx512dq", std::arch::is_x86_feature_detected!("avx512dq")),
                ("avx512vl", std::arch::is_x86_feature_detected!("avx512vl")),
                ("avx2", std::arch::is_x86_feature_detected!("avx2")),
                ("fma", std::arch::is_x86_feature_detected!("fma")),
            ]),
            #[cfg(not(target_arch = "x86_64"))]
            _ => Some(format!("built for {}, not x86-64", std::env::consts::ARCH)),
        }
    }

    /// The variants this CPU runs, slowest first (always starts with `Portable`).
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The fastest variant this CPU runs.
    pub fn best() -> Isa {
        Isa::available()
            .into_iter()
            .next_back()
            .unwrap_or(Isa::Portable)
    }

    /// The variant `CRNN_KERNELS_ISA` asks for: `None` when it is unset, empty or `auto`;
    /// an error when it names no variant or one this CPU does not run.
    ///
    /// The only place this crate (and `crnn`) reads the environment, called by applications
    /// only: [`Plan::detect`](crate::Plan::detect) and everything else in the libraries take
    /// the instruction set as a value.
    pub fn from_env() -> Result<Option<Isa>> {
        let Some(v) = std::env::var_os(ISA_ENV) else {
            return Ok(None);
        };
        let v = v.to_string_lossy();
        if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("auto") {
            return Ok(None);
        }
        let isa = Isa::from_name(&v)?;
        isa.check()?;
        Ok(Some(isa))
    }

    /// `Ok` when this CPU runs the variant, else [`Error::IsaUnavailable`].
    pub fn check(self) -> Result<()> {
        match self.missing() {
            None => Ok(()),
            Some(reason) => Err(Error::IsaUnavailable { isa: self, reason }),
        }
    }
}

/// "the CPU lacks a, b" for the features whose flag is false, or `None`.
#[cfg(target_arch = "x86_64")]
fn lacking(features: &[(&str, bool)]) -> Option<String> {
    let lacks: Vec<&str> = features
        .iter()
        .filter(|(_, has)| !has)
        .map(|(n, _)| *n)
        .collect();
    (!lacks.is_empty()).then(|| format!("the CPU lacks {}", lacks.join(", ")))
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Isa {
    type Err = Error;
    fn from_str(s: &str) -> Result<Isa> {
        Isa::from_name(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for isa in Isa::ALL {
            assert_eq!(Isa::from_name(isa.name()), Ok(isa));
            assert_eq!(isa.to_string().parse::<Isa>(), Ok(isa));
        }
        assert_eq!(Isa::from_name(" AVX2 "), Ok(Isa::Avx2Fma));
        let err = Isa::from_name("sse9").unwrap_err();
        assert!(err.to_string().contains("sse9"), "{err}");
    }

    #[test]
    fn portable_is_always_there_and_best_is_available() {
        assert_eq!(Isa::available()[0], Isa::Portable);
        assert!(Isa::best().is_available());
        assert_eq!(Isa::Portable.check(), Ok(()));
    }
}
