//! Barnes-Hut t-SNE of embeddings (bhtsne), seeded so that runs repeat.

use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::{Error, Result};

/// t-SNE settings. `Default` is scikit-learn 0.20's `TSNE()` as the paper's
/// `representation.py` used it (perplexity 30, early exaggeration 12, 1000 iterations,
/// Barnes-Hut with angle 0.5), plus a seed (the paper had none, so its plot cannot be repeated).
#[derive(Debug, Clone, PartialEq)]
pub struct TsneConfig {
    /// Effective number of neighbours.
    ///
    /// Default: `30.0` (paper / scikit-learn).
    pub perplexity: f64,
    /// Optimisation iterations.
    ///
    /// Default: `1000` (paper / scikit-learn).
    pub epochs: usize,
    /// Barnes-Hut angle (0 would be exact t-SNE, which this crate does not offer).
    ///
    /// Default: `0.5` (paper / scikit-learn).
    pub theta: f64,
    /// Early exaggeration for the first 250 iterations.
    ///
    /// Default: `12.0` (paper / scikit-learn).
    pub early_exaggeration: f64,
    /// Learning rate; `None` is `max(n / early_exaggeration / 4, 50)` (scikit-learn >= 1.2's
    /// "auto"; the paper's 0.20 used a fixed 200).
    ///
    /// Default: `None`.
    pub learning_rate: Option<f64>,
    /// Seed of the initial embedding, N(0, 1e-4) per coordinate as scikit-learn's random init.
    ///
    /// Default: `0`.
    pub seed: u64,
}

impl Default for TsneConfig {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            epochs: 1000,
            theta: 0.5,
            early_exaggeration: 12.0,
            learning_rate: None,
            seed: 0,
        }
    }
}

/// Embeds the rows of `points` (`[n, dim]`) in 2-D. With one rayon thread the result repeats
/// bit for bit for a seed; with more threads it repeats up to float summation order
/// (differences ~1e-3, invisible in a plot).
pub fn tsne(points: ArrayView2<'_, f32>, config: &TsneConfig) -> Result<Array2<f32>> {
    let (n, dim) = points.dim();
    if dim == 0 {
        return Err(Error::Empty("points columns (embedding dimension)"));
    }
    if !(config.perplexity.is_finite() && config.perplexity > 0.0) {
        return Err(Error::Invalid {
            field: "perplexity",
            rule: format!("must be > 0, got {}", config.perplexity),
        });
    }
    if !(config.theta.is_finite() && config.theta > 0.0) {
        return Err(Error::Invalid {
            field: "theta",
            rule: format!("must be > 0, got {}", config.theta),
        });
    }
    if config.epochs == 0 {
        return Err(Error::Invalid {
            field: "epochs",
            rule: "must be > 0".into(),
        });
    }
    if (n as f64 - 1.0) < 3.0 * config.perplexity {
        return Err(Error::TooFewSamples {
            n_samples: n,
            perplexity: config.perplexity,
        });
    }
    if let Some(i) = points.iter().position(|x| !x.is_finite()) {
        return Err(Error::Invalid {
            field: "points",
            rule: format!("value {i} (row-major) is not finite"),
        });
    }
    let data: Vec<f32> = points.iter().copied().collect();
    let rows: Vec<&[f32]> = data.chunks_exact(dim).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let normal = Normal::new(0.0f32, 1e-4).map_err(|e| Error::Invalid {
        field: "init",
        rule: e.to_string(),
    })?;
    let init: Vec<f32> = (0..n * 2).map(|_| normal.sample(&mut rng)).collect();
    let mut t: bhtsne::tSNE<f32, &[f32]> = bhtsne::tSNE::new(&rows);
    t.perplexity(config.perplexity as f32)
        .epochs(config.epochs)
        .early_exaggeration(config.early_exaggeration as f32)
        .initial_embedding(init);
    if let Some(lr) = config.learning_rate {
        t.learning_rate(lr as f32);
    }
    t.barnes_hut(config.theta as f32, |a, b| {
        a.iter()
            .zip(b.iter())
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt()
    });
    Array2::from_shape_vec((n, 2), t.embedding()).map_err(|e| Error::Invalid {
        field: "embedding",
        rule: e.to_string(),
    })
}
