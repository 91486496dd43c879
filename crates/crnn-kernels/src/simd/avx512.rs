//! The AVX-512 vector unit: one 512-bit register per vector, masked loads and stores.
//!
//! Every method is a safe function over an `unsafe` intrinsic. That is sound because a
//! value of [`Avx512`] exists only where the CPU has AVX-512 F/BW/DQ/VL (its constructor is
//! `unsafe`, called by `simd::dispatch` after the plan's check), and because the masked
//! loads and stores touch only the lanes inside their slice (masked-off lanes are not
//! accessed, architecturally).

use std::arch::x86_64::*;

use super::{LANES, Simd};

/// Proof that the CPU has AVX-512 F, BW, DQ and VL (and AVX2, FMA).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512(());

impl Avx512 {
    /// # Safety
    ///
    /// The CPU must have AVX-512 F, BW, DQ and VL, AVX2 and FMA.
    #[inline(always)]
    pub(crate) unsafe fn new_unchecked() -> Self {
        Self(())
    }
}

/// The mask of the first `min(len, 16)` lanes.
#[inline(always)]
fn lanes(len: usize) -> __mmask16 {
    if len >= LANES {
        0xFFFF
    } else {
        ((1u32 << len) - 1) as __mmask16
    }
}

// SAFETY (every block below): see the module docs; a token proves the CPU features, and
// every pointer access is masked to the lanes inside its slice.
impl Simd for Avx512 {
    type F = __m512;
    type I = __m512i;
    type M = __mmask16;
    type D = [__m512d; 2];

    #[inline(always)]
    fn splat(self, v: f32) -> Self::F {
        unsafe { _mm512_set1_ps(v) }
    }
    #[inline(always)]
    fn zero(self) -> Self::F {
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    fn load(self, src: &[f32]) -> Self::F {
        unsafe { _mm512_maskz_loadu_ps(lanes(src.len()), src.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, dst: &mut [f32], v: Self::F) {
        unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), lanes(dst.len()), v) }
    }
    #[inline(always)]
    fn add(self, a: Self::F, b: Self::F) -> Self::F {
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: Self::F, b: Self::F) -> Self::F {
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: Self::F, b: Self::F) -> Self::F {
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn fma(self, a: Self::F, b: Self::F, c: Self::F) -> Self::F {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn min(self, a: Self::F, b: Self::F) -> Self::F {
        unsafe { _mm512_min_ps(a, b) }
    }
    #[inline(always)]
    fn max(self, a: Self::F, b: Self::F) -> Self::F {
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    fn gt_or_nan(self, a: Self::F, b: Self::F) -> Self::M {
        unsafe { _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(a, b) }
    }
    #[inline(always)]
    fn gt(self, a: Self::F, b: Self::F) -> Self::M {
        unsafe { _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b) }
    }
    #[inline(always)]
    fn is_nan(self, a: Self::F) -> Self::M {
        unsafe { _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, a) }
    }
    #[inline(always)]
    fn and_not(self, a: Self::M, b: Self::M) -> Self::M {
        a & !b
    }
    #[inline(always)]
    fn select(self, m: Self::M, t: Self::F, f: Self::F) -> Self::F {
        unsafe { _mm512_mask_blend_ps(m, f, t) }
    }
    #[inline(always)]
    fn keep(self, m: Self::M, v: Self::F) -> Self::F {
        unsafe { _mm512_maskz_mov_ps(m, v) }
    }
    #[inline(always)]
    fn to_array(self, v: Self::F) -> [f32; LANES] {
        let mut out = [0f32; LANES];
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
        out
    }
    #[inline(always)]
    fn tree_sum(self, v: Self::F) -> f32 {
        unsafe {
            let s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
            let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
        }
    }

    #[inline(always)]
    fn isplat(self, v: u32) -> Self::I {
        unsafe { _mm512_set1_epi32(v as i32) }
    }
    #[inline(always)]
    fn iota(self) -> Self::I {
        unsafe { _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) }
    }
    #[inline(always)]
    fn iadd(self, a: Self::I, b: Self::I) -> Self::I {
        unsafe { _mm512_add_epi32(a, b) }
    }
    #[inline(always)]
    fn isub(self, a: Self::I, b: Self::I) -> Self::I {
        unsafe { _mm512_sub_epi32(a, b) }
    }
    #[inline(always)]
    fn ixor(self, a: Self::I, b: Self::I) -> Self::I {
        unsafe { _mm512_xor_si512(a, b) }
    }
    #[inline(always)]
    fn imul(self, a: Self::I, b: Self::I) -> Self::I {
        unsafe { _mm512_mullo_epi32(a, b) }
    }
    #[inline(always)]
    fn ishr(self, a: Self::I, s: u32) -> Self::I {
        unsafe { _mm512_srl_epi32(a, _mm_cvtsi32_si128(s as i32)) }
    }
    #[inline(always)]
    fn ishl(self, a: Self::I, s: u32) -> Self::I {
        unsafe { _mm512_sll_epi32(a, _mm_cvtsi32_si128(s as i32)) }
    }
    #[inline(always)]
    fn ige(self, a: Self::I, b: Self::I) -> Self::M {
        unsafe { _mm512_cmpge_epu32_mask(a, b) }
    }
    #[inline(always)]
    fn ieq(self, a: Self::I, b: Self::I) -> Self::M {
        unsafe { _mm512_cmpeq_epi32_mask(a, b) }
    }
    #[inline(always)]
    fn iselect(self, m: Self::M, t: Self::I, f: Self::I) -> Self::I {
        unsafe { _mm512_mask_blend_epi32(m, f, t) }
    }
    #[inline(always)]
    fn f32_to_bits(self, v: Self::F) -> Self::I {
        unsafe { _mm512_castps_si512(v) }
    }
    #[inline(always)]
    fn f32_from_bits(self, v: Self::I) -> Self::F {
        unsafe { _mm512_castsi512_ps(v) }
    }
    #[inline(always)]
    fn load_u8(self, src: &[u8]) -> Self::I {
        unsafe {
            _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(
                lanes(src.len()),
                src.as_ptr() as *const i8,
            ))
        }
    }
    #[inline(always)]
    fn store_u8(self, dst: &mut [u8], v: Self::I) {
        unsafe {
            _mm512_mask_cvtepi32_storeu_epi8(dst.as_mut_ptr() as *mut i8, lanes(dst.len()), v)
        }
    }

    #[inline(always)]
    fn dzero(self) -> Self::D {
        unsafe { [_mm512_setzero_pd(); 2] }
    }
    #[inline(always)]
    fn dsplat(self, v: f64) -> Self::D {
        unsafe { [_mm512_set1_pd(v); 2] }
    }
    #[inline(always)]
    fn widen(self, v: Self::F) -> Self::D {
        unsafe {
            [
                _mm512_cvtps_pd(_mm512_castps512_ps256(v)),
                _mm512_cvtps_pd(_mm512_extractf32x8_ps::<1>(v)),
            ]
        }
    }
    #[inline(always)]
    fn dadd(self, a: Self::D, b: Self::D) -> Self::D {
        unsafe { [_mm512_add_pd(a[0], b[0]), _mm512_add_pd(a[1], b[1])] }
    }
    #[inline(always)]
    fn dfma(self, a: Self::D, b: Self::D, c: Self::D) -> Self::D {
        unsafe {
            [
                _mm512_fmadd_pd(a[0], b[0], c[0]),
                _mm512_fmadd_pd(a[1], b[1], c[1]),
            ]
        }
    }
    #[inline(always)]
    fn dto_array(self, v: Self::D) -> [f64; LANES] {
        let mut out = [0f64; LANES];
        unsafe {
            _mm512_storeu_pd(out.as_mut_ptr(), v[0]);
            _mm512_storeu_pd(out.as_mut_ptr().add(8), v[1]);
        }
        out
    }
}
