//! The benchmark signal, shared with `benches/librosa_melspec_timing.py`: splitmix64 of the
//! sample index mapped to uniform noise in [-0.1, 0.1).

/// `n` samples of the benchmark noise.
pub fn bench_noise(n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect()
}
