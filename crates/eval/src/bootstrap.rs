//! Song-level (cluster) bootstrap intervals for the weighted F1 at song and slice level.
//!
//! The unit of resampling is the song: a resample draws `n_songs` songs with replacement,
//! each with all of its slices, and recomputes the statistic on the drawn multiset. Slices of
//! one song are not independent (one recording, one artist), so resampling slices one by one
//! would give intervals that are far too narrow; resampling songs does not.
//!
//! The draws are reproducible on every machine: resample `r` draws its `n` song indices as
//! `n` calls of `random_range(0..n)` on one ChaCha8 generator seeded with
//! [`BootstrapParams::seed`], resample after resample ([`bootstrap_indices`]). The interval is
//! the percentile interval: the 2.5th and 97.5th percentiles of the resampled statistic with
//! numpy's default (linear) interpolation ([`percentile`]).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::check_labels;
use crate::{Error, Result};

/// Settings of a bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapParams {
    /// Number of resamples.
    ///
    /// Default: `10_000`.
    pub resamples: usize,
    /// Seed of the ChaCha8 generator that draws the resamples.
    ///
    /// Default: `0`.
    pub seed: u64,
}

impl Default for BootstrapParams {
    fn default() -> Self {
        Self {
            resamples: 10_000,
            seed: 0,
        }
    }
}

impl BootstrapParams {
    fn check(&self) -> Result<()> {
        if self.resamples == 0 {
            return Err(Error::Invalid {
                field: "resamples",
                rule: "must be >= 1".into(),
            });
        }
        Ok(())
    }
}

/// A statistic and its 95 % percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The statistic on the data as they are.
    pub value: f64,
    /// `[2.5th, 97.5th]` percentile of the statistic over the resamples.
    pub ci95: [f64; 2],
}

/// Per-class song-level F1 with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassInterval {
    /// F1 of the class and its interval, over the resamples in which the class has test songs.
    pub f1: Interval,
    /// Test songs of the class.
    pub support: u64,
    /// Resamples in which the class had test songs (the others leave its F1 undefined).
    pub resamples_used: usize,
}

/// Test predictions grouped by song: what the bootstrap resamples. Each song has a true
/// label, a song-level prediction (the vote) and its slices' (true, predicted) pairs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SongPredictions {
    n_classes: usize,
    song_true: Vec<usize>,
    song_pred: Vec<usize>,
    /// Per song, `(true, predicted, count)` of its slices.
    slices: Vec<Vec<(usize, usize, u64)>>,
}

/// Per-class counts: (true positives, predicted, true).
#[derive(Debug, Clone)]
struct Counts {
    tp: Vec<u64>,
    pred: Vec<u64>,
    truth: Vec<u64>,
}

impl Counts {
    fn new(n: usize) -> Self {
        Self {
            tp: vec![0; n],
            pred: vec![0; n],
            truth: vec![0; n],
        }
    }
    fn clear(&mut self) {
        for v in [&mut self.tp, &mut self.pred, &mut self.truth] {
            v.iter_mut().for_each(|x| *x = 0);
        }
    }
    fn add(&mut self, t: usize, p: usize, w: u64) {
        self.truth[t] += w;
        self.pred[p] += w;
        if t == p {
            self.tp[t] += w;
        }
    }
    /// F1 of class `c`, `None` when it neither occurs nor is predicted (0/0).
    fn f1(&self, c: usize) -> Option<f64> {
        let den = self.pred[c] + self.truth[c];
        (den > 0).then(|| 2.0 * self.tp[c] as f64 / den as f64)
    }
    /// scikit-learn's weighted-average F1 (0/0 classes count as 0, as its zero_division).
    fn weighted_f1(&self) -> f64 {
        let total: u64 = self.truth.iter().sum();
        if total == 0 {
            return f64::NAN;
        }
        let sum: f64 = (0..self.tp.len())
            .map(|c| self.f1(c).unwrap_or(0.0) * self.truth[c] as f64)
            .sum();
        sum / total as f64
    }
}

impl SongPredictions {
    /// No songs yet, labels in `0..n_classes`.
    pub fn new(n_classes: usize) -> Self {
        Self {
            n_classes,
            ..Self::default()
        }
    }

    /// Adds a song: its true label, its song-level prediction and its slices' `(true,
    /// predicted)` labels (a song without slices may be added: it counts at song level only).
    pub fn push_song(
        &mut self,
        label: usize,
        predicted: usize,
        slices: impl IntoIterator<Item = (usize, usize)>,
    ) -> Result<()> {
        check_labels("song label", &[label, predicted], self.n_classes)?;
        let mut counts: Vec<(usize, usize, u64)> = Vec::new();
        for (t, p) in slices {
            check_labels("slice label", &[t, p], self.n_classes)?;
            match counts.iter_mut().find(|(a, b, _)| *a == t && *b == p) {
                Some(e) => e.2 += 1,
                None => counts.push((t, p, 1)),
            }
        }
        counts.sort_unstable();
        self.song_true.push(label);
        self.song_pred.push(predicted);
        self.slices.push(counts);
        Ok(())
    }

    /// Number of songs.
    pub fn len(&self) -> usize {
        self.song_true.len()
    }

    /// No songs.
    pub fn is_empty(&self) -> bool {
        self.song_true.is_empty()
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// True label of every song.
    pub fn song_labels(&self) -> &[usize] {
        &self.song_true
    }

    /// Song-level prediction of every song.
    pub fn song_predictions(&self) -> &[usize] {
        &self.song_pred
    }

    /// Whether song `s`'s prediction is right.
    pub fn song_correct(&self, s: usize) -> bool {
        self.song_true[s] == self.song_pred[s]
    }

    /// Whether the two hold the same songs: the same labels and the same slice labels, song
    /// by song. `None` if so, else the index of the first song that differs.
    pub fn first_difference(&self, other: &SongPredictions) -> Option<usize> {
        let slice_truth = |v: &[(usize, usize, u64)]| {
            let mut t: Vec<(usize, u64)> = Vec::new();
            for &(a, _, n) in v {
                match t.iter_mut().find(|(b, _)| *b == a) {
                    Some(e) => e.1 += n,
                    None => t.push((a, n)),
                }
            }
            t
        };
        (0..self.len().max(other.len())).find(|&s| {
            s >= self.len()
                || s >= other.len()
                || self.song_true[s] != other.song_true[s]
                || slice_truth(&self.slices[s]) != slice_truth(&other.slices[s])
        })
    }

    fn song_counts(&self, weights: Option<&[u32]>, c: &mut Counts) {
        c.clear();
        for s in 0..self.len() {
            let w = weights.map_or(1, |w| u64::from(w[s]));
            if w > 0 {
                c.add(self.song_true[s], self.song_pred[s], w);
            }
        }
    }

    fn slice_counts(&self, weights: Option<&[u32]>, c: &mut Counts) {
        c.clear();
        for (s, list) in self.slices.iter().enumerate() {
            let w = weights.map_or(1, |w| u64::from(w[s]));
            if w > 0 {
                for &(t, p, n) in list {
                    c.add(t, p, w * n);
                }
            }
        }
    }

    /// Song-level weighted F1 of the songs drawn `weights[s]` times each (`None`: once each).
    pub fn song_f1(&self, weights: Option<&[u32]>) -> f64 {
        let mut c = Counts::new(self.n_classes);
        self.song_counts(weights, &mut c);
        c.weighted_f1()
    }

    /// Slice-level weighted F1 of the songs drawn `weights[s]` times each (`None`: once each);
    /// NaN when they have no slices.
    pub fn slice_f1(&self, weights: Option<&[u32]>) -> f64 {
        let mut c = Counts::new(self.n_classes);
        self.slice_counts(weights, &mut c);
        c.weighted_f1()
    }

    fn check(&self) -> Result<()> {
        if self.is_empty() {
            return Err(Error::Empty("songs"));
        }
        if self.slices.iter().all(|s| s.is_empty()) {
            return Err(Error::Empty("slices of the songs"));
        }
        Ok(())
    }
}

/// The resamples of `n` clusters: `resamples` vectors of `n` indices in `0..n` (the module
/// docs say how they are drawn).
pub fn bootstrap_indices(n: usize, params: &BootstrapParams) -> Result<Vec<Vec<usize>>> {
    params.check()?;
    if n == 0 {
        return Err(Error::Empty("clusters"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    Ok((0..params.resamples)
        .map(|_| (0..n).map(|_| rng.random_range(0..n)).collect())
        .collect())
}

/// Calls `statistic` with the multiplicity of every cluster in each resample (how often the
/// resample drew it) and returns the values, resample by resample.
pub fn bootstrap_statistic(
    n: usize,
    params: &BootstrapParams,
    mut statistic: impl FnMut(&[u32]) -> f64,
) -> Result<Vec<f64>> {
    params.check()?;
    if n == 0 {
        return Err(Error::Empty("clusters"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut weights = vec![0u32; n];
    Ok((0..params.resamples)
        .map(|_| {
            weights.iter_mut().for_each(|w| *w = 0);
            for _ in 0..n {
                weights[rng.random_range(0..n)] += 1;
            }
            statistic(&weights)
        })
        .collect())
}

/// The `q`-th percentile (`q` in `[0, 100]`) of `values` by numpy's default linear
/// interpolation; NaN values are ignored; NaN if none is left.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let pos = (v.len() - 1) as f64 * (q / 100.0).clamp(0.0, 1.0);
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    let hi = (lo + 1).min(v.len() - 1);
    // numpy's _lerp: a + (b - a) * t, and b - (b - a) * (1 - t) for t >= 0.5.
    let (a, b) = (v[lo], v[hi]);
    if frac >= 0.5 {
        b - (b - a) * (1.0 - frac)
    } else {
        a + (b - a) * frac
    }
}

/// `[2.5th, 97.5th]` percentile of `values` ([`percentile`]).
pub fn percentile_interval(values: &[f64]) -> [f64; 2] {
    [percentile(values, 2.5), percentile(values, 97.5)]
}

/// What [`cluster_bootstrap`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapReport {
    /// Song-level weighted F1.
    pub song_f1: Interval,
    /// Slice-level weighted F1.
    pub slice_f1: Interval,
    /// Song-level F1 per class (`None` for a class without test songs).
    pub per_class: Vec<Option<ClassInterval>>,
    /// Songs resampled.
    pub songs: usize,
    /// The settings.
    pub params: BootstrapParams,
}

/// Song-level (cluster) bootstrap of the song- and slice-level weighted F1 and of the
/// song-level F1 of every class (module docs). A single song, a single class or all-correct
/// predictions give a defined answer (an interval of zero width where every resample agrees);
/// no songs, or songs without any slice, are an error.
pub fn cluster_bootstrap(
    data: &SongPredictions,
    params: &BootstrapParams,
) -> Result<BootstrapReport> {
    data.check()?;
    let n_classes = data.n_classes;
    let (mut song, mut slice) = (Counts::new(n_classes), Counts::new(n_classes));
    let mut per_class: Vec<Vec<f64>> = vec![Vec::new(); n_classes];
    let mut slice_values = Vec::with_capacity(params.resamples);
    let song_values = bootstrap_statistic(data.len(), params, |w| {
        data.song_counts(Some(w), &mut song);
        data.slice_counts(Some(w), &mut slice);
        slice_values.push(slice.weighted_f1());
        for (c, values) in per_class.iter_mut().enumerate() {
            if song.truth[c] > 0 {
                values.push(song.f1(c).unwrap_or(0.0));
            }
        }
        song.weighted_f1()
    })?;
    data.song_counts(None, &mut song);
    let per_class = per_class
        .iter()
        .enumerate()
        .map(|(c, values)| {
            (song.truth[c] > 0).then(|| ClassInterval {
                f1: Interval {
                    value: song.f1(c).unwrap_or(0.0),
                    ci95: percentile_interval(values),
                },
                support: song.truth[c],
                resamples_used: values.len(),
            })
        })
        .collect();
    Ok(BootstrapReport {
        song_f1: Interval {
            value: song.weighted_f1(),
            ci95: percentile_interval(&song_values),
        },
        slice_f1: Interval {
            value: data.slice_f1(None),
            ci95: percentile_interval(&slice_values),
        },
        per_class,
        songs: data.len(),
        params: *params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_numpys_linear() {
        let v = [3.0, 1.0, 2.0, 10.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 10.0);
        assert_eq!(percentile(&v, 50.0), 2.5);
        // numpy.percentile([1, 2, 3, 10], 97.5) = 9.475
        assert!((percentile(&v, 97.5) - 9.475).abs() < 1e-12);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(percentile(&[f64::NAN, 4.0], 50.0), 4.0);
    }

    #[test]
    fn weights_multiply_songs() {
        let mut d = SongPredictions::new(2);
        d.push_song(0, 0, [(0, 0), (0, 1)]).unwrap();
        d.push_song(1, 0, [(1, 0)]).unwrap();
        // Drawing song 0 twice is the same as adding a copy of it.
        let mut twice = d.clone();
        twice.push_song(0, 0, [(0, 0), (0, 1)]).unwrap();
        assert_eq!(d.song_f1(Some(&[2, 1])), twice.song_f1(None));
        assert_eq!(d.slice_f1(Some(&[2, 1])), twice.slice_f1(None));
        assert!(d.push_song(2, 0, []).is_err());
    }
}
