//! Invariants over a grid of configurations, as librosa's `test_melfb`: shape, non-negativity,
//! each filter's peak within one FFT bin of its mel centre; and output shapes and finiteness.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use melspec::{MelConfig, MelNorm, MelScale, MelSpectrogram, PadMode};

fn grid() -> Vec<MelConfig> {
    let mut out = Vec::new();
    for (sr, n_fft) in [
        (16_000u32, 2048usize),
        (22_050, 1024),
        (8000, 512),
        (44_100, 4096),
    ] {
        for n_mels in [16usize, 40, 128] {
            for (fmin, fmax) in [
                (0.0, None),
                (20.0, Some(4000.0)),
                (300.0, Some(f64::from(sr) / 2.0)),
            ] {
                for mel_scale in [MelScale::Slaney, MelScale::Htk] {
                    for norm in [MelNorm::Slaney, MelNorm::None] {
                        out.push(MelConfig {
                            sample_rate_hz: sr,
                            n_fft,
                            win_length: n_fft,
                            hop_length: n_fft / 4,
                            n_mels,
                            fmin_hz: fmin,
                            fmax_hz: fmax,
                            mel_scale,
                            norm,
                            ..MelConfig::default()
                        });
                    }
                }
            }
        }
    }
    out
}

#[test]
fn filterbank_shape_sign_and_peaks() {
    for c in grid() {
        let fb = melspec::mel_filterbank(&c).unwrap();
        assert_eq!(fb.dim(), (c.n_mels, c.n_fft / 2 + 1), "{c:?}");
        assert!(fb.iter().all(|&w| w >= 0.0 && w.is_finite()), "{c:?}");
        let centres =
            melspec::mel_frequencies(c.n_mels + 2, c.fmin_hz, c.fmax_or_nyquist(), c.mel_scale);
        let bin_hz = f64::from(c.sample_rate_hz) / c.n_fft as f64;
        for (i, row) in fb.outer_iter().enumerate() {
            let (peak_bin, &peak) = row
                .iter()
                .enumerate()
                .fold((0, &0f32), |b, (k, w)| if w > b.1 { (k, w) } else { b });
            if peak == 0.0 {
                // Narrower than one bin: librosa leaves such a filter empty too (and warns).
                assert!(
                    centres[i + 2] - centres[i] < 2.0 * bin_hz,
                    "{c:?} row {i} empty"
                );
                continue;
            }
            let peak_hz = peak_bin as f64 * bin_hz;
            assert!(
                (peak_hz - centres[i + 1]).abs() <= bin_hz,
                "{c:?} row {i}: peak {peak_hz} vs {}",
                centres[i + 1]
            );
        }
    }
}

#[test]
fn spectrogram_shape_and_finiteness_over_the_grid() {
    let y: Vec<f32> = (0..7919).map(|i| ((i as f32) * 0.37).sin() * 0.3).collect();
    for c in grid().into_iter().step_by(7) {
        for pad_mode in [PadMode::Reflect, PadMode::Constant] {
            let c = MelConfig {
                pad_mode,
                ..c.clone()
            };
            let plan = MelSpectrogram::new(c.clone()).unwrap();
            let db = plan.db(&y).unwrap();
            assert_eq!(db.dim(), (c.n_mels, 1 + y.len() / c.hop_length), "{c:?}");
            assert!(db.iter().all(|x| x.is_finite()), "{c:?}");
            let max = db.iter().fold(f32::MIN, |m, &x| m.max(x));
            assert!(
                db.iter().all(|&x| x >= max - 80.0 - 1e-3),
                "{c:?}: top_db floor"
            );
        }
    }
}

#[test]
fn frame_count_for_every_short_length_with_reflect() {
    let plan = MelSpectrogram::new(MelConfig::default()).unwrap();
    for n in (1..=3000).step_by(37) {
        let y: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0).collect();
        assert_eq!(plan.power(&y).unwrap().ncols(), 1 + n / 512, "n = {n}");
    }
}

#[test]
fn invalid_configs_are_refused_with_the_field() {
    let cases = [
        MelConfig {
            n_fft: 1023,
            ..MelConfig::default()
        },
        MelConfig {
            hop_length: 0,
            ..MelConfig::default()
        },
        MelConfig {
            win_length: 4096,
            ..MelConfig::default()
        },
        MelConfig {
            fmax_hz: Some(9000.0),
            ..MelConfig::default()
        },
        MelConfig {
            n_mels: 0,
            ..MelConfig::default()
        },
        MelConfig {
            top_db: Some(-1.0),
            ..MelConfig::default()
        },
        MelConfig {
            power: 0.0,
            ..MelConfig::default()
        },
    ];
    for c in cases {
        let err = MelSpectrogram::new(c.clone()).unwrap_err();
        assert!(
            matches!(err, melspec::Error::InvalidConfig { .. }),
            "{c:?}: {err}"
        );
    }
}
