//! The experiment as torchrun runs it: two processes (this test binary again, in
//! `experiment_rank_process`) with `RANK`, `WORLD_SIZE`, `MASTER_ADDR=127.0.0.1` and
//! `MASTER_PORT`, one epoch on a three-artist subset of the small tier. Rank 0 prepares the
//! store and alone writes the run; the re-run reads the finished run back on both ranks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use artist_crnn::experiment_cli::{Args, run};
use clap::Parser;

const WORKER: &str = "ARTIST_CRNN_DIST_EXPERIMENT_DIR";
const DEADLINE: Duration = Duration::from_secs(600);

fn argv(dir: &Path) -> Args {
    let s = |p: PathBuf| p.to_str().unwrap().to_owned();
    Args::try_parse_from([
        "experiment".to_owned(),
        "--data-dir".into(),
        s(dir.join("subset.tsv")),
        "--cache".into(),
        s(dir.join("features.h5")),
        "--epochs".into(),
        "1".into(),
        "--device".into(),
        "cpu".into(),
        "--threads".into(),
        "1".into(),
        "--no-tsne".into(),
        "--dist-timeout".into(),
        "120".into(),
        "--out".into(),
        s(dir.join("out")),
    ])
    .unwrap()
}

/// One rank, in a child process the parent started; nothing to do in the parent's own run.
#[test]
fn experiment_rank_process() {
    let Ok(dir) = std::env::var(WORKER) else {
        return;
    };
    let rank: usize = std::env::var("RANK").unwrap().parse().unwrap();
    let outcome = run(argv(Path::new(&dir))).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(outcome.runs, 1);
    // Rank 0 collects the reports and writes the summary; the others return none.
    assert_eq!(outcome.reports.len(), usize::from(rank == 0));
    assert_eq!(outcome.summary_md.is_empty(), rank != 0);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts two ranks (this test binary again, running the test `worker`) with torchrun's
/// variables for a store at `127.0.0.1:port` and the `extra` ones, and waits for both,
/// killing them past `deadline`. Returns their outputs and when each ended.
fn run_ranks(
    worker: &str,
    port: u16,
    extra: &[(&str, &std::ffi::OsStr)],
    deadline: Duration,
) -> (Vec<Output>, Vec<Duration>) {
    let t0 = Instant::now();
    let mut children: Vec<_> = (0..2)
        .map(|rank| {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args(["--exact", worker, "--nocapture"])
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("LOCAL_RANK", rank.to_string())
                .env("LOCAL_WORLD_SIZE", "2")
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in extra {
                cmd.env(k, v);
            }
            cmd.spawn().unwrap()
        })
        .collect();
    let mut ended: Vec<Option<Duration>> = vec![None; children.len()];
    while ended.iter().any(Option::is_none) {
        for (r, c) in children.iter_mut().enumerate() {
            if ended[r].is_none() && c.try_wait().unwrap().is_some() {
                ended[r] = Some(t0.elapsed());
            }
        }
        if t0.elapsed() > deadline {
            for c in &mut children {
                let _ = c.kill();
            }
            panic!("ranks still running after {deadline:?}: killed ({ended:?})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let outputs = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    (outputs, ended.into_iter().flatten().collect())
}

/// A rank's exit status, stdout and stderr, for an assertion message.
fn log(o: &Output) -> String {
    format!(
        "{}\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn launch(dir: &Path) -> Vec<Output> {
    let (outputs, _) = run_ranks(
        "experiment_rank_process",
        free_port(),
        &[(WORKER, dir.as_os_str())],
        DEADLINE,
    );
    for (rank, o) in outputs.iter().enumerate() {
        assert!(o.status.success(), "rank {rank}: {}", log(o));
    }
    outputs
}

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
fn experiment_under_a_two_rank_launch_trains_once_and_rank_0_writes() {
    crnn::recycle_large_allocations();
    let dir = tempfile::tempdir().unwrap();
    common::small_subset(dir.path());
    let first = launch(dir.path());
    let log0 = String::from_utf8_lossy(&first[0].stderr);
    let log1 = String::from_utf8_lossy(&first[1].stderr);
    assert!(log0.contains("distributed: rank 0 of 2"), "{log0}");
    assert!(log1.contains("waiting for rank 0 to prepare"), "{log1}");
    assert!(log0.contains("collective calls"), "{log0}");
    // Progress and results come from rank 0 only.
    assert!(!log1.contains("epoch   1:"), "{log1}");

    let run_dir = dir.path().join("out/song/94/seed-0");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["training"]["ranks"], 2);
    assert!(
        report["training"]["communication_seconds"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(report["training"]["epochs"], 1);
    let files = files_under(&dir.path().join("out"));
    // Every file once, no temporary left behind by a second writer.
    for f in &files {
        assert!(!f.contains(".tmp"), "left over: {f} in {files:?}");
    }
    for want in [
        "song/94/seed-0/report.json",
        "song/94/seed-0/model/weights.safetensors",
        "song/94/seed-0/model/history.csv",
        "summary.md",
    ] {
        assert!(
            files.iter().any(|f| f == want),
            "{want} missing from {files:?}"
        );
    }

    // Re-run: rank 0 reads the finished run and tells rank 1; nobody trains.
    let t = Instant::now();
    let again = launch(dir.path());
    let log0 = String::from_utf8_lossy(&again[0].stderr);
    assert!(!log0.contains("epoch   1:"), "trained again:\n{log0}");
    assert!(t.elapsed() < Duration::from_secs(120));
    assert_eq!(files_under(&dir.path().join("out")), files);
}

const FAILING: &str = "ARTIST_CRNN_DIST_FAILING_DIR";

/// One rank of the failing launch below: `--cache` under a regular file, so rank 0 cannot
/// create its feature store. Prints the error (as the experiment example does) and exits 3.
#[test]
fn failing_rank_process() {
    let Ok(dir) = std::env::var(FAILING) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let mut args = argv(&dir);
    args.cache = Some(dir.join("blocker").join("features.h5"));
    match run(args) {
        Ok(_) => println!("finished without an error"),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::exit(3);
        }
    }
}

/// Two ranks, rank 0 unable to write its feature store: both exit non-zero, rank 1 within
/// 60 s, with rank 0's own error text in its message (not gloo's "connection closed"). With
/// `agent_store`, the TCPStore is hosted by this test process, as torchrun's agent hosts it,
/// so rank 0's exit does not take the store down.
fn a_failed_rank_stops_the_other(agent_store: bool) {
    let dir = tempfile::tempdir().unwrap();
    common::small_subset(dir.path());
    std::fs::write(dir.path().join("blocker"), "a file, not a folder").unwrap();
    let port = free_port();
    let _store =
        agent_store.then(|| crnn::AgentStore::host(port, Duration::from_secs(120)).unwrap());
    let mut extra = vec![(FAILING, dir.path().as_os_str())];
    if agent_store {
        extra.push(("TORCHELASTIC_USE_AGENT_STORE", "True".as_ref()));
    }
    let (outputs, ended) = run_ranks(
        "failing_rank_process",
        port,
        &extra,
        Duration::from_secs(150),
    );
    let (log0, log1) = (log(&outputs[0]), log(&outputs[1]));
    assert_eq!(outputs[0].status.code(), Some(3), "rank 0:\n{log0}");
    assert_eq!(outputs[1].status.code(), Some(3), "rank 1:\n{log1}");
    // Rank 0's own error, as rank 0 printed it, is in rank 1's message.
    let own = log0
        .lines()
        .find_map(|l| l.strip_prefix("Error: "))
        .unwrap_or_else(|| panic!("rank 0 printed no error:\n{log0}"));
    assert!(own.contains("blocker"), "rank 0:\n{log0}");
    assert!(log1.contains("rank 0 failed: "), "rank 1:\n{log1}");
    assert!(
        log1.contains(own),
        "rank 1 lacks rank 0's error {own:?}:\n{log1}"
    );
    let took = ended[1];
    assert!(
        took < Duration::from_secs(60),
        "rank 1 took {took:?}:\n{log1}"
    );
    eprintln!(
        "store {}: rank 0 ended after {:?}, rank 1 after {took:?}",
        if agent_store {
            "hosted by the test"
        } else {
            "on rank 0"
        },
        ended[0]
    );
}

#[test]
fn a_failed_rank_0_hosting_the_store_stops_rank_1_with_its_error() {
    a_failed_rank_stops_the_other(false);
}

#[test]
fn a_failed_rank_0_with_an_agent_store_stops_rank_1_with_its_error() {
    a_failed_rank_stops_the_other(true);
}
