//! Quick timing: `cargo run --release -p melspec --example timing -- [SECONDS]`. The criterion
//! bench (`cargo bench --bench melspec` at the workspace root) is the reference measurement.
use std::time::Instant;

use melspec::{FftPrecision, MelConfig, MelSpectrogram};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let mut state = 1u64;
    let y: Vec<f32> = (0..seconds * 16_000)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect();
    let only_f64 = std::env::var_os("ONLY_F64").is_some();
    for precision in [FftPrecision::F64, FftPrecision::F32] {
        if only_f64 && precision == FftPrecision::F32 {
            continue;
        }
        let plan = MelSpectrogram::new(MelConfig {
            fft_precision: precision,
            ..MelConfig::default()
        })?;
        for threads in [1, rayon::current_num_threads()]
            .into_iter()
            .take(if only_f64 { 1 } else { 2 })
        {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                let db = pool.install(|| plan.db(&y))?;
                std::hint::black_box(db);
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!(
                "{precision:?} {threads} thread(s): {:.1} ms for {seconds} s = {:.1} us per audio-second",
                best * 1e3,
                best * 1e6 / seconds as f64
            );
        }
    }
    Ok(())
}
