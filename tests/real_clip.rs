//! Real music decoded by audio-io, through melspec, against `librosa.load` +
//! `feature.melspectrogram` + `power_to_db` (tests/golden/, made by
//! tools/make_melspec_golden.sh). Tolerance 2e-3 dB after the top_db clip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use melspec::{MelConfig, MelSpectrogram, PadMode};
use ndarray::Array2;
use ndarray_npy::read_npy;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn decoded_clips_match_librosa_within_2e_3_db() {
    let clips = [(0, "guitar_16k_mono_32kbps.mp3"), (1, "fanfare.ogg")];
    for (k, file) in clips {
        let audio = audio_io::load(
            root().join("crates/audio-io/tests/fixtures").join(file),
            &audio_io::LoadOptions::default(),
        )
        .unwrap();
        for (pad, tag) in [
            (PadMode::Reflect, "reflect"),
            (PadMode::Constant, "constant"),
        ] {
            let want: Array2<f32> =
                read_npy(root().join(format!("tests/golden/file_{k}.{tag}.mel_db.npy"))).unwrap();
            let plan = MelSpectrogram::new(MelConfig {
                pad_mode: pad,
                ..MelConfig::default()
            })
            .unwrap();
            let got = plan.db(&audio.samples).unwrap();
            assert_eq!(got.dim(), want.dim(), "{file} {tag}");
            let d = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            eprintln!("{file} {tag}: T = {}, max |dB diff| = {d:.2e}", got.ncols());
            assert!(d <= 2e-3, "{file} {tag}: {d} dB");
        }
    }
}
