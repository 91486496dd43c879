//! Sharded feature extraction: shards built by separate processes, merged into an index that
//! reads exactly as the single-process store; a killed shard rerun; refusals of an incomplete
//! or inconsistent set; an empty shard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use artist20::{Corpus, FeatureConfig, FeatureStore, Shard, build_store, merge_shards};
use common::{lock, wav};

/// 3 artists x 4 tracks and one undecodable file.
fn make_corpus(root: &Path) {
    for (a, artist) in ["ann", "bob", "cy"].iter().enumerate() {
        for t in 0..4 {
            let f = 110.0 * (1 + a * 4 + t) as f32;
            wav(
                &root.join(format!("{artist}/album/t{t}.wav")),
                1.0 + 0.25 * t as f32,
                f,
            );
        }
    }
    std::fs::write(root.join("bob/album/broken.mp3"), b"not audio").unwrap();
}

/// A temporary folder holding `corpus/` made by [`make_corpus`], and that corpus scanned.
fn temp_corpus() -> (tempfile::TempDir, PathBuf, Corpus) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("corpus");
    make_corpus(&root);
    let corpus = Corpus::scan(&root).unwrap();
    (dir, root, corpus)
}

const WORKER: &str = "ARTIST20_SHARD_TEST_WORKER";

/// Runs in a child process when the parent test sets `ARTIST20_SHARD_TEST_WORKER` to
/// `ROOT|STORE|I/N`: builds that shard, as `prepare --shard I/N` does. In the parent's own run
/// it has nothing to do.
#[test]
fn shard_worker_process() {
    let Ok(spec) = std::env::var(WORKER) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (root, store, shard) = (
        parts[0],
        Path::new(parts[1]),
        Shard::parse(parts[2]).unwrap(),
    );
    let corpus = shard.select(&Corpus::scan(Path::new(root)).unwrap());
    build_store(
        &corpus,
        &shard.path(store),
        &FeatureConfig::default(),
        false,
    )
    .unwrap();
}

fn spawn_worker(root: &Path, store: &Path, shard: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "shard_worker_process", "--test-threads=1"])
        .env(
            WORKER,
            format!("{}|{}|{shard}", root.display(), store.display()),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn assert_same_store(a: &FeatureStore, b: &FeatureStore) {
    assert_eq!(a.config(), b.config());
    assert_eq!(a.entries().len(), b.entries().len());
    for (rel, ea) in a.entries() {
        let eb = &b.entries()[rel];
        assert_eq!(ea, eb, "{rel}");
        let (x, y) = (a.read(rel).unwrap(), b.read(rel).unwrap());
        assert_eq!(x.dim(), y.dim(), "{rel}");
        assert!(
            x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{rel}: not bit for bit"
        );
    }
    assert_eq!(a.failed(), b.failed());
}

#[test]
fn three_processes_merge_to_the_single_process_store() {
    let _guard = lock();
    let (dir, root, corpus) = temp_corpus();
    let single = dir.path().join("single.h5");
    build_store(&corpus, &single, &FeatureConfig::default(), false).unwrap();

    let store = dir.path().join("features.h5");
    let mut children: Vec<_> = (0..3)
        .map(|i| spawn_worker(&root, &store, &format!("{i}/3")))
        .collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    let sizes: Vec<usize> = (0..3)
        .map(|i| {
            FeatureStore::open(&Shard::new(i, 3).unwrap().path(&store))
                .unwrap()
                .entries()
                .len()
        })
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 12, "{sizes:?}");
    let report = merge_shards(&store).unwrap();
    assert_eq!((report.shards, report.tracks, report.failed), (3, 12, 1));
    assert!(!PathBuf::from(format!("{}.partial", store.display())).exists());
    let merged = FeatureStore::open(&store).unwrap();
    assert_same_store(&merged, &FeatureStore::open(&single).unwrap());
    // The index is a store like any other: a build over the whole corpus has nothing to do.
    let again = build_store(&corpus, &store, &FeatureConfig::default(), false).unwrap();
    assert!(again.noop);
    // It opens as one store from another folder too (the links are relative to the index).
    let moved = dir.path().join("moved");
    std::fs::create_dir_all(&moved).unwrap();
    for i in 0..3 {
        let p = Shard::new(i, 3).unwrap().path(&store);
        std::fs::rename(&p, moved.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::rename(&store, moved.join("features.h5")).unwrap();
    let cwd = std::env::current_dir().unwrap();
    let elsewhere = FeatureStore::open(&moved.join("features.h5")).unwrap();
    assert_eq!(std::env::current_dir().unwrap(), cwd);
    assert_same_store(&elsewhere, &FeatureStore::open(&single).unwrap());

    // h5py, where present, reads the index as one store through the external links.
    let script = "import h5py,sys\nf=h5py.File(sys.argv[1],'r')\nd=f['tracks/ann/album/t0.wav']\nprint(f.attrs['n_mels'], d.shape, d.attrs['artist'])";
    match Command::new("python3")
        .args(["-c", script])
        .arg(moved.join("features.h5"))
        .current_dir(dir.path())
        .output()
    {
        Ok(o) if o.status.success() => {
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(out.contains("128 (128, 32) ann"), "{out}");
        }
        _ => eprintln!("h5py not installed: the index was read through libhdf5 only"),
    }
}

#[test]
fn a_killed_shard_rerun_gives_the_same_shard() {
    let _guard = lock();
    let (dir, root, _) = temp_corpus();
    let clean = dir.path().join("clean.h5");
    assert!(spawn_worker(&root, &clean, "1/2").wait().unwrap().success());

    let store = dir.path().join("killed.h5");
    let shard = Shard::new(1, 2).unwrap().path(&store);
    let partial = PathBuf::from(format!("{}.partial", shard.display()));
    let mut child = spawn_worker(&root, &store, "1/2");
    // Kill it as soon as it has started writing (or whenever it is, if it is faster).
    let t0 = std::time::Instant::now();
    while !partial.exists() && !shard.exists() && t0.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    child.kill().unwrap();
    let _ = child.wait();
    eprintln!(
        "killed with {}",
        match (partial.exists(), shard.exists()) {
            (true, _) => "its .partial file on disk (mid-write)",
            (false, true) => "the shard already complete",
            _ => "nothing written yet",
        }
    );
    assert!(spawn_worker(&root, &store, "1/2").wait().unwrap().success());
    assert!(!partial.exists());
    let a = FeatureStore::open(&shard).unwrap();
    let b = FeatureStore::open(&Shard::new(1, 2).unwrap().path(&clean)).unwrap();
    assert_same_store(&a, &b);
}

#[test]
fn merge_refuses_missing_unfinished_and_inconsistent_shards() {
    let _guard = lock();
    let (dir, _, corpus) = temp_corpus();
    let store = dir.path().join("f.h5");
    let build = |i: usize, config: &FeatureConfig| {
        let s = Shard::new(i, 3).unwrap();
        build_store(&s.select(&corpus), &s.path(&store), config, false).unwrap();
    };
    let err = merge_shards(&store).unwrap_err().to_string();
    assert!(err.contains("no shards to merge"), "{err}");
    build(0, &FeatureConfig::default());
    build(2, &FeatureConfig::default());
    let err = merge_shards(&store).unwrap_err().to_string();
    assert!(
        err.contains("missing") && err.contains("f.shard-1-of-3.h5"),
        "{err}"
    );
    // Shard 1 "still running": only its .partial exists.
    let p1 = Shard::new(1, 3).unwrap().path(&store);
    std::fs::write(format!("{}.partial", p1.display()), b"half").unwrap();
    let err = merge_shards(&store).unwrap_err().to_string();
    assert!(err.contains("only its .partial"), "{err}");
    std::fs::remove_file(format!("{}.partial", p1.display())).unwrap();
    // Shard 1 with another mel configuration: refused, naming the field.
    let mut other = FeatureConfig::default();
    other.mel.n_mels = 96;
    build(1, &other);
    let err = merge_shards(&store).unwrap_err().to_string();
    assert!(
        err.contains("f.shard-1-of-3.h5") && err.contains("mel.n_mels: 128 vs 96"),
        "{err}"
    );
    assert!(!store.exists(), "nothing written on a refusal");
    // A stale shard of another count beside them.
    build(1, &FeatureConfig::default());
    let stale = Shard::new(0, 2).unwrap();
    build_store(
        &stale.select(&corpus),
        &stale.path(&store),
        &FeatureConfig::default(),
        false,
    )
    .unwrap();
    let err = merge_shards(&store).unwrap_err().to_string();
    assert!(err.contains("different counts"), "{err}");
    std::fs::remove_file(stale.path(&store)).unwrap();
    assert_eq!(merge_shards(&store).unwrap().tracks, 12);
}

#[test]
fn an_empty_shard_is_a_valid_store() {
    let _guard = lock();
    let (dir, _, corpus) = temp_corpus();
    // 20 shards over 13 files: some are empty.
    let store = dir.path().join("f.h5");
    let mut empty = 0;
    for i in 0..20 {
        let s = Shard::new(i, 20).unwrap();
        let part = s.select(&corpus);
        empty += usize::from(part.tracks.is_empty());
        build_store(&part, &s.path(&store), &FeatureConfig::default(), false).unwrap();
        let opened = FeatureStore::open(&s.path(&store)).unwrap();
        assert_eq!(
            opened.entries().len() + opened.failed().len(),
            part.tracks.len()
        );
    }
    assert!(empty > 0, "no empty shard in this partition");
    let r = merge_shards(&store).unwrap();
    assert_eq!((r.shards, r.tracks, r.failed), (20, 12, 1));
}
