//! The AVX2 + FMA vector unit: each 16-lane vector is two 256-bit registers (lanes 0-7 and
//! 8-15), flags are all-ones / all-zeros lanes.
//!
//! Every method is a safe function over `unsafe` intrinsics. That is sound because a value
//! of [`Avx2`] exists only where the CPU has AVX2 and FMA (its constructor is `unsafe`,
//! called by `simd::dispatch` after the plan's check), and because full-width loads and
//! stores happen only when the slice holds all 16 lanes; shorter slices go through a stack
//! buffer.

use std::arch::x86_64::*;

use super::{LANES, Simd};

/// Proof that the CPU has AVX2 and FMA.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// # Safety
    ///
    /// The CPU must have AVX2 and FMA.
    #[inline(always)]
    pub(crate) unsafe fn new_unchecked() -> Self {
        Self(())
    }
}

/// `[f(a[0], ..), f(a[1], ..)]`, written out (no closure, so the intrinsics inline into the
/// caller's target-feature context).
macro_rules! both {
    ($f:ident($($a:expr),*)) => {
        unsafe { [$f($($a[0]),*), $f($($a[1]),*)] }
    };
}

// SAFETY (every block below): see the module docs; a token proves the CPU features, and
// full-width pointer accesses happen only on slices of at least 16 elements.
impl Simd for Avx2 {
    type F = [__m256; 2];
    type I = [__m256i; 2];
    type M = [__m256; 2];
    type D = [__m256d; 4];

    #[inline(always)]
    fn splat(self, v: f32) -> Self::F {
        unsafe { [_mm256_set1_ps(v); 2] }
    }
    #[inline(always)]
    fn zero(self) -> Self::F {
        unsafe { [_mm256_setzero_ps(); 2] }
    }
    #[inline(always)]
    fn load(self, src: &[f32]) -> Self::F {
        if src.len() >= LANES {
            let p = src.as_ptr();
            unsafe { [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))] }
        } else {
            let mut buf = [0f32; LANES];
            buf[..src.len()].copy_from_slice(src);
            unsafe {
                [
                    _mm256_loadu_ps(buf.as_ptr()),
                    _mm256_loadu_ps(buf.as_ptr().add(8)),
                ]
            }
        }
    }
    #[inline(always)]
    fn store(self, dst: &mut [f32], v: Self::F) {
        if dst.len() >= LANES {
            let p = dst.as_mut_ptr();
            unsafe {
                _mm256_storeu_ps(p, v[0]);
                _mm256_storeu_ps(p.add(8), v[1]);
            }
        } else {
            let n = dst.len();
            dst.copy_from_slice(&self.to_array(v)[..n]);
        }
    }
    #[inline(always)]
    fn add(self, a: Self::F, b: Self::F) -> Self::F {
        both!(_mm256_add_ps(a, b))
    }
    #[inline(always)]
    fn sub(self, a: Self::F, b: Self::F) -> Self::F {
        both!(_mm256_sub_ps(a, b))
    }
    #[inline(always)]
    fn mul(self, a: Self::F, b: Self::F) -> Self::F {
        both!(_mm256_mul_ps(a, b))
    }
    #[inline(always)]
    fn fma(self, a: Self::F, b: Self::F, c: Self::F) -> Self::F {
        both!(_mm256_fmadd_ps(a, b, c))
    }
    #[inline(always)]
    fn min(self, a: Self::F, b: Self::F) -> Self::F {
        both!(_mm256_min_ps(a, b))
    }
    #[inline(always)]
    fn max(self, a: Self::F, b: Self::F) -> Self::F {
        both!(_mm256_max_ps(a, b))
    }
    #[inline(always)]
    fn gt_or_nan(self, a: Self::F, b: Self::F) -> Self::M {
        unsafe {
            [
                _mm256_cmp_ps::<_CMP_NLE_UQ>(a[0], b[0]),
                _mm256_cmp_ps::<_CMP_NLE_UQ>(a[1], b[1]),
            ]
        }
    }
    #[inline(always)]
    fn gt(self, a: Self::F, b: Self::F) -> Self::M {
        unsafe {
            [
                _mm256_cmp_ps::<_CMP_GT_OQ>(a[0], b[0]),
                _mm256_cmp_ps::<_CMP_GT_OQ>(a[1], b[1]),
            ]
        }
    }
    #[inline(always)]
    fn is_nan(self, a: Self::F) -> Self::M {
        unsafe {
            [
                _mm256_cmp_ps::<_CMP_UNORD_Q>(a[0], a[0]),
                _mm256_cmp_ps::<_CMP_UNORD_Q>(a[1], a[1]),
            ]
        }
    }
    #[inline(always)]
    fn and_not(self, a: Self::M, b: Self::M) -> Self::M {
        both!(_mm256_andnot_ps(b, a))
    }
    #[inline(always)]
    fn select(self, m: Self::M, t: Self::F, f: Self::F) -> Self::F {
        both!(_mm256_blendv_ps(f, t, m))
    }
    #[inline(always)]
    fn keep(self, m: Self::M, v: Self::F) -> Self::F {
        both!(_mm256_and_ps(m, v))
    }
    #[inline(always)]
    fn to_array(self, v: Self::F) -> [f32; LANES] {
        let mut out = [0f32; LANES];
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr(), v[0]);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), v[1]);
        }
        out
    }
    #[inline(always)]
    fn tree_sum(self, v: Self::F) -> f32 {
        unsafe {
            let s8 = _mm256_add_ps(v[0], v[1]);
            let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
        }
    }

    #[inline(always)]
    fn isplat(self, v: u32) -> Self::I {
        unsafe { [_mm256_set1_epi32(v as i32); 2] }
    }
    #[inline(always)]
    fn iota(self) -> Self::I {
        unsafe {
            [
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15),
            ]
        }
    }
    #[inline(always)]
    fn iadd(self, a: Self::I, b: Self::I) -> Self::I {
        both!(_mm256_add_epi32(a, b))
    }
    #[inline(always)]
    fn isub(self, a: Self::I, b: Self::I) -> Self::I {
        both!(_mm256_sub_epi32(a, b))
    }
    #[inline(always)]
    fn ixor(self, a: Self::I, b: Self::I) -> Self::I {
        both!(_mm256_xor_si256(a, b))
    }
    #[inline(always)]
    fn imul(self, a: Self::I, b: Self::I) -> Self::I {
        both!(_mm256_mullo_epi32(a, b))
    }
    #[inline(always)]
    fn ishr(self, a: Self::I, s: u32) -> Self::I {
        let n = unsafe { _mm_cvtsi32_si128(s as i32) };
        unsafe { [_mm256_srl_epi32(a[0], n), _mm256_srl_epi32(a[1], n)] }
    }
    #[inline(always)]
    fn ishl(self, a: Self::I, s: u32) -> Self::I {
        let n = unsafe { _mm_cvtsi32_si128(s as i32) };
        unsafe { [_mm256_sll_epi32(a[0], n), _mm256_sll_epi32(a[1], n)] }
    }
    #[inline(always)]
    fn ige(self, a: Self::I, b: Self::I) -> Self::M {
        unsafe {
            [
                _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_max_epu32(a[0], b[0]), a[0])),
                _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_max_epu32(a[1], b[1]), a[1])),
            ]
        }
    }
    #[inline(always)]
    fn ieq(self, a: Self::I, b: Self::I) -> Self::M {
        unsafe {
            [
                _mm256_castsi256_ps(_mm256_cmpeq_epi32(a[0], b[0])),
                _mm256_castsi256_ps(_mm256_cmpeq_epi32(a[1], b[1])),
            ]
        }
    }
    #[inline(always)]
    fn iselect(self, m: Self::M, t: Self::I, f: Self::I) -> Self::I {
        unsafe {
            [
                _mm256_castps_si256(_mm256_blendv_ps(
                    _mm256_castsi256_ps(f[0]),
                    _mm256_castsi256_ps(t[0]),
                    m[0],
                )),
                _mm256_castps_si256(_mm256_blendv_ps(
                    _mm256_castsi256_ps(f[1]),
                    _mm256_castsi256_ps(t[1]),
                    m[1],
                )),
            ]
        }
    }
    #[inline(always)]
    fn f32_to_bits(self, v: Self::F) -> Self::I {
        both!(_mm256_castps_si256(v))
    }
    #[inline(always)]
    fn f32_from_bits(self, v: Self::I) -> Self::F {
        both!(_mm256_castsi256_ps(v))
    }
    #[inline(always)]
    fn load_u8(self, src: &[u8]) -> Self::I {
        let bytes = if src.len() >= LANES {
            unsafe { _mm_loadu_si128(src.as_ptr() as *const __m128i) }
        } else {
            let mut buf = [0u8; LANES];
            buf[..src.len()].copy_from_slice(src);
            unsafe { _mm_loadu_si128(buf.as_ptr() as *const __m128i) }
        };
        unsafe {
            [
                _mm256_cvtepu8_epi32(bytes),
                _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(bytes)),
            ]
        }
    }
    #[inline(always)]
    fn store_u8(self, dst: &mut [u8], v: Self::I) {
        let mask = unsafe { _mm256_set1_epi32(0xFF) };
        // Low bytes of lanes 0-7 and 8-15: pack to u16 (values <= 255 after the mask, so no
        // saturation), undo the per-128-bit interleave, pack to u8.
        let bytes = unsafe {
            let (a, b) = (_mm256_and_si256(v[0], mask), _mm256_and_si256(v[1], mask));
            let words = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(a, b));
            _mm_packus_epi16(
                _mm256_castsi256_si128(words),
                _mm256_extracti128_si256::<1>(words),
            )
        };
        if dst.len() >= LANES {
            unsafe { _mm_storeu_si128(dst.as_mut_ptr() as *mut __m128i, bytes) };
        } else {
            let mut buf = [0u8; LANES];
            unsafe { _mm_storeu_si128(buf.as_mut_ptr() as *mut __m128i, bytes) };
            let n = dst.len();
            dst.copy_from_slice(&buf[..n]);
        }
    }

    #[inline(always)]
    fn dzero(self) -> Self::D {
        unsafe { [_mm256_setzero_pd(); 4] }
    }
    #[inline(always)]
    fn dsplat(self, v: f64) -> Self::D {
        unsafe { [_mm256_set1_pd(v); 4] }
    }
    #[inline(always)]
    fn widen(self, v: Self::F) -> Self::D {
        unsafe {
            [
                _mm256_cvtps_pd(_mm256_castps256_ps128(v[0])),
                _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v[0])),
                _mm256_cvtps_pd(_mm256_castps256_ps128(v[1])),
                _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v[1])),
            ]
        }
    }
    #[inline(always)]
    fn dadd(self, a: Self::D, b: Self::D) -> Self::D {
        unsafe {
            [
                _mm256_add_pd(a[0], b[0]),
                _mm256_add_pd(a[1], b[1]),
                _mm256_add_pd(a[2], b[2]),
                _mm256_add_pd(a[3], b[3]),
            ]
        }
    }
    #[inline(always)]
    fn dfma(self, a: Self::D, b: Self::D, c: Self::D) -> Self::D {
        unsafe {
            [
                _mm256_fmadd_pd(a[0], b[0], c[0]),
                _mm256_fmadd_pd(a[1], b[1], c[1]),
                _mm256_fmadd_pd(a[2], b[2], c[2]),
                _mm256_fmadd_pd(a[3], b[3], c[3]),
            ]
        }
    }
    #[inline(always)]
    fn dto_array(self, v: Self::D) -> [f64; LANES] {
        let mut out = [0f64; LANES];
        for (i, r) in v.iter().enumerate() {
            unsafe { _mm256_storeu_pd(out.as_mut_ptr().add(4 * i), *r) };
        }
        out
    }
}
