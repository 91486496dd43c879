//! One 16-lane vector type per instruction set, behind the [`Simd`] trait, and the single
//! place where a pass body is compiled for each of them ([`dispatch`]).
//!
//! Every pass is written once, generic over [`Simd`]. A vector always has 16 lanes (one
//! AVX-512 register, two AVX2 registers, an array in the portable build), and every method
//! is one IEEE operation per lane (or an exact bit move), so all builds compute the same bits:
//! there is no width-dependent reduction anywhere except [`Simd::tree_sum`], whose order is
//! fixed (lanes 8, 4, 2, 1 apart) in every build.
//!
//! Adding an instruction set: a zero-sized token type whose constructor is `unsafe` (only
//! [`dispatch`] makes one, after the plan has checked the CPU), an `impl Simd` with every
//! method `#[inline(always)]`, a variant of [`Isa`](crate::Isa) with its detection, and one
//! arm in [`dispatch`] calling a `#[target_feature]` entry point. The bit-for-bit tests then
//! cover it automatically.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

use crate::Isa;

/// Lanes of every vector.
pub(crate) const LANES: usize = 16;

/// A 16-lane vector unit. Loads and stores touch `min(16, slice.len())` lanes (the others
/// read as zero and are not written), so no method reads or writes outside its slice.
pub(crate) trait Simd: Copy {
    /// 16 x f32.
    type F: Copy;
    /// 16 x u32 (wrapping arithmetic).
    type I: Copy;
    /// 16 lane flags.
    type M: Copy;
    /// 16 x f64.
    type D: Copy;

    fn splat(self, v: f32) -> Self::F;
    fn zero(self) -> Self::F;
    fn load(self, src: &[f32]) -> Self::F;
    fn store(self, dst: &mut [f32], v: Self::F);
    fn add(self, a: Self::F, b: Self::F) -> Self::F;
    fn sub(self, a: Self::F, b: Self::F) -> Self::F;
    fn mul(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b + c`, rounded once.
    fn fma(self, a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// `a < b ? a : b` (so `b` where either is NaN), as x86's `minps`.
    fn min(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a > b ? a : b` (so `b` where either is NaN), as x86's `maxps`.
    fn max(self, a: Self::F, b: Self::F) -> Self::F;
    /// `!(a <= b)`: `a > b`, or either is NaN.
    fn gt_or_nan(self, a: Self::F, b: Self::F) -> Self::M;
    /// `a > b` (false where either is NaN).
    fn gt(self, a: Self::F, b: Self::F) -> Self::M;
    fn is_nan(self, a: Self::F) -> Self::M;
    /// `a & !b`.
    fn and_not(self, a: Self::M, b: Self::M) -> Self::M;
    /// `m ? t : f` per lane.
    fn select(self, m: Self::M, t: Self::F, f: Self::F) -> Self::F;
    /// `m ? v : 0` per lane.
    fn keep(self, m: Self::M, v: Self::F) -> Self::F;
    fn to_array(self, v: Self::F) -> [f32; LANES];
    /// `((v[i] + v[i+8]) ...)`: lanes 8, 4, 2, 1 apart, then lane 0.
    fn tree_sum(self, v: Self::F) -> f32;

    fn isplat(self, v: u32) -> Self::I;
    /// `0, 1, ..., 15`.
    fn iota(self) -> Self::I;
    fn iadd(self, a: Self::I, b: Self::I) -> Self::I;
    fn isub(self, a: Self::I, b: Self::I) -> Self::I;
    fn ixor(self, a: Self::I, b: Self::I) -> Self::I;
    /// Low 32 bits of the product.
    fn imul(self, a: Self::I, b: Self::I) -> Self::I;
    fn ishr(self, a: Self::I, s: u32) -> Self::I;
    fn ishl(self, a: Self::I, s: u32) -> Self::I;
    /// `a >= b`, unsigned.
    fn ige(self, a: Self::I, b: Self::I) -> Self::M;
    fn ieq(self, a: Self::I, b: Self::I) -> Self::M;
    fn iselect(self, m: Self::M, t: Self::I, f: Self::I) -> Self::I;
    fn f32_to_bits(self, v: Self::F) -> Self::I;
    fn f32_from_bits(self, v: Self::I) -> Self::F;
    /// Bytes, zero-extended.
    fn load_u8(self, src: &[u8]) -> Self::I;
    /// The low byte of each lane.
    fn store_u8(self, dst: &mut [u8], v: Self::I);

    fn dzero(self) -> Self::D;
    fn dsplat(self, v: f64) -> Self::D;
    fn widen(self, v: Self::F) -> Self::D;
    fn dadd(self, a: Self::D, b: Self::D) -> Self::D;
    /// `a * b + c` in f64, rounded once.
    fn dfma(self, a: Self::D, b: Self::D, c: Self::D) -> Self::D;
    fn dto_array(self, v: Self::D) -> [f64; LANES];
}

/// A pass body, generic over the vector unit: [`dispatch`] compiles `run` once per
/// instruction set.
pub(crate) trait Job {
    type Out;
    fn run<S: Simd>(self, s: S) -> Self::Out;
}

/// Runs `job` on the vector unit of `isa`.
///
/// # Safety
///
/// The CPU must have every feature of `isa` ([`Isa::is_available`]). [`Plan`](crate::Plan)
/// checks that when it is made, and is the only caller.
#[inline]
pub(crate) unsafe fn dispatch<J: Job>(isa: Isa, job: J) -> J::Out {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller guarantees AVX-512 F/BW/DQ/VL, AVX2 and FMA.
        Isa::Avx512 => unsafe { run_avx512(job) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller guarantees AVX2 and FMA.
        Isa::Avx2Fma => unsafe { run_avx2(job) },
        _ => job.run(portable::Portable),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
fn run_avx512<J: Job>(job: J) -> J::Out {
    // SAFETY: this function is compiled for (and only called with) these features.
    job.run(unsafe { avx512::Avx512::new_unchecked() })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_avx2<J: Job>(job: J) -> J::Out {
    // SAFETY: this function is compiled for (and only called with) these features.
    job.run(unsafe { avx2::Avx2::new_unchecked() })
}
