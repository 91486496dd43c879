//! Helpers shared by the fused kernels' tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::kernels::PORTABLE_ONLY;

/// A deterministic pseudo-random sequence in [-1, 1).
pub(crate) fn noise(seed: u64, len: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Runs `f` with the portable kernels and with the best ones; both results must be equal bit
/// for bit (the AVX-512 kernels repeat the portable arithmetic step for step).
pub(crate) fn both<T: PartialEq + std::fmt::Debug>(f: impl Fn() -> T) -> (T, T) {
    static FLAG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = FLAG.lock().unwrap_or_else(|e| e.into_inner());
    PORTABLE_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
    let portable = f();
    PORTABLE_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
    (portable, f())
}

pub(crate) fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
