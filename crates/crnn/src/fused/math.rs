//! Scalar building blocks written so that LLVM vectorises them over channels: a branch-free
//! `expm1` for the ELU, and the counter-based hash behind the dropout masks.

/// `expm1(x)` for `x <= 0` (what the ELU needs), branch-free, within 2 ulp of the correctly
/// rounded value (checked against `f32::exp_m1` in the tests). Cody-Waite reduction
/// `x = k ln2 + r`, `|r| <= ln2 / 2`, a degree-8 Taylor polynomial for `expm1(r)`, then
/// `expm1(x) = 2^k expm1(r) + (2^k - 1)`. Inputs below -87 give -1 (as the true value rounds to).
/// Uses only `+ - *` and bit moves, so every instruction set gives the same bits.
#[inline(always)]
pub(crate) fn expm1_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that k * LN2_HI is exact for |k| < 2^9.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer (|y| < 2^22).
    const ROUND: f32 = 12_582_912.0;
    let xc = if x < -87.0 { -87.0 } else { x };
    let shifted = xc * LOG2E + ROUND;
    let k = shifted - ROUND;
    let r = (xc - k * LN2_HI) - k * LN2_LO;
    let p = r + r
        * r
        * (0.5
            + r * (1.0 / 6.0
                + r * (1.0 / 24.0
                    + r * (1.0 / 120.0
                        + r * (1.0 / 720.0 + r * (1.0 / 5040.0 + r * (1.0 / 40320.0)))))));
    // 2^k for k in [-126, 0], a normal float built from its exponent bits. The integer k sits
    // in the low mantissa bits of `shifted` (its exponent is fixed by ROUND), so no
    // float-to-int conversion (Rust's saturating `as` would not vectorise).
    let k_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(k_bits.wrapping_add(127) << 23);
    scale * p + (scale - 1.0)
}

/// Keras/TF ELU with alpha 1: `x` for `x > 0`, `expm1(x)` otherwise; NaN stays NaN.
#[inline(always)]
pub(crate) fn elu(x: f32) -> f32 {
    let neg = expm1_nonpositive(if x < 0.0 { x } else { 0.0 });
    if x > 0.0 || x.is_nan() { x } else { neg }
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

/// A dropout mask as a pure function of (key, element index): the same mask for any thread
/// count or instruction set, recomputed in the backward pass instead of stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DropoutMask {
    key_lo: u32,
    key_hi: u32,
    /// An element is kept when its hash is `>= threshold` (`rate * 2^32`).
    threshold: u32,
    /// `1 / (1 - rate)`, applied to kept elements (inverted dropout, as Keras/TF).
    pub scale: f32,
    /// Rate 0: everything is kept unscaled.
    pub off: bool,
}

impl DropoutMask {
    /// The mask of `rate` under `key`.
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

    /// `(key low word, key high word, threshold)`, for the vectorised `keep`.
    pub fn words(&self) -> (u32, u32, u32) {
        (self.key_lo, self.key_hi, self.threshold)
    }

    /// Whether element `index` is kept.
    #[inline(always)]
    pub fn keep(&self, index: u32) -> bool {
        fmix32(fmix32(index ^ self.key_lo).wrapping_add(self.key_hi)) >= self.threshold
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
            let want = x.exp_m1();
            let got = expm1_nonpositive(x);
            let u = ulps(got, want);
            if u > worst.0 {
                worst = (u, x);
            }
            x += 0.000_731;
        }
        // Tiny arguments, where expm1(x) ~ x.
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
        let off = DropoutMask::new(0.0, 7);
        assert!(off.off && (0..1000u32).all(|i| off.keep(i)));
        assert_eq!(off.scale, 1.0);
    }
}
