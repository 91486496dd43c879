//! The ELU's `expm1` and the counter-based hash behind the dropout masks, as scalar
//! functions (the definitions, and what the tests compare with) and as 16-lane vector
//! functions built from the same operations.

use crate::simd::Simd;

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split so that k * LN2_HI is exact for |k| < 2^9.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
// Adding and subtracting 1.5 * 2^23 rounds to the nearest integer (|y| < 2^22).
const ROUND: f32 = 12_582_912.0;
const POLY: [f32; 7] = [
    1.0 / 40320.0,
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
];

/// `expm1(x)` for `x <= 0` (what the ELU needs), branch-free, within 2 ulp of the correctly
/// rounded value (checked against `f32::exp_m1` in the tests). Cody-Waite reduction
/// `x = k ln2 + r`, `|r| <= ln2 / 2`, a degree-8 Taylor polynomial for `expm1(r)` by Horner,
/// then `expm1(x) = 2^k expm1(r) + (2^k - 1)`. Inputs below -87 give -1 (as the true value
/// rounds to). Every product-and-sum is one fused multiply-add (`f32::mul_add`, an FMA
/// instruction where the target has one), the rest plain IEEE operations and bit moves, so the
/// vector builds give the same bits.
#[inline(always)]
pub fn expm1_nonpositive(x: f32) -> f32 {
    let xc = if -87.0 > x { -87.0 } else { x };
    let shifted = xc.mul_add(LOG2E, ROUND);
    let k = shifted - ROUND;
    let r = k.mul_add(-LN2_LO, k.mul_add(-LN2_HI, xc));
    let mut poly = r.mul_add(POLY[0], POLY[1]);
    for &c in &POLY[2..] {
        poly = r.mul_add(poly, c);
    }
    let p = (r * r).mul_add(poly, r);
    // 2^k for k in [-126, 0] from its exponent bits. The integer k sits in the low mantissa
    // bits of `shifted` (its exponent is fixed by ROUND).
    let k_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(k_bits.wrapping_add(127) << 23);
    scale.mul_add(p, scale - 1.0)
}

/// Keras/TF ELU with alpha 1: `x` for `x > 0`, `expm1(x)` otherwise; NaN stays NaN.
#[inline(always)]
pub fn elu(x: f32) -> f32 {
    let neg = expm1_nonpositive(if x < 0.0 { x } else { 0.0 });
    if x > 0.0 || x.is_nan() { x } else { neg }
}

/// [`elu`] on 16 lanes, step for step (`min(x, 0)` is `x < 0 ? x : 0`, NaN giving 0;
/// `max(-87, xn)` keeps `xn` unless it is below -87).
#[inline(always)]
pub(crate) fn elu_vec<S: Simd>(s: S, x: S::F) -> S::F {
    let zero = s.zero();
    let round = s.splat(ROUND);
    let xn = s.min(x, zero);
    let xc = s.max(s.splat(-87.0), xn);
    let shifted = s.fma(xc, s.splat(LOG2E), round);
    let k = s.sub(shifted, round);
    let r = s.fma(k, s.splat(-LN2_LO), s.fma(k, s.splat(-LN2_HI), xc));
    let mut poly = s.fma(r, s.splat(POLY[0]), s.splat(POLY[1]));
    for &c in &POLY[2..] {
        poly = s.fma(r, poly, s.splat(c));
    }
    let p = s.fma(s.mul(r, r), poly, r);
    let k_bits = s.isub(s.f32_to_bits(shifted), s.f32_to_bits(round));
    let scale = s.f32_from_bits(s.ishl(s.iadd(k_bits, s.isplat(127)), 23));
    let neg = s.fma(scale, p, s.sub(scale, s.splat(1.0)));
    s.select(s.gt_or_nan(x, zero), x, neg)
}

/// murmur3's 32-bit finaliser.
#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
fn fmix32_vec<S: Simd>(s: S, mut h: S::I) -> S::I {
    h = s.ixor(h, s.ishr(h, 16));
    h = s.imul(h, s.isplat(0x85eb_ca6b));
    h = s.ixor(h, s.ishr(h, 13));
    h = s.imul(h, s.isplat(0xc2b2_ae35));
    s.ixor(h, s.ishr(h, 16))
}

/// A dropout mask as a pure function of (key, element index): the same mask for any thread
/// count or instruction set, recomputed in the backward pass instead of stored. An element
/// is kept when `fmix32(fmix32(index ^ key_lo) + key_hi) >= rate * 2^32`, and scaled by
/// `1 / (1 - rate)` (inverted dropout, as Keras/TF).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropoutMask {
    key_lo: u32,
    key_hi: u32,
    threshold: u32,
    scale: f32,
    off: bool,
}

impl DropoutMask {
    /// The mask of `rate` (in `[0, 1)`; anything `<= 0` keeps everything) under `key`.
    pub fn new(rate: f64, key: u64) -> Self {
        let threshold = (rate * 4_294_967_296.0).round().clamp(0.0, u32::MAX as f64) as u32;
        Self {
            key_lo: key as u32,
            key_hi: (key >> 32) as u32,
            threshold,
            scale: (1.0 / (1.0 - rate)) as f32,
            off: rate <= 0.0,
        }
    }

    /// A mask that keeps every element unscaled (rate 0).
    pub fn none() -> Self {
        Self::new(0.0, 0)
    }

    /// Whether the rate is 0 (every element kept, unscaled).
    pub fn is_off(&self) -> bool {
        self.off
    }

    /// The factor applied to kept elements, `1 / (1 - rate)`.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Whether element `index` is kept.
    #[inline(always)]
    pub fn keep(&self, index: u32) -> bool {
        self.off || fmix32(fmix32(index ^ self.key_lo).wrapping_add(self.key_hi)) >= self.threshold
    }

    /// `x` after dropout at element `index`: `x * scale` if kept, else 0 (`x` when off).
    #[inline(always)]
    pub fn apply(&self, index: u32, x: f32) -> f32 {
        if self.off {
            x
        } else if self.keep(index) {
            x * self.scale
        } else {
            0.0
        }
    }

    /// [`apply`](Self::apply) on the 16 consecutive elements from `first`.
    #[inline(always)]
    pub(crate) fn apply_vec<S: Simd>(&self, s: S, first: u32, x: S::F) -> S::F {
        if self.off {
            return x;
        }
        let idx = s.iadd(s.isplat(first), s.iota());
        let h1 = fmix32_vec(s, s.ixor(idx, s.isplat(self.key_lo)));
        let h2 = fmix32_vec(s, s.iadd(h1, s.isplat(self.key_hi)));
        let keep = s.ige(h2, s.isplat(self.threshold));
        s.keep(keep, s.mul(x, s.splat(self.scale)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        let (ia, ib) = (a.to_bits() as i32, b.to_bits() as i32);
        (ia - ib).unsigned_abs()
    }

    #[test]
    fn expm1_is_within_two_ulp_of_libm() {
        let mut worst = (0u32, 0f32);
        let mut x = -100.0f32;
        while x <= 0.0 {
            let u = ulps(expm1_nonpositive(x), x.exp_m1());
            if u > worst.0 {
                worst = (u, x);
            }
            x += 0.000_731;
        }
        for e in -40..-1 {
            let x = -(2f32.powi(e)) * 1.37;
            assert!(ulps(expm1_nonpositive(x), x.exp_m1()) <= 2, "{x}");
        }
        assert!(worst.0 <= 2, "{} ulp at {}", worst.0, worst.1);
        assert_eq!(expm1_nonpositive(0.0), 0.0);
        assert_eq!(expm1_nonpositive(-1e4), -1.0);
        assert_eq!(expm1_nonpositive(f32::NEG_INFINITY), -1.0);
    }

    #[test]
    fn elu_keeps_positives_and_nan() {
        assert_eq!(elu(2.5), 2.5);
        assert_eq!(elu(0.0), 0.0);
        assert!(elu(f32::NAN).is_nan());
        assert!((elu(-1.0) - (-1.0f32).exp_m1()).abs() < 1e-7);
    }

    #[test]
    fn dropout_keeps_the_expected_fraction_and_is_keyed() {
        for rate in [0.1, 0.3, 0.5] {
            let m = DropoutMask::new(rate, 42);
            let n = 200_000u32;
            let kept = (0..n).filter(|&i| m.keep(i)).count() as f64 / n as f64;
            assert!((kept - (1.0 - rate)).abs() < 0.005, "{rate}: kept {kept}");
        }
        let (a, b) = (DropoutMask::new(0.5, 1), DropoutMask::new(0.5, 2));
        let same = (0..10_000u32).filter(|&i| a.keep(i) == b.keep(i)).count();
        assert!((4_500..5_500).contains(&same), "{same}");
        let off = DropoutMask::none();
        assert!(off.is_off() && (0..1000u32).all(|i| off.keep(i)));
        assert_eq!(off.scale(), 1.0);
        assert_eq!(off.apply(3, 2.5), 2.5);
    }
}
