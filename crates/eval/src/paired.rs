//! Paired comparison of two systems on the same test songs: the paired (song-level) bootstrap
//! of the F1 differences and the exact McNemar test on song correctness.

use serde::{Deserialize, Serialize};

use crate::bootstrap::{
    BootstrapParams, Interval, SongPredictions, bootstrap_statistic, percentile_interval,
};
use crate::{Error, Result};

/// The exact McNemar test of two classifiers on the same items.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct McNemar {
    /// Items only the first got right.
    pub first_only: u64,
    /// Items only the second got right.
    pub second_only: u64,
    /// Two-sided exact p-value: the binomial test of `first_only` successes in
    /// `first_only + second_only` trials at 1/2 (`scipy.stats.binomtest(...).pvalue`); 1 when
    /// the two never disagree.
    pub p_value: f64,
}

/// The exact McNemar test on per-item correctness of two classifiers.
pub fn mcnemar_exact(first_correct: &[bool], second_correct: &[bool]) -> Result<McNemar> {
    if first_correct.len() != second_correct.len() {
        return Err(Error::LengthMismatch {
            what: "first_correct and second_correct",
            left: first_correct.len(),
            right: second_correct.len(),
        });
    }
    let first_only = first_correct
        .iter()
        .zip(second_correct)
        .filter(|(a, b)| **a && !**b)
        .count() as u64;
    let second_only = first_correct
        .iter()
        .zip(second_correct)
        .filter(|(a, b)| !**a && **b)
        .count() as u64;
    Ok(McNemar {
        first_only,
        second_only,
        p_value: binomial_two_sided_half(first_only.min(second_only), first_only + second_only),
    })
}

/// Two-sided p-value of `k` successes in `n` trials at p = 1/2: `min(1, 2 P(X <= k))` for
/// `k <= n / 2` (the distribution is symmetric, so this is scipy's sum of the outcomes no more
/// likely than `k`). Summed in log space: exact for any `n` a u64 holds, up to rounding.
fn binomial_two_sided_half(k: u64, n: u64) -> f64 {
    if n == 0 || 2 * k >= n {
        return 1.0;
    }
    // ln C(n, i) built up term by term; ln P(X = i) = ln C(n, i) - n ln 2.
    let ln2n = n as f64 * std::f64::consts::LN_2;
    let mut ln_c = 0.0f64;
    let mut terms = Vec::with_capacity(k as usize + 1);
    for i in 0..=k {
        if i > 0 {
            ln_c += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        terms.push(ln_c - ln2n);
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tail = max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

/// The difference `second - first` of one statistic, with its paired bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// `second - first` on the data as they are, and its interval.
    pub difference: Interval,
    /// The first system's value.
    pub first: f64,
    /// The second system's value.
    pub second: f64,
}

/// What [`paired_bootstrap`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedReport {
    /// Song-level weighted F1, second minus first.
    pub song_f1: Difference,
    /// Slice-level weighted F1, second minus first.
    pub slice_f1: Difference,
    /// Per class, the difference of its song-level F1 over the resamples in which it has test
    /// songs (`None` for a class without test songs).
    pub per_class: Vec<Option<Difference>>,
    /// The exact McNemar test on song correctness.
    pub mcnemar: McNemar,
    /// Songs compared.
    pub songs: usize,
    /// The settings.
    pub params: BootstrapParams,
}

/// Paired bootstrap of two systems' predictions on the same songs: every resample draws one
/// set of songs and scores both systems on it, so the interval of the difference is not
/// widened by the variation both share. Refuses two sets of songs that differ (labels or slice
/// labels), naming the first song that does.
pub fn paired_bootstrap(
    first: &SongPredictions,
    second: &SongPredictions,
    params: &BootstrapParams,
) -> Result<PairedReport> {
    if first.is_empty() {
        return Err(Error::Empty("songs"));
    }
    if first.n_classes() != second.n_classes() {
        return Err(Error::Invalid {
            field: "classes",
            rule: format!(
                "the two systems have {} and {} classes",
                first.n_classes(),
                second.n_classes()
            ),
        });
    }
    if let Some(s) = first.first_difference(second) {
        return Err(Error::Invalid {
            field: "songs",
            rule: format!(
                "the two systems were not tested on the same songs: song {s} differs (count, label or slices)"
            ),
        });
    }
    let n_classes = first.n_classes();
    let mut slice_diffs = Vec::with_capacity(params.resamples);
    let mut class_diffs: Vec<Vec<f64>> = vec![Vec::new(); n_classes];
    let f1_of = |d: &SongPredictions, w: Option<&[u32]>, c: usize| -> Option<f64> {
        let (mut tp, mut pred, mut truth) = (0u64, 0u64, 0u64);
        for s in 0..d.len() {
            let k = w.map_or(1, |w| u64::from(w[s]));
            let (t, p) = (d.song_labels()[s], d.song_predictions()[s]);
            truth += k * u64::from(t == c);
            pred += k * u64::from(p == c);
            tp += k * u64::from(t == c && p == c);
        }
        (truth > 0).then(|| 2.0 * tp as f64 / (pred + truth) as f64)
    };
    let song_diffs = bootstrap_statistic(first.len(), params, |w| {
        slice_diffs.push(second.slice_f1(Some(w)) - first.slice_f1(Some(w)));
        for (c, v) in class_diffs.iter_mut().enumerate() {
            if let (Some(a), Some(b)) = (f1_of(first, Some(w), c), f1_of(second, Some(w), c)) {
                v.push(b - a);
            }
        }
        second.song_f1(Some(w)) - first.song_f1(Some(w))
    })?;
    let diff = |a: f64, b: f64, values: &[f64]| Difference {
        difference: Interval {
            value: b - a,
            ci95: percentile_interval(values),
        },
        first: a,
        second: b,
    };
    let per_class = (0..n_classes)
        .map(|c| match (f1_of(first, None, c), f1_of(second, None, c)) {
            (Some(a), Some(b)) => Some(diff(a, b, &class_diffs[c])),
            _ => None,
        })
        .collect();
    let correct = |d: &SongPredictions| (0..d.len()).map(|s| d.song_correct(s)).collect::<Vec<_>>();
    Ok(PairedReport {
        song_f1: diff(first.song_f1(None), second.song_f1(None), &song_diffs),
        slice_f1: diff(first.slice_f1(None), second.slice_f1(None), &slice_diffs),
        per_class,
        mcnemar: mcnemar_exact(&correct(first), &correct(second))?,
        songs: first.len(),
        params: *params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tail_small_cases() {
        // n = 5, k = 0: 2 / 32.
        assert!((binomial_two_sided_half(0, 5) - 0.0625).abs() < 1e-15);
        // n = 4, k = 1: 2 * 5 / 16.
        assert!((binomial_two_sided_half(1, 4) - 0.625).abs() < 1e-15);
        assert_eq!(binomial_two_sided_half(3, 6), 1.0);
        assert_eq!(binomial_two_sided_half(0, 0), 1.0);
        // Large n does not underflow to 0 or overflow.
        let p = binomial_two_sided_half(4_000, 10_000);
        assert!(p > 0.0 && p < 1e-80, "{p}");
    }
}
