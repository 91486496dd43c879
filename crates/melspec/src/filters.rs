//! The fixed stages: window, mel scale and filterbank, bit-exact with librosa 0.11 / scipy.

use ndarray::Array2;

use crate::{MelConfig, MelNorm, MelScale, Result};

/// numpy's `linspace(start, stop, num)`: `i * step + start`, the last value set to `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

/// Periodic Hann window of `win_length` samples, zero-padded (centred) to `n_fft`: scipy's
/// `get_window("hann", win_length, fftbins=True)` then librosa's `pad_center`, in f64.
///
/// # Panics
/// Never; `win_length > n_fft` gives a window of `win_length` (no padding).
pub fn hann_window(win_length: usize, n_fft: usize) -> Vec<f64> {
    // scipy: symmetric window of M + 1 points, last dropped; 0.5*cos(0*fac) + 0.5*cos(fac).
    let fac = linspace(-std::f64::consts::PI, std::f64::consts::PI, win_length + 1);
    let w = fac
        .iter()
        .take(win_length)
        .map(|&f| 0.0 + 0.5 * (0.0 * f).cos() + 0.5 * f.cos());
    let left = n_fft.saturating_sub(win_length) / 2;
    let mut out = vec![0.0; n_fft.max(win_length)];
    for (o, x) in out[left..].iter_mut().zip(w) {
        *o = x;
    }
    out
}

/// Hz to mel (librosa `hz_to_mel`).
pub fn hz_to_mel(hz: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + hz / 700.0).log10(),
        MelScale::Slaney => {
            let (f_min, f_sp) = (0.0, 200.0 / 3.0);
            let min_log_hz = 1000.0;
            let min_log_mel = (min_log_hz - f_min) / f_sp;
            let logstep = 6.4f64.ln() / 27.0;
            if hz >= min_log_hz {
                min_log_mel + (hz / min_log_hz).ln() / logstep
            } else {
                (hz - f_min) / f_sp
            }
        }
    }
}

/// Mel to Hz (librosa `mel_to_hz`).
pub fn mel_to_hz(mel: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(mel / 2595.0) - 1.0),
        MelScale::Slaney => {
            let (f_min, f_sp) = (0.0, 200.0 / 3.0);
            let min_log_hz = 1000.0;
            let min_log_mel = (min_log_hz - f_min) / f_sp;
            let logstep = 6.4f64.ln() / 27.0;
            if mel >= min_log_mel {
                min_log_hz * (logstep * (mel - min_log_mel)).exp()
            } else {
                f_min + f_sp * mel
            }
        }
    }
}

/// `n` frequencies evenly spaced on the mel scale from `fmin_hz` to `fmax_hz` (librosa
/// `mel_frequencies`); the filter edges are `mel_frequencies(n_mels + 2, ..)`.
pub fn mel_frequencies(n: usize, fmin_hz: f64, fmax_hz: f64, scale: MelScale) -> Vec<f64> {
    linspace(hz_to_mel(fmin_hz, scale), hz_to_mel(fmax_hz, scale), n)
        .into_iter()
        .map(|m| mel_to_hz(m, scale))
        .collect()
}

/// Centre frequency of each FFT bin, `k * sr / n_fft` as numpy's `rfftfreq` computes it.
pub fn fft_frequencies(sample_rate_hz: u32, n_fft: usize) -> Vec<f64> {
    let d = 1.0 / f64::from(sample_rate_hz);
    let val = 1.0 / (n_fft as f64 * d);
    (0..=n_fft / 2).map(|k| k as f64 * val).collect()
}

/// The mel filterbank `[n_mels, 1 + n_fft / 2]` in f32, bit-exact with
/// `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk, norm)`: triangles computed in f64
/// and stored to f32, then (Slaney norm) scaled in f64 and rounded to f32 again.
pub fn mel_filterbank(config: &MelConfig) -> Result<Array2<f32>> {
    config.validate()?;
    let n_mels = config.n_mels;
    let fftfreqs = fft_frequencies(config.sample_rate_hz, config.n_fft);
    let edges = mel_frequencies(
        n_mels + 2,
        config.fmin_hz,
        config.fmax_or_nyquist(),
        config.mel_scale,
    );
    let fdiff: Vec<f64> = edges.windows(2).map(|w| w[1] - w[0]).collect();
    let mut weights = Array2::<f32>::zeros((n_mels, fftfreqs.len()));
    for (i, mut row) in weights.outer_iter_mut().enumerate() {
        let scale = match config.norm {
            MelNorm::Slaney => Some(2.0 / (edges[i + 2] - edges[i])),
            MelNorm::None => None,
        };
        for (w, &f) in row.iter_mut().zip(&fftfreqs) {
            let lower = -(edges[i] - f) / fdiff[i];
            let upper = (edges[i + 2] - f) / fdiff[i + 1];
            let tri = 0f64.max(lower.min(upper)) as f32;
            *w = match scale {
                Some(s) => (f64::from(tri) * s) as f32,
                None => tri,
            };
        }
    }
    Ok(weights)
}

/// The non-zero band `[start, end)` of each filter row: the sparse mel product only visits
/// these bins (2,020 of 131,200 entries for the paper's setting).
pub(crate) fn filter_bands(weights: &Array2<f32>) -> Vec<(usize, usize)> {
    weights
        .outer_iter()
        .map(|row| {
            let start = row.iter().position(|&w| w != 0.0);
            let end = row.iter().rposition(|&w| w != 0.0);
            match (start, end) {
                (Some(s), Some(e)) => (s, e + 1),
                _ => (0, 0),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_round_trips_and_hits_its_anchors() {
        // librosa.hz_to_mel(1000.0) == 14.999999999999998 (numpy 2.4).
        assert_eq!(hz_to_mel(1000.0, MelScale::Slaney), 14.999999999999998);
        for hz in [0.0, 20.0, 440.0, 999.0, 1000.0, 4000.0, 8000.0] {
            for scale in [MelScale::Slaney, MelScale::Htk] {
                let back = mel_to_hz(hz_to_mel(hz, scale), scale);
                assert!(
                    (back - hz).abs() < 1e-9 * hz.max(1.0),
                    "{hz} {scale:?} -> {back}"
                );
            }
        }
    }

    #[test]
    fn hann_is_periodic_and_centred() {
        let w = hann_window(8, 8);
        assert_eq!(w[0], 0.0);
        assert!((w[4] - 1.0).abs() < 1e-15);
        assert!((w[2] - w[6]).abs() < 1e-15);
        let padded = hann_window(4, 8);
        assert_eq!(padded.len(), 8);
        assert_eq!(&padded[..2], &[0.0, 0.0]);
        assert_eq!(&padded[6..], &[0.0, 0.0]);
    }

    #[test]
    fn linspace_matches_numpy_rule() {
        assert_eq!(linspace(0.0, 1.0, 5), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(linspace(2.0, 3.0, 1), vec![2.0]);
    }
}
