//! The feature store: build, no-op re-run, partial rebuild of a changed file, rebuild on a
//! changed configuration, failures listed, resume from a killed run, and the on-disk layout
//! as an outside reader (h5py, else h5dump) sees it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use artist20::{Corpus, FeatureConfig, FeatureStore, build_store};
use common::{lock, wav};

fn make_corpus(root: &Path) {
    wav(&root.join("ann/first/a.wav"), 2.0, 440.0);
    wav(&root.join("ann/first/b.wav"), 1.0, 660.0);
    wav(&root.join("bob/only/c.wav"), 1.5, 220.0);
    std::fs::write(root.join("bob/only/broken.mp3"), b"this is not an mp3").unwrap();
}

#[test]
fn build_noop_refresh_and_failures() {
    let _guard = lock();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("corpus");
    make_corpus(&root);
    let store = dir.path().join("out/features.h5");
    let corpus = Corpus::scan(&root).unwrap();
    let cfg = FeatureConfig::default();

    let r = build_store(&corpus, &store, &cfg, false).unwrap();
    assert_eq!(
        (r.computed, r.reused, r.failed.len(), r.noop),
        (3, 0, 1, false)
    );
    assert!(
        r.failed[0].rel_path == "bob/only/broken.mp3" && r.failed[0].error.contains("broken.mp3"),
        "{:?}",
        r.failed
    );
    assert!(!Path::new(&format!("{}.partial", store.display())).exists());

    let s = FeatureStore::open(&store).unwrap();
    assert_eq!(s.entries().len(), 3);
    let mel = s.read("ann/first/a.wav").unwrap();
    assert_eq!(mel.dim(), (128, 1 + 32_000 / 512));
    // The stored features are what melspec computes from audio-io's decode.
    let direct = melspec::MelSpectrogram::new(cfg.mel.clone())
        .unwrap()
        .db(
            &audio_io::load(root.join("ann/first/a.wav"), &cfg.load_options())
                .unwrap()
                .samples,
        )
        .unwrap();
    assert_eq!(mel, direct);
    assert_eq!(s.failed().len(), 1);
    let features = s.load(&corpus).unwrap();
    drop(s);
    assert!(
        features[corpus
            .tracks
            .iter()
            .position(|t| t.rel_path == "bob/only/broken.mp3")
            .unwrap()]
        .is_none()
    );

    // Second run: nothing to do.
    let r = build_store(&corpus, &store, &cfg, false).unwrap();
    assert!(r.noop && r.computed == 0 && r.reused == 3 && r.failed.len() == 1);

    // One file changes: only it is recomputed.
    std::thread::sleep(std::time::Duration::from_millis(20));
    wav(&root.join("ann/first/b.wav"), 1.25, 660.0);
    let r = build_store(&corpus, &store, &cfg, false).unwrap();
    assert_eq!((r.computed, r.reused, r.noop), (1, 2, false));
    assert_eq!(
        FeatureStore::open(&store)
            .unwrap()
            .read("ann/first/b.wav")
            .unwrap()
            .ncols(),
        1 + 20_000 / 512
    );

    // A file is removed from the corpus: its entry goes.
    std::fs::remove_file(root.join("bob/only/c.wav")).unwrap();
    let corpus2 = Corpus::scan(&root).unwrap();
    let r = build_store(&corpus2, &store, &cfg, false).unwrap();
    assert_eq!((r.removed, r.computed), (1, 0));

    // A different mel configuration: everything is recomputed.
    let cfg2 = FeatureConfig {
        mel: melspec::MelConfig {
            n_mels: 96,
            ..Default::default()
        },
        ..Default::default()
    };
    let r = build_store(&corpus2, &store, &cfg2, false).unwrap();
    assert_eq!((r.computed, r.reused), (2, 0));
    assert_eq!(
        FeatureStore::open(&store)
            .unwrap()
            .read("ann/first/a.wav")
            .unwrap()
            .nrows(),
        96
    );
}

#[test]
fn a_killed_build_resumes_from_its_partial_file_and_junk_is_replaced() {
    let _guard = lock();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("corpus");
    make_corpus(&root);
    let corpus = Corpus::scan(&root).unwrap();
    let store = dir.path().join("f.h5");
    let partial = dir.path().join("f.h5.partial");
    // Simulate a kill: a complete build renamed back to .partial, minus nothing.
    build_store(&corpus, &store, &FeatureConfig::default(), false).unwrap();
    std::fs::rename(&store, &partial).unwrap();
    let r = build_store(&corpus, &store, &FeatureConfig::default(), false).unwrap();
    assert_eq!(
        (r.computed, r.reused),
        (0, 3),
        "the partial file's tracks are kept"
    );
    // A half-written (unreadable) partial file is discarded, not trusted.
    std::fs::write(&partial, b"garbage from a killed writer").unwrap();
    std::fs::remove_file(&store).unwrap();
    let r = build_store(&corpus, &store, &FeatureConfig::default(), false).unwrap();
    assert_eq!(r.computed, 3);
    // A store that is not ours gives a clear error.
    std::fs::write(&store, b"not hdf5").unwrap();
    assert!(FeatureStore::open(&store).is_err());
    assert!(
        FeatureStore::open(&dir.path().join("absent.h5"))
            .unwrap_err()
            .to_string()
            .contains("prepare")
    );
}

#[test]
fn layout_is_readable_without_our_code() {
    let _guard = lock();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("corpus");
    make_corpus(&root);
    let store = dir.path().join("f.h5");
    build_store(
        &Corpus::scan(&root).unwrap(),
        &store,
        &FeatureConfig::default(),
        false,
    )
    .unwrap();
    let h5py = "import h5py,sys\nf=h5py.File(sys.argv[1],'r')\nd=f['tracks/ann/first/a.wav']\nprint(dict(f.attrs)['n_mels'], d.shape, d.dtype, d.attrs['artist'], d.attrs['rel_path'])";
    let py = Command::new("python3")
        .args(["-c", h5py])
        .arg(&store)
        .output();
    match py {
        Ok(o) if o.status.success() => {
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                out.contains("128 (128, 63) float32 ann ann/first/a.wav"),
                "{out}"
            );
        }
        _ => {
            // No h5py: h5dump (hdf5-tools, installed by scripts/setup.sh) shows the same.
            let o = Command::new("h5dump")
                .args(["-H", "-A"])
                .arg(&store)
                .output()
                .expect("h5py or h5dump (apt install hdf5-tools) is needed to check the layout");
            let out = String::from_utf8_lossy(&o.stdout);
            for want in [
                "GROUP \"tracks\"",
                "GROUP \"ann\"",
                "DATASET \"a.wav\"",
                "H5T_IEEE_F32LE",
                "DATASPACE  SIMPLE { ( 128, 63 )",
                "ATTRIBUTE \"rel_path\"",
                "ATTRIBUTE \"feature_config_json\"",
                "ATTRIBUTE \"source_mtime_ns\"",
            ] {
                assert!(out.contains(want), "h5dump lacks {want}:\n{out}");
            }
        }
    }
}
