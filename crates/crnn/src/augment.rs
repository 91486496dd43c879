//! Training-time augmentation ([`TrainConfig::augment`](crate::TrainConfig::augment)): random
//! crops, SpecAugment masks, mixup and gain, seeded so that a run (and its resume) draws the
//! same batches, and applied to training batches only.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

use crate::data::SliceSource;
use crate::{Error, Result};

/// What augments the training slices. Every part is off by default (the paper had none);
/// validation and test slices are never augmented. The order within a batch: `crop` (when
/// the slice is read), `gain`, `specaugment`, then `mixup` across the batch.
///
/// Draws are seeded from the run's seed, the epoch and the batch (and the rank, in
/// data-parallel training, so each rank draws its own), never from a global generator: the
/// same seed gives the same augmented batches, and a resumed run continues bit for bit.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Augment {
    /// Random crops: each epoch, each training slice is read at a uniformly random start
    /// inside its song (any of the `song frames - slice frames + 1` windows) instead of its
    /// place on the fixed grid, so the model sees new windows every epoch. Needs a training
    /// source that knows its songs ([`SliceSource::crop_windows`]).
    ///
    /// Default: `false`.
    #[serde(default)]
    pub crop: bool,
    /// Time and frequency masks (Park et al. 2019).
    ///
    /// Default: `None`.
    #[serde(default)]
    pub specaugment: Option<SpecAugment>,
    /// Mixup across the batch (Zhang et al. 2018).
    ///
    /// Default: `None`.
    #[serde(default)]
    pub mixup: Option<Mixup>,
    /// A random level change.
    ///
    /// Default: `None`.
    #[serde(default)]
    pub gain: Option<Gain>,
}

/// SpecAugment's masks on a log-mel slice (Park et al. 2019, without time warping): each
/// mask's width is uniform in `0..=max`, its start uniform over the places where it fits, and
/// the masked bins take the slice's minimum (the -80 dB floor below the track's maximum that
/// the features were clipped at), so a mask reads as silence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpecAugment {
    /// Frequency masks per slice.
    ///
    /// Default: `2` (Park et al.'s LD policy has 2).
    pub freq_masks: usize,
    /// Widest frequency mask, in mel bands.
    ///
    /// Default: `16` (1/8 of 128 bands; Park et al.'s 27 of 80 bands is for speech).
    pub max_freq_width: usize,
    /// Time masks per slice.
    ///
    /// Default: `2`.
    pub time_masks: usize,
    /// Widest time mask as a fraction of the slice's frames (rounded down).
    ///
    /// Default: `0.1` (9 frames of a 3-s slice).
    pub max_time_fraction: f64,
}

impl Default for SpecAugment {
    fn default() -> Self {
        Self {
            freq_masks: 2,
            max_freq_width: 16,
            time_masks: 2,
            max_time_fraction: 0.1,
        }
    }
}

/// The masks drawn for one slice: `(start, width)` in mel bands and in frames.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpecAugmentMasks {
    /// Frequency masks.
    pub freq: Vec<(usize, usize)>,
    /// Time masks.
    pub time: Vec<(usize, usize)>,
}

/// Mixup: each batch is mixed with a permutation of itself, `x = l x_i + (1 - l) x_j` and the
/// same for the one-hot targets, `l ~ Beta(alpha, alpha)` once per batch; the loss is the same
/// Keras cross-entropy on the soft targets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mixup {
    /// Beta's parameter.
    ///
    /// Default: `0.2` (Zhang et al. found 0.1-0.4 best on ImageNet).
    pub alpha: f64,
}

impl Default for Mixup {
    fn default() -> Self {
        Self { alpha: 0.2 }
    }
}

/// A random level change: `g ~ U[-max_db, max_db]` per slice is added to every bin, and bins
/// are clipped at the slice's floor (its minimum), as if the gain had been applied before
/// the features' top-dB floor: a cut pushes quiet bins into the floor, a boost lifts them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gain {
    /// Largest offset in dB.
    ///
    /// Default: `6.0`.
    pub max_db: f64,
}

impl Default for Gain {
    fn default() -> Self {
        Self { max_db: 6.0 }
    }
}

/// Stream of the per-batch augmentation generator (apart from every other draw of the run).
const BATCH_STREAM: u64 = 0xA06;
/// Stream of the per-epoch crop starts.
const CROP_STREAM: u64 = 0xC40;

impl Augment {
    /// Every augmentation, by name: `crop`, `specaugment`, `mixup`, `gain`.
    pub const NAMES: [&'static str; 4] = ["crop", "specaugment", "mixup", "gain"];

    /// Whether nothing is on (the paper's training).
    pub fn is_off(&self) -> bool {
        *self == Self::default()
    }

    /// The augmentations of a comma-separated list of [`NAMES`](Self::NAMES), each with its
    /// default parameters (`""` is none).
    pub fn from_names(list: &str) -> Result<Self> {
        let mut a = Self::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "crop" => a.crop = true,
                "specaugment" => a.specaugment = Some(SpecAugment::default()),
                "mixup" => a.mixup = Some(Mixup::default()),
                "gain" => a.gain = Some(Gain::default()),
                other => {
                    return Err(Error::InvalidConfig {
                        field: "augment",
                        rule: format!(
                            "unknown augmentation {other:?}: crop, specaugment, mixup or gain"
                        ),
                    });
                }
            }
        }
        Ok(a)
    }

    /// The names of what is on, in [`NAMES`](Self::NAMES)'s order.
    pub fn names(&self) -> Vec<&'static str> {
        let on = [
            self.crop,
            self.specaugment.is_some(),
            self.mixup.is_some(),
            self.gain.is_some(),
        ];
        Self::NAMES
            .into_iter()
            .zip(on)
            .filter_map(|(n, on)| on.then_some(n))
            .collect()
    }

    /// Every rule of the parameters.
    pub fn validate(&self) -> Result<()> {
        let bad = |rule: String| {
            Err(Error::InvalidConfig {
                field: "augment",
                rule,
            })
        };
        if let Some(s) = &self.specaugment
            && !(0.0..=1.0).contains(&s.max_time_fraction)
        {
            return bad(format!(
                "specaugment max_time_fraction must be in [0, 1], got {}",
                s.max_time_fraction
            ));
        }
        if let Some(m) = &self.mixup
            && !(m.alpha.is_finite() && m.alpha > 0.0)
        {
            return bad(format!("mixup alpha must be > 0, got {}", m.alpha));
        }
        if let Some(g) = &self.gain
            && !(g.max_db.is_finite() && g.max_db >= 0.0)
        {
            return bad(format!("gain max_db must be >= 0, got {}", g.max_db));
        }
        Ok(())
    }

    /// Checks that `train` can be cropped when crops are on.
    pub(crate) fn check_source(&self, train: &dyn SliceSource) -> Result<()> {
        if self.crop && (train.is_empty() || train.crop_windows(0).is_none()) {
            return bad_crop();
        }
        Ok(())
    }

    /// The crop start of every slice of `train` for the epoch whose seed is `epoch_seed`
    /// (indexed by slice; the same on every rank), or `None` without crops.
    pub(crate) fn crop_starts(
        &self,
        train: &dyn SliceSource,
        epoch_seed: u64,
    ) -> Result<Option<Vec<usize>>> {
        if !self.crop {
            return Ok(None);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(epoch_seed);
        rng.set_stream(CROP_STREAM);
        (0..train.len())
            .map(|i| match train.crop_windows(i) {
                Some(n) if n > 0 => Ok(rng.random_range(0..n)),
                _ => bad_crop(),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Whether a batch is changed after it is read (gain, masks or mixup).
    pub(crate) fn changes_batches(&self) -> bool {
        self.specaugment.is_some() || self.mixup.is_some() || self.gain.is_some()
    }

    /// Augments one training batch in place: `data` holds `labels.len()` row-major
    /// `[n_mels, frames]` slices. Returns the targets `[batch, n_classes]` (one-hot, or soft
    /// under mixup), row-major. `key` seeds the batch's draws.
    pub fn apply(
        &self,
        data: &mut [f32],
        labels: &[i64],
        shape: (usize, usize),
        n_classes: usize,
        key: u64,
    ) -> Result<Vec<f32>> {
        let (n_mels, frames) = shape;
        let per = n_mels * frames;
        let n = labels.len();
        if data.len() != n * per {
            return Err(Error::Shape {
                what: "augmented batch",
                expected: vec![n as i64, n_mels as i64, frames as i64],
                got: vec![data.len() as i64],
            });
        }
        let mut targets = one_hot(labels, n_classes)?;
        let mut rng = ChaCha8Rng::seed_from_u64(key);
        rng.set_stream(BATCH_STREAM);
        for slice in data.chunks_exact_mut(per) {
            if let Some(g) = &self.gain {
                let db = rng.random_range(-g.max_db..=g.max_db) as f32;
                apply_gain(slice, db);
            }
            if let Some(s) = &self.specaugment {
                let masks = s.draw(&mut rng, n_mels, frames);
                masks.apply(slice, n_mels, frames);
            }
        }
        if let Some(m) = &self.mixup {
            let lambda = m.draw(&mut rng)?;
            let mut partner: Vec<usize> = (0..n).collect();
            rand::seq::SliceRandom::shuffle(&mut partner[..], &mut rng);
            mix_rows(data, per, &partner, lambda as f32);
            mix_rows(&mut targets, n_classes, &partner, lambda as f32);
        }
        Ok(targets)
    }
}

/// `labels` as one-hot rows of `n_classes`, row-major; a label outside the classes is an
/// error.
pub(crate) fn one_hot(labels: &[i64], n_classes: usize) -> Result<Vec<f32>> {
    let mut targets = vec![0f32; labels.len() * n_classes];
    for (index, (row, &l)) in targets.chunks_exact_mut(n_classes).zip(labels).enumerate() {
        match usize::try_from(l).ok().and_then(|l| row.get_mut(l)) {
            Some(v) => *v = 1.0,
            None => {
                return Err(Error::Label {
                    what: "training batch",
                    label: l.max(0) as usize,
                    index,
                    n_classes,
                });
            }
        }
    }
    Ok(targets)
}

fn bad_crop<T>() -> Result<T> {
    Err(Error::InvalidConfig {
        field: "augment",
        rule: "crop needs a training source that knows the songs its slices come from (SliceSource::crop_windows)".into(),
    })
}

/// `rows[i] = l rows[i] + (1 - l) rows[partner[i]]` over rows of `width`, from the unmixed
/// rows.
fn mix_rows(data: &mut [f32], width: usize, partner: &[usize], lambda: f32) {
    let original = data.to_vec();
    for (i, row) in data.chunks_exact_mut(width).enumerate() {
        let other = &original[partner[i] * width..(partner[i] + 1) * width];
        for (a, b) in row.iter_mut().zip(other) {
            *a = lambda * *a + (1.0 - lambda) * b;
        }
    }
}

/// Adds `db` to every bin and clips at the slice's floor (its minimum before the change).
fn apply_gain(slice: &mut [f32], db: f32) {
    let floor = slice.iter().copied().fold(f32::INFINITY, f32::min);
    for v in slice {
        *v = (*v + db).max(floor);
    }
}

impl Mixup {
    /// One mixing weight `l ~ Beta(alpha, alpha)`.
    pub fn draw(&self, rng: &mut impl rand::Rng) -> Result<f64> {
        let beta = Beta::new(self.alpha, self.alpha).map_err(|e| Error::InvalidConfig {
            field: "augment",
            rule: format!("mixup alpha {}: {e}", self.alpha),
        })?;
        Ok(beta.sample(rng))
    }
}

impl SpecAugment {
    /// The masks of one `[n_mels, frames]` slice.
    pub fn draw(&self, rng: &mut impl rand::Rng, n_mels: usize, frames: usize) -> SpecAugmentMasks {
        let mut mask = |dim: usize, max: usize| {
            let width = rng.random_range(0..=max.min(dim));
            (rng.random_range(0..=dim - width), width)
        };
        let max_t = (self.max_time_fraction * frames as f64).floor() as usize;
        SpecAugmentMasks {
            freq: (0..self.freq_masks)
                .map(|_| mask(n_mels, self.max_freq_width))
                .collect(),
            time: (0..self.time_masks).map(|_| mask(frames, max_t)).collect(),
        }
    }
}

impl SpecAugmentMasks {
    /// Sets the masked bins of a row-major `[n_mels, frames]` slice to its minimum.
    pub fn apply(&self, slice: &mut [f32], n_mels: usize, frames: usize) {
        let floor = slice.iter().copied().fold(f32::INFINITY, f32::min);
        for &(start, width) in &self.freq {
            for row in slice.chunks_exact_mut(frames).skip(start).take(width) {
                row.fill(floor);
            }
        }
        for &(start, width) in &self.time {
            for row in slice.chunks_exact_mut(frames).take(n_mels) {
                row[start..start + width].fill(floor);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ln Γ(x) (Lanczos, g = 7, 9 terms; ~1e-15 relative for x > 0).
    fn ln_gamma(x: f64) -> f64 {
        const C: [f64; 9] = [
            0.999_999_999_999_809_9,
            676.520_368_121_885_1,
            -1_259.139_216_722_402_8,
            771.323_428_777_653_1,
            -176.615_029_162_140_6,
            12.507_343_278_686_905,
            -0.138_571_095_265_720_12,
            9.984_369_578_019_572e-6,
            1.505_632_735_149_311_6e-7,
        ];
        if x < 0.5 {
            let pi = std::f64::consts::PI;
            return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
        }
        let x = x - 1.0;
        let t = x + 7.5;
        let sum: f64 = C[0]
            + C[1..]
                .iter()
                .enumerate()
                .map(|(i, c)| c / (x + i as f64 + 1.0))
                .sum::<f64>();
        0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
    }

    /// The regularised incomplete beta I_x(a, b): the Beta(a, b) CDF (continued fraction,
    /// modified Lentz, as Numerical Recipes' betacf).
    fn beta_cdf(x: f64, a: f64, b: f64) -> f64 {
        if x <= 0.0 {
            return 0.0;
        }
        if x >= 1.0 {
            return 1.0;
        }
        if x > (a + 1.0) / (a + b + 2.0) {
            return 1.0 - beta_cdf(1.0 - x, b, a);
        }
        let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln())
            .exp()
            / a;
        let tiny = 1e-300;
        let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
        d = 1.0 / if d.abs() < tiny { tiny } else { d };
        let mut f = d;
        for m in 1..300 {
            let m = m as f64;
            for num in [
                m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
                -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
            ] {
                d = 1.0 + num * d;
                d = 1.0 / if d.abs() < tiny { tiny } else { d };
                c = 1.0 + num / c;
                c = if c.abs() < tiny { tiny } else { c };
                f *= c * d;
            }
        }
        front * f
    }

    /// Kolmogorov-Smirnov statistic of a sample against a CDF.
    fn ks(mut sample: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
        sample.sort_by(f64::total_cmp);
        let n = sample.len() as f64;
        sample
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let f = cdf(x);
                (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn the_beta_cdf_is_right_where_it_is_known() {
        // Beta(1, 1) is uniform; Beta(0.5, 0.5) is the arcsine law 2/pi asin(sqrt(x)).
        assert!((beta_cdf(0.3, 1.0, 1.0) - 0.3).abs() < 1e-12);
        for x in [0.01f64, 0.2, 0.5, 0.9] {
            let arcsine = 2.0 / std::f64::consts::PI * x.sqrt().asin();
            assert!((beta_cdf(x, 0.5, 0.5) - arcsine).abs() < 1e-10, "{x}");
        }
        assert!((beta_cdf(0.5, 0.2, 0.2) - 0.5).abs() < 1e-12);
    }

    /// Mixup's weights follow Beta(alpha, alpha): the KS statistic of 4,000 draws at a fixed
    /// seed is below the 1 % critical value (1.63 / sqrt(n)), and a uniform sample is far
    /// above it (the test can fail).
    #[test]
    fn mixup_weights_follow_beta_by_a_ks_test() {
        let n = 4000;
        let critical = 1.63 / (n as f64).sqrt();
        for alpha in [0.2, 0.4, 1.0] {
            let m = Mixup { alpha };
            let mut rng = ChaCha8Rng::seed_from_u64(42);
            let draws: Vec<f64> = (0..n).map(|_| m.draw(&mut rng).unwrap()).collect();
            let d = ks(draws.clone(), |x| beta_cdf(x, alpha, alpha));
            assert!(d < critical, "alpha {alpha}: D = {d}, critical {critical}");
            if alpha < 1.0 {
                assert!(ks(draws, |x| x) > 3.0 * critical, "alpha {alpha}");
            }
        }
    }

    #[test]
    fn specaugment_masks_stay_within_their_bounds_and_read_as_the_floor() {
        let s = SpecAugment::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (mut widest_f, mut widest_t) = (0, 0);
        for _ in 0..2000 {
            let m = s.draw(&mut rng, 128, 94);
            assert_eq!((m.freq.len(), m.time.len()), (2, 2));
            for &(start, w) in &m.freq {
                assert!(w <= 16 && start + w <= 128, "{m:?}");
                widest_f = widest_f.max(w);
            }
            for &(start, w) in &m.time {
                assert!(w <= 9 && start + w <= 94, "{m:?}");
                widest_t = widest_t.max(w);
            }
        }
        // The bounds are reached (widths are uniform in 0..=max).
        assert_eq!((widest_f, widest_t), (16, 9));
        // Masked bins take the slice's minimum; the others are untouched.
        let (f, t) = (6, 5);
        let mut slice: Vec<f32> = (0..f * t).map(|i| i as f32).collect();
        slice[7] = -80.0;
        let masks = SpecAugmentMasks {
            freq: vec![(2, 1)],
            time: vec![(3, 2)],
        };
        let before = slice.clone();
        masks.apply(&mut slice, f, t);
        for (i, (&a, &b)) in slice.iter().zip(&before).enumerate() {
            let masked = i / t == 2 || (3..5).contains(&(i % t));
            assert_eq!(a, if masked { -80.0 } else { b }, "bin {i}");
        }
    }

    #[test]
    fn gain_shifts_within_its_bound_and_clips_at_the_floor() {
        let a = Augment::from_names("gain").unwrap();
        let data: Vec<f32> = (0..40).map(|i| -80.0 + i as f32).collect();
        for key in 0..200 {
            let mut d = data.clone();
            a.apply(&mut d, &[0], (4, 10), 2, key).unwrap();
            let shift = d[39] - data[39];
            assert!(shift.abs() <= 6.0 + 1e-4, "{shift}");
            for (x, y) in d.iter().zip(&data) {
                assert!(*x >= -80.0, "below the floor: {x}");
                assert!((x - (y + shift).max(-80.0)).abs() < 1e-4);
            }
        }
    }

    /// The same key gives the same batch and targets, another key another; mixup's targets
    /// are soft rows that sum to 1 and mix the same pairs as the data.
    #[test]
    fn augmented_batches_are_a_function_of_their_key() {
        let a = Augment::from_names("specaugment,mixup,gain").unwrap();
        let data: Vec<f32> = (0..4 * 8 * 10)
            .map(|i| (i as f32 * 0.37).sin() * 30.0 - 40.0)
            .collect();
        let labels = [0i64, 1, 2, 1];
        let run = |key| {
            let mut d = data.clone();
            let t = a.apply(&mut d, &labels, (8, 10), 3, key).unwrap();
            (d, t)
        };
        let (d1, t1) = run(7);
        assert_eq!((d1.clone(), t1.clone()), run(7));
        assert_ne!(d1, run(8).0);
        for row in t1.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{row:?}");
        }
        assert!(Augment::from_names("crop,warp").is_err());
        assert_eq!(
            Augment::from_names("gain, crop").unwrap().names(),
            vec!["crop", "gain"]
        );
        assert!(Augment::default().is_off() && Augment::from_names("").unwrap().is_off());
    }

    /// A source of songs of 30 frames cut into 10-frame slices (21 windows each).
    struct Songs;

    impl SliceSource for Songs {
        fn len(&self) -> usize {
            6
        }
        fn slice_shape(&self) -> (usize, usize) {
            (1, 10)
        }
        fn write_slice(&self, _index: usize, out: &mut [f32]) -> Result<()> {
            out.fill(0.0);
            Ok(())
        }
        fn label(&self, _index: usize) -> usize {
            0
        }
        fn crop_windows(&self, _index: usize) -> Option<usize> {
            Some(21)
        }
    }

    /// Crop starts cover every window of the song over the epochs, are fixed by the epoch's
    /// seed, and differ between epochs.
    #[test]
    fn crop_offsets_cover_the_song() {
        let a = Augment::from_names("crop").unwrap();
        let mut seen = [0usize; 21];
        for epoch in 0..100u64 {
            let starts = a.crop_starts(&Songs, epoch).unwrap().unwrap();
            assert_eq!(starts, a.crop_starts(&Songs, epoch).unwrap().unwrap());
            for s in starts {
                seen[s] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c > 0), "{seen:?}");
        assert_ne!(
            a.crop_starts(&Songs, 1).unwrap(),
            a.crop_starts(&Songs, 2).unwrap()
        );
        assert_eq!(Augment::default().crop_starts(&Songs, 1).unwrap(), None);
    }
}
