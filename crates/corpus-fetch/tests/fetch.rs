//! Fetching from a package cache made in the test (no network, no apt): members of xz, gzip
//! and plain `.deb` packages and of a zip container, checksums, stamps, a re-fetch of a
//! changed file, and two processes fetching into one folder at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Compression, make_deb, synthetic_corpus};
use corpus_fetch::{Error, fetch_entries, parse_manifest};

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn members_come_out_of_xz_gzip_and_plain_packages() {
    let dir = tempfile::tempdir().unwrap();
    for (i, c) in [Compression::Xz, Compression::Gzip, Compression::Plain]
        .into_iter()
        .enumerate()
    {
        let deb = dir.path().join(format!("p{i}.deb"));
        make_deb(
            &deb,
            &[("usr/a.ogg", vec![1, 2, 3]), ("usr/b/c.ogg", vec![9; 5000])],
            c,
        );
        let dest = dir.path().join(format!("out{i}"));
        std::fs::create_dir_all(&dest).unwrap();
        // With or without the leading "./" of dpkg's member lists.
        let wanted: BTreeSet<String> =
            ["./usr/b/c.ogg".to_string(), "usr/a.ogg".to_string()].into();
        let got = corpus_fetch::deb::extract_members(&deb, &wanted, &dest).unwrap();
        assert_eq!(
            std::fs::read(&got["usr/a.ogg"]).unwrap(),
            vec![1, 2, 3],
            "{c:?}"
        );
        assert_eq!(
            std::fs::read(&got["./usr/b/c.ogg"]).unwrap(),
            vec![9; 5000],
            "{c:?}"
        );
        // A member that is not there names the package and the member.
        let err = corpus_fetch::deb::extract_members(&deb, &["usr/none.ogg".into()].into(), &dest)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("usr/none.ogg") && text.contains(&format!("p{i}.deb")),
            "{text}"
        );
    }
    // Not a .deb at all, and a truncated one.
    let bad = dir.path().join("bad.deb");
    std::fs::write(&bad, "just text").unwrap();
    assert!(matches!(
        corpus_fetch::deb::extract_members(&bad, &["usr/a.ogg".into()].into(), dir.path()),
        Err(Error::Package { .. })
    ));
    let full = std::fs::read(dir.path().join("p0.deb")).unwrap();
    std::fs::write(&bad, &full[..full.len() / 2]).unwrap();
    let err = corpus_fetch::deb::extract_members(&bad, &["usr/b/c.ogg".into()].into(), dir.path())
        .unwrap_err();
    assert!(matches!(err, Error::Package { .. }), "{err}");
}

#[test]
fn a_corpus_is_fetched_from_the_cache_verified_and_refetched_where_it_changed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("debs");
    let entries = parse_manifest(&synthetic_corpus(&cache)).unwrap();
    let root = dir.path().join("corpus");
    let first = fetch_entries(&root, &entries, &cache, |_| {}).unwrap();
    assert_eq!((first.present, first.written), (5, 5));
    assert!(
        first.downloaded_packages.is_empty(),
        "nothing to download: all cached"
    );
    let files = files_under(&root);
    for e in &entries {
        assert_eq!(
            common::sha256(&std::fs::read(root.join(&e.path)).unwrap()),
            e.sha256
        );
        assert!(files.contains(&e.path), "{} missing from {files:?}", e.path);
    }
    // Only the corpus, its stamp, its credits and the lock: no temporary left.
    assert_eq!(files.len(), 5 + 3, "{files:?}");
    assert!(
        std::fs::read_to_string(root.join("CREDITS.md"))
            .unwrap()
            .contains("## ann")
    );
    // Again: nothing written.
    let second = fetch_entries(&root, &entries, &cache, |_| {}).unwrap();
    assert_eq!((second.present, second.written), (5, 0));
    // A file whose bytes changed is written again from the cache.
    std::fs::write(root.join("bob/live/y.ogg"), "changed").unwrap();
    let third = fetch_entries(&root, &entries, &cache, |_| {}).unwrap();
    assert_eq!(third.written, 1);
    assert_eq!(files_under(&root), files);
}

#[test]
fn a_checksum_that_differs_names_the_file_and_the_member_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("debs");
    let text = synthetic_corpus(&cache).replace(
        &common::sha256(&(0..20_000u32).map(|k| (k as u8) ^ 3).collect::<Vec<u8>>()),
        &"0".repeat(64),
    );
    let entries = parse_manifest(&text).unwrap();
    let root = dir.path().join("corpus");
    let err = fetch_entries(&root, &entries, &cache, |_| {}).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Checksum { .. }), "{text}");
    assert!(
        text.contains("bob/live/x.ogg") && text.contains("usr/share/beta/x.ogg"),
        "{text}"
    );
    assert!(!root.join("bob/live/x.ogg").exists());
    assert!(
        files_under(&root).iter().all(|f| !f.contains(".tmp")),
        "{:?}",
        files_under(&root)
    );
}

const CHILD: &str = "CORPUS_FETCH_TEST_CHILD";

/// One fetching process, started by the test below (nothing to do in a plain test run).
#[test]
fn fetch_child_process() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let entries =
        parse_manifest(&std::fs::read_to_string(dir.join("manifest.tsv")).unwrap()).unwrap();
    let r = fetch_entries(&dir.join("corpus"), &entries, &dir.join("debs"), |s| {
        eprintln!("step: {s}")
    })
    .unwrap();
    println!(
        "written={} present={} waited={:.3}",
        r.written, r.present, r.waited_seconds
    );
}

#[test]
fn two_processes_fetching_into_one_folder_at_once_both_end_with_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = synthetic_corpus(&dir.path().join("debs"));
    std::fs::write(dir.path().join("manifest.tsv"), &manifest).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "fetch_child_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut written = Vec::new();
    for o in &outputs {
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        // The harness prints "test fetch_child_process ... " on the same line.
        let line = out
            .lines()
            .find_map(|l| l.split_once("written="))
            .unwrap()
            .1;
        written.push(line.split(' ').next().unwrap().parse::<usize>().unwrap());
        assert!(line.contains("present=5"), "{line}");
    }
    // One wrote the corpus, the other found it ready after waiting for the lock.
    written.sort();
    assert_eq!(written, vec![0, 5], "{outputs:?}");
    let root = dir.path().join("corpus");
    let entries = parse_manifest(&manifest).unwrap();
    for e in &entries {
        assert_eq!(
            common::sha256(&std::fs::read(root.join(&e.path)).unwrap()),
            e.sha256
        );
    }
    let files = files_under(&root);
    assert_eq!(
        files.len(),
        5 + 3,
        "no temporaries of either process left: {files:?}"
    );
}
