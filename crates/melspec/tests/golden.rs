//! Against librosa 0.11 golden vectors (`tests/golden/`, made by `tools/make_melspec_golden.sh`
//! at the workspace root with `tools/melref.py`; versions and parameters in `params.json`).
//!
//! Tolerances (measured in `reference/melspec-parity.md` and here):
//! filterbank bit-exact (<= 1 ulp allowed); mel power relative error <= 2e-6 on cells >= 1e-6 of
//! the max; dB <= 2e-5; frame count exactly `1 + N / hop`; f32-FFT path dB <= 5e-3.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use melspec::{FftPrecision, MelConfig, MelNorm, MelScale, MelSpectrogram, PadMode};
use ndarray::{Array1, Array2};
use ndarray_npy::read_npy;

const CASES: [&str; 7] = [
    "chirp", "sines", "noise", "silence", "impulse", "short", "tiny",
];

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Expands the sparse filterbank the generator stores (bands + values) to the dense matrix.
fn dense_filterbank(stem: &str) -> Array2<f32> {
    let shape: Array1<i64> = read_npy(golden(&format!("{stem}.shape.npy"))).unwrap();
    let bands: Array2<i64> = read_npy(golden(&format!("{stem}.bands.npy"))).unwrap();
    let values: Array1<f32> = read_npy(golden(&format!("{stem}.values.npy"))).unwrap();
    let mut fb = Array2::<f32>::zeros((shape[0] as usize, shape[1] as usize));
    let mut at = 0;
    for (i, band) in bands.outer_iter().enumerate() {
        for k in band[0] as usize..band[1] as usize {
            fb[[i, k]] = values[at];
            at += 1;
        }
    }
    assert_eq!(at, values.len());
    fb
}

fn ulps(a: f32, b: f32) -> u32 {
    (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
}

fn assert_filterbank(config: &MelConfig, stem: &str) {
    let want = dense_filterbank(stem);
    let got = melspec::mel_filterbank(config).unwrap();
    assert_eq!(got.dim(), want.dim());
    let (mut max_ulps, mut exact) = (0, 0usize);
    for (a, b) in got.iter().zip(&want) {
        let u = ulps(*a, *b);
        max_ulps = max_ulps.max(u);
        exact += usize::from(u == 0);
    }
    eprintln!(
        "{stem}: {exact}/{} entries bit-exact, max {max_ulps} ulp",
        want.len()
    );
    assert!(max_ulps <= 1, "{stem}: filterbank off by {max_ulps} ulp");
}

#[test]
fn filterbank_is_bit_exact_with_librosa() {
    assert_filterbank(&MelConfig::default(), "mel_filterbank");
    let htk = MelConfig {
        sample_rate_hz: 22_050,
        n_fft: 1024,
        win_length: 1024,
        n_mels: 40,
        fmin_hz: 20.0,
        fmax_hz: Some(8000.0),
        mel_scale: MelScale::Htk,
        norm: MelNorm::None,
        ..MelConfig::default()
    };
    assert_filterbank(&htk, "mel_filterbank_htk_22050_1024_40");
}

#[test]
fn window_and_edges_match() {
    let want: Array1<f64> = read_npy(golden("window.npy")).unwrap();
    assert_eq!(melspec::hann_window(2048, 2048), want.to_vec());
    let edges: Array1<f64> = read_npy(golden("mel_edges_hz.npy")).unwrap();
    let got = melspec::mel_frequencies(130, 0.0, 8000.0, MelScale::Slaney);
    for (a, b) in got.iter().zip(&edges) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
    }
}

struct Diff {
    rel_power: f64,
    db: f64,
}

fn compare(pad: PadMode, case: &str, precision: FftPrecision) -> Diff {
    let dir = match pad {
        PadMode::Reflect => "pad-reflect",
        PadMode::Constant => "pad-constant",
    };
    let y: Array1<f32> = read_npy(golden(&format!("inputs/{case}.input.npy"))).unwrap();
    let want_power: Array2<f32> = read_npy(golden(&format!("{dir}/{case}.mel_power.npy"))).unwrap();
    let want_db: Array2<f32> = read_npy(golden(&format!("{dir}/{case}.mel_db.npy"))).unwrap();
    let config = MelConfig {
        pad_mode: pad,
        fft_precision: precision,
        ..MelConfig::default()
    };
    let plan = MelSpectrogram::new(config).unwrap();
    let y = y.to_vec();
    let power = plan.power(&y).unwrap();
    let db = plan.db(&y).unwrap();
    assert_eq!(
        power.ncols(),
        1 + y.len() / 512,
        "{dir}/{case}: frame count"
    );
    assert_eq!(power.dim(), want_power.dim(), "{dir}/{case}: shape");
    let max = want_power.iter().fold(0f32, |m, &x| m.max(x));
    let mut rel_power = 0f64;
    for (a, b) in power.iter().zip(&want_power) {
        if *b >= max * 1e-6 && *b > 0.0 {
            rel_power = rel_power.max((f64::from(*a) - f64::from(*b)).abs() / f64::from(*b));
        }
    }
    let db_diff = db
        .iter()
        .zip(&want_db)
        .fold(0f64, |m, (a, b)| m.max(f64::from(a - b).abs()));
    Diff {
        rel_power,
        db: db_diff,
    }
}

#[test]
fn f64_path_matches_librosa_in_both_pad_modes() {
    for pad in [PadMode::Reflect, PadMode::Constant] {
        for case in CASES {
            let d = compare(pad, case, FftPrecision::F64);
            eprintln!(
                "{pad:?} {case}: rel power {:.2e}, dB {:.2e}",
                d.rel_power, d.db
            );
            assert!(
                d.rel_power <= 2e-6,
                "{pad:?} {case}: rel power {:e}",
                d.rel_power
            );
            assert!(d.db <= 2e-5, "{pad:?} {case}: dB {:e}", d.db);
        }
    }
}

#[test]
fn f32_path_is_within_five_millidecibels() {
    for pad in [PadMode::Reflect, PadMode::Constant] {
        for case in CASES {
            let d = compare(pad, case, FftPrecision::F32);
            eprintln!("f32 {pad:?} {case}: dB {:.2e}", d.db);
            assert!(d.db <= 5e-3, "{pad:?} {case}: dB {:e}", d.db);
        }
    }
}
