//! Writes the bootstrap reference case that `tests/bootstrap_reference.py` recomputes with
//! numpy and scikit-learn: synthetic song predictions, the resample indices this crate draws
//! for them, and McNemar counts for scipy. Regenerate both files with
//!
//! ```sh
//! cargo run -p eval --example bootstrap_case > crates/eval/tests/data/bootstrap_case.json
//! python3 crates/eval/tests/bootstrap_reference.py crates/eval/tests/data/bootstrap_case.json \
//!     > crates/eval/tests/data/bootstrap_expected.json
//! ```

use eval::{BootstrapParams, bootstrap_indices};
use rand::{RngExt, SeedableRng};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let case = case();
    println!("{}", serde_json::to_string(&case)?);
    Ok(())
}

/// The case: 40 songs of 5 classes (one class with a single song), 1-12 slices each.
pub fn case() -> serde_json::Value {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    let n_classes = 5usize;
    let mut songs = Vec::new();
    for s in 0..40usize {
        let label = if s == 0 { 4 } else { s % 4 };
        let predicted = if rng.random_bool(0.6) {
            label
        } else {
            rng.random_range(0..n_classes)
        };
        let n = rng.random_range(1..13usize);
        let slices: Vec<[usize; 2]> = (0..n)
            .map(|_| {
                let p = if rng.random_bool(0.5) {
                    label
                } else {
                    rng.random_range(0..n_classes)
                };
                [label, p]
            })
            .collect();
        songs.push(serde_json::json!({"label": label, "predicted": predicted, "slices": slices}));
    }
    let params = BootstrapParams {
        resamples: 300,
        seed: 11,
    };
    let indices = bootstrap_indices(songs.len(), &params).unwrap_or_default();
    let mcnemar: Vec<[u64; 2]> = vec![
        [0, 0],
        [3, 3],
        [0, 5],
        [1, 4],
        [2, 9],
        [7, 19],
        [40, 61],
        [120, 170],
        [13, 2],
    ];
    serde_json::json!({
        "n_classes": n_classes,
        "songs": songs,
        "params": params,
        "indices": indices,
        "mcnemar": mcnemar,
    })
}
