//! The portable vector unit: 16-lane arrays and plain Rust, the reference of the others.

use super::{LANES, Simd};

/// Runs anywhere.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Portable;

#[inline(always)]
fn map<T: Copy, U: Copy + Default>(a: [T; LANES], f: impl Fn(T) -> U) -> [U; LANES] {
    let mut out = [U::default(); LANES];
    for (o, v) in out.iter_mut().zip(a) {
        *o = f(v);
    }
    out
}

#[inline(always)]
fn zip<T: Copy, U: Copy + Default>(
    a: [T; LANES],
    b: [T; LANES],
    f: impl Fn(T, T) -> U,
) -> [U; LANES] {
    let mut out = [U::default(); LANES];
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = f(x, y);
    }
    out
}

impl Simd for Portable {
    type F = [f32; LANES];
    type I = [u32; LANES];
    type M = [bool; LANES];
    type D = [f64; LANES];

    #[inline(always)]
    fn splat(self, v: f32) -> Self::F {
        [v; LANES]
    }
    #[inline(always)]
    fn zero(self) -> Self::F {
        [0.0; LANES]
    }
    #[inline(always)]
    fn load(self, src: &[f32]) -> Self::F {
        let mut out = [0.0; LANES];
        let n = src.len().min(LANES);
        out[..n].copy_from_slice(&src[..n]);
        out
    }
    #[inline(always)]
    fn store(self, dst: &mut [f32], v: Self::F) {
        let n = dst.len().min(LANES);
        dst[..n].copy_from_slice(&v[..n]);
    }
    #[inline(always)]
    fn add(self, a: Self::F, b: Self::F) -> Self::F {
        zip(a, b, |x, y| x + y)
    }
    #[inline(always)]
    fn sub(self, a: Self::F, b: Self::F) -> Self::F {
        zip(a, b, |x, y| x - y)
    }
    #[inline(always)]
    fn mul(self, a: Self::F, b: Self::F) -> Self::F {
        zip(a, b, |x, y| x * y)
    }
    #[inline(always)]
    fn fma(self, a: Self::F, b: Self::F, c: Self::F) -> Self::F {
        let mut out = [0.0; LANES];
        for i in 0..LANES {
            out[i] = a[i].mul_add(b[i], c[i]);
        }
        out
    }
    #[inline(always)]
    fn min(self, a: Self::F, b: Self::F) -> Self::F {
        zip(a, b, |x, y| if x < y { x } else { y })
    }
    #[inline(always)]
    fn max(self, a: Self::F, b: Self::F) -> Self::F {
        zip(a, b, |x, y| if x > y { x } else { y })
    }
    #[inline(always)]
    fn gt_or_nan(self, a: Self::F, b: Self::F) -> Self::M {
        zip(a, b, |x, y| x > y || x.is_nan() || y.is_nan())
    }
    #[inline(always)]
    fn gt(self, a: Self::F, b: Self::F) -> Self::M {
        zip(a, b, |x, y| x > y)
    }
    #[inline(always)]
    fn is_nan(self, a: Self::F) -> Self::M {
        map(a, f32::is_nan)
    }
    #[inline(always)]
    fn and_not(self, a: Self::M, b: Self::M) -> Self::M {
        zip(a, b, |x, y| x & !y)
    }
    #[inline(always)]
    fn select(self, m: Self::M, t: Self::F, f: Self::F) -> Self::F {
        let mut out = [0.0; LANES];
        for i in 0..LANES {
            out[i] = if m[i] { t[i] } else { f[i] };
        }
        out
    }
    #[inline(always)]
    fn keep(self, m: Self::M, v: Self::F) -> Self::F {
        self.select(m, v, [0.0; LANES])
    }
    #[inline(always)]
    fn to_array(self, v: Self::F) -> [f32; LANES] {
        v
    }
    #[inline(always)]
    fn tree_sum(self, mut v: Self::F) -> f32 {
        for width in [8, 4, 2, 1] {
            for i in 0..width {
                v[i] += v[i + width];
            }
        }
        v[0]
    }

    #[inline(always)]
    fn isplat(self, v: u32) -> Self::I {
        [v; LANES]
    }
    #[inline(always)]
    fn iota(self) -> Self::I {
        std::array::from_fn(|i| i as u32)
    }
    #[inline(always)]
    fn iadd(self, a: Self::I, b: Self::I) -> Self::I {
        zip(a, b, u32::wrapping_add)
    }
    #[inline(always)]
    fn isub(self, a: Self::I, b: Self::I) -> Self::I {
        zip(a, b, u32::wrapping_sub)
    }
    #[inline(always)]
    fn ixor(self, a: Self::I, b: Self::I) -> Self::I {
        zip(a, b, |x, y| x ^ y)
    }
    #[inline(always)]
    fn imul(self, a: Self::I, b: Self::I) -> Self::I {
        zip(a, b, u32::wrapping_mul)
    }
    #[inline(always)]
    fn ishr(self, a: Self::I, s: u32) -> Self::I {
        map(a, |x| x.checked_shr(s).unwrap_or(0))
    }
    #[inline(always)]
    fn ishl(self, a: Self::I, s: u32) -> Self::I {
        map(a, |x| x.checked_shl(s).unwrap_or(0))
    }
    #[inline(always)]
    fn ige(self, a: Self::I, b: Self::I) -> Self::M {
        zip(a, b, |x, y| x >= y)
    }
    #[inline(always)]
    fn ieq(self, a: Self::I, b: Self::I) -> Self::M {
        zip(a, b, |x, y| x == y)
    }
    #[inline(always)]
    fn iselect(self, m: Self::M, t: Self::I, f: Self::I) -> Self::I {
        let mut out = [0; LANES];
        for i in 0..LANES {
            out[i] = if m[i] { t[i] } else { f[i] };
        }
        out
    }
    #[inline(always)]
    fn f32_to_bits(self, v: Self::F) -> Self::I {
        map(v, f32::to_bits)
    }
    #[inline(always)]
    fn f32_from_bits(self, v: Self::I) -> Self::F {
        map(v, f32::from_bits)
    }
    #[inline(always)]
    fn load_u8(self, src: &[u8]) -> Self::I {
        let mut out = [0; LANES];
        for (o, &b) in out.iter_mut().zip(src) {
            *o = u32::from(b);
        }
        out
    }
    #[inline(always)]
    fn store_u8(self, dst: &mut [u8], v: Self::I) {
        for (d, x) in dst.iter_mut().zip(v) {
            *d = x as u8;
        }
    }

    #[inline(always)]
    fn dzero(self) -> Self::D {
        [0.0; LANES]
    }
    #[inline(always)]
    fn dsplat(self, v: f64) -> Self::D {
        [v; LANES]
    }
    #[inline(always)]
    fn widen(self, v: Self::F) -> Self::D {
        map(v, f64::from)
    }
    #[inline(always)]
    fn dadd(self, a: Self::D, b: Self::D) -> Self::D {
        zip(a, b, |x, y| x + y)
    }
    #[inline(always)]
    fn dfma(self, a: Self::D, b: Self::D, c: Self::D) -> Self::D {
        let mut out = [0.0; LANES];
        for i in 0..LANES {
            out[i] = a[i].mul_add(b[i], c[i]);
        }
        out
    }
    #[inline(always)]
    fn dto_array(self, v: Self::D) -> [f64; LANES] {
        v
    }
}
