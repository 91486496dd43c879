//! Data-parallel training on c10d's ProcessGroupGloo, over loopback only: each test starts
//! two worker processes (this test binary again, in `dist_worker_process`) with torchrun's
//! environment (`RANK`, `WORLD_SIZE`, `MASTER_ADDR=127.0.0.1`, `MASTER_PORT`), or a
//! FileStore, and checks what they did. Every worker has a short c10d timeout and the parent
//! kills workers that outlive a deadline, so no test can hang.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crnn::{
    ConvBackend, Crnn2d, CrnnConfig, EpochRecord, ExistingRun, FitParams, GlooDevice, GroupParams,
    KerasAdam, Launch, ProcessGroup, Rendezvous, SliceSource, TrainConfig, TrainObserver, Trainer,
    train_step, train_step_distributed,
};
use tch::{Device, Kind, Tensor, nn};

use common::Toy;

const WORKER: &str = "CRNN_DIST_TEST_WORKER";
const DIR: &str = "CRNN_DIST_TEST_DIR";
/// c10d timeout of the workers.
const TIMEOUT: Duration = Duration::from_secs(20);
/// The parent kills workers still running after this.
const DEADLINE: Duration = Duration::from_secs(240);

/// Parent-side training (the one-process reference) uses libtorch's process-wide RNG.
static LOCK: Mutex<()> = Mutex::new(());

fn tiny(dropout: bool) -> CrnnConfig {
    let p = if dropout { 0.1 } else { 0.0 };
    CrnnConfig {
        n_classes: 2,
        slice_frames: 16,
        conv_filters: [4, 8, 8, 8],
        gru_units: 8,
        conv_dropout: p,
        gru_dropout: p,
        ..CrnnConfig::default()
    }
}

fn train_cfg(max_epochs: usize) -> TrainConfig {
    TrainConfig {
        max_epochs,
        patience: 100,
        seed: 3,
        learning_rate: 3e-3,
        batch_size: 8,
        ..TrainConfig::default()
    }
}

fn backend_named(name: &str) -> ConvBackend {
    ConvBackend::from_name(name).unwrap()
}

/// A batch of `n` Toy slices starting at `first`: `[n, 1, 128, 16]` and labels.
fn toy_batch(first: usize, n: usize) -> (Tensor, Tensor) {
    let toy = Toy::new(first + n);
    let mut data = vec![0f32; n * 128 * 16];
    for (i, out) in data.chunks_exact_mut(128 * 16).enumerate() {
        toy.write_slice(first + i, out);
    }
    let labels: Vec<i64> = (first..first + n).map(|i| toy.label(i) as i64).collect();
    (
        Tensor::from_slice(&data).view([n as i64, 1, 128, 16]),
        Tensor::from_slice(&labels),
    )
}

fn sorted_variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.contiguous()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn read_tensors(path: &Path) -> Vec<(String, Tensor)> {
    let mut v = Tensor::read_safetensors(path).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn assert_bit_identical(a: &[(String, Tensor)], b: &[(String, Tensor)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: variable count");
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb, "{what}");
        let (va, vb) = (
            Vec::<f32>::try_from(ta.flatten(0, -1)).unwrap(),
            Vec::<f32>::try_from(tb.flatten(0, -1)).unwrap(),
        );
        let same = va.iter().zip(&vb).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{what}: {na} differs");
    }
}

/// `(max |a - b|, max |b|)` over all variables.
fn max_difference(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> (f64, f64) {
    let (mut diff, mut scale) = (0f64, 0f64);
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        diff = diff.max((ta - tb).abs().max().double_value(&[]));
        scale = scale.max(tb.abs().max().double_value(&[]));
    }
    (diff, scale)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts rank `rank` of `world` running `scenario`, with torchrun's variables.
fn spawn(
    scenario: &str,
    rank: usize,
    world: usize,
    port: u16,
    dir: &Path,
    extra: &[(&str, &str)],
) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "dist_worker_process",
        "--test-threads=1",
        "--nocapture",
    ])
    .env(WORKER, scenario)
    .env(DIR, dir)
    .env("RANK", rank.to_string())
    .env("WORLD_SIZE", world.to_string())
    .env("LOCAL_RANK", rank.to_string())
    .env("LOCAL_WORLD_SIZE", world.to_string())
    .env("MASTER_ADDR", "127.0.0.1")
    .env("MASTER_PORT", port.to_string())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Waits for every child (killing all of them past [`DEADLINE`]) and returns their outputs.
fn wait_all(children: Vec<Child>) -> Vec<Output> {
    let t0 = Instant::now();
    let mut children: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    loop {
        let running = children
            .iter_mut()
            .flatten()
            .filter_map(|c| c.try_wait().ok())
            .filter(Option::is_none)
            .count();
        if running == 0 {
            break;
        }
        if t0.elapsed() > DEADLINE {
            for c in children.iter_mut().flatten() {
                let _ = c.kill();
            }
            panic!("workers still running after {DEADLINE:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    children
        .iter_mut()
        .map(|c| c.take().unwrap().wait_with_output().unwrap())
        .collect()
}

fn launch_group(scenario: &str, world: usize, dir: &Path, extra: &[(&str, &str)]) -> Vec<Output> {
    let port = free_port();
    let children = (0..world)
        .map(|r| spawn(scenario, r, world, port, dir, extra))
        .collect();
    wait_all(children)
}

fn log(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_all_ok(outputs: &[Output]) {
    for (r, o) in outputs.iter().enumerate() {
        assert!(o.status.success(), "rank {r} failed:\n{}", log(o));
    }
}

// ---- the worker side --------------------------------------------------------------------

fn group_from_env() -> ProcessGroup {
    let launch = Launch::from_env()
        .unwrap()
        .expect("launched with RANK/WORLD_SIZE");
    let params = GroupParams::from_launch(&launch)
        .timeout(TIMEOUT)
        .gloo(GlooDevice::Hostname("127.0.0.1".into()));
    ProcessGroup::new(&params).unwrap()
}

fn env_usize(var: &str) -> usize {
    std::env::var(var).unwrap().parse().unwrap()
}

fn check_collectives(g: &ProcessGroup) {
    let (r, w) = (g.rank(), g.world_size());
    assert_eq!(w, 2);
    // Two tensors of different shapes, one call.
    let mut ts = vec![
        Tensor::from_slice(&[(r + 1) as f32, 2.0]),
        Tensor::ones([2, 3], (Kind::Float, Device::Cpu)) * r as f64,
    ];
    g.all_reduce_sum(&mut ts).unwrap();
    assert_eq!(Vec::<f32>::try_from(&ts[0]).unwrap(), vec![3.0, 4.0]);
    assert_eq!(
        Vec::<f32>::try_from(ts[1].flatten(0, -1)).unwrap(),
        vec![1.0; 6]
    );
    let mut mean = [Tensor::from_slice(&[2.0 * r as f64, 5.0])];
    g.all_reduce_mean(&mut mean).unwrap();
    assert_eq!(Vec::<f64>::try_from(&mean[0]).unwrap(), vec![1.0, 5.0]);
    // In place into a view of a bigger tensor.
    let big = Tensor::zeros([4], (Kind::Float, Device::Cpu)) + r as f64;
    let mut part = [big.narrow(0, 1, 2)];
    g.broadcast(&mut part, 1).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(&big).unwrap(),
        vec![r as f32, 1.0, 1.0, r as f32]
    );
    let mut bytes = if r == 0 {
        b"rank 0 says hello".to_vec()
    } else {
        Vec::new()
    };
    g.broadcast_bytes(&mut bytes, 0).unwrap();
    assert_eq!(bytes, b"rank 0 says hello");
    g.barrier().unwrap();
    assert!(
        g.broadcast(&mut [Tensor::zeros([1], (Kind::Float, Device::Cpu))], 2)
            .is_err()
    );
}

/// A few steps of [`train_step_distributed`]: each rank on its own batch (or, with `SAME`,
/// both on one batch), then the variables to `DIR/steps-rank{r}.safetensors`.
fn steps_worker(dir: &Path) {
    let g = group_from_env();
    tch::set_num_threads(1);
    let backend = backend_named(&std::env::var("BACKEND").unwrap());
    let same = std::env::var("SAME").is_ok();
    let dropout = std::env::var("DROPOUT").is_ok();
    tch::manual_seed(11 + g.rank() as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = Crnn2d::new(&vs.root(), &tiny(dropout)).unwrap();
    model.set_backend(backend).unwrap();
    // Different initialisations on purpose: the broadcast must make them one.
    let mut live: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    live.sort_by(|a, b| a.0.cmp(&b.0));
    let mut live: Vec<Tensor> = live.into_iter().map(|(_, t)| t).collect();
    g.broadcast(&mut live, 0).unwrap();
    let mut adam = KerasAdam::new(&vs, &train_cfg(1));
    for step in 0..3 {
        let first = if same {
            8 * step
        } else {
            8 * (2 * step + g.rank())
        };
        let (xs, ys) = toy_batch(first, 8);
        train_step_distributed(
            &model,
            &mut adam,
            &xs,
            &ys,
            99 + step as u64 * 7 + g.rank() as u64,
            &g,
        )
        .unwrap();
    }
    // The trainable parameters: BatchNorm's moving averages stay per rank (as in DDP
    // without SyncBatchNorm) until the trainer broadcasts them.
    let params: Vec<(String, Tensor)> = sorted_variables(&vs)
        .into_iter()
        .filter(|(n, _)| vs.variables()[n].requires_grad())
        .collect();
    Tensor::write_safetensors(
        &params,
        dir.join(format!("steps-rank{}.safetensors", g.rank())),
    )
    .unwrap();
    Tensor::write_safetensors(
        &sorted_variables(&vs),
        dir.join(format!("steps-all-rank{}.safetensors", g.rank())),
    )
    .unwrap();
}

/// Dies (abort, like a killed process) at `DIE_AT=epoch:batch` on the rank it runs in.
struct DieAt(Option<(usize, usize)>);

impl TrainObserver for DieAt {
    fn batch(&mut self, epoch: usize, done: usize, _total: usize) {
        if self.0 == Some((epoch, done)) {
            eprintln!("dying at epoch {epoch} batch {done}, as asked");
            std::process::abort();
        }
    }
}

/// `Trainer::fit` over the group into `DIR/RUN`, resuming with `RESUME`; the outcome's
/// history to `DIR/RUN.history-rank{r}.json`.
fn fit_worker(dir: &Path) {
    let g = group_from_env();
    tch::set_num_threads(1);
    let run = std::env::var("RUN").unwrap();
    let die = std::env::var("DIE_AT").ok().and_then(|s| {
        let (e, b) = s.split_once(':')?;
        Some((e.parse().ok()?, b.parse().ok()?))
    });
    let die = if std::env::var("DIE_RANK")
        .ok()
        .map(|r| r.parse::<usize>().unwrap())
        == Some(g.rank())
    {
        die
    } else {
        None
    };
    let (train, val) = (Toy::new(70), Toy::new(21));
    let names = vec!["low".to_string(), "high".to_string()];
    let config = tiny(true);
    let model_dir = dir.join(&run);
    let params = FitParams::new(&config, &names, &train, &val, &model_dir)
        .backend(backend_named(&std::env::var("BACKEND").unwrap()))
        .existing(if std::env::var("RESUME").is_ok() {
            ExistingRun::Resume
        } else {
            ExistingRun::Refuse
        })
        .group(&g);
    let outcome = Trainer::new(train_cfg(env_usize("EPOCHS")))
        .fit(params, &mut DieAt(die))
        .unwrap_or_else(|e| panic!("{e}"));
    let history: Vec<[f64; 4]> = outcome
        .history
        .iter()
        .map(|h: &EpochRecord| [h.loss, h.acc, h.val_loss, h.val_acc])
        .collect();
    std::fs::write(
        dir.join(format!("{run}.history-rank{}.json", g.rank())),
        serde_json::to_string(&history).unwrap(),
    )
    .unwrap();
}

/// Runs in a child process when the parent test sets `CRNN_DIST_TEST_WORKER`; in the
/// parent's own run it has nothing to do.
#[test]
fn dist_worker_process() {
    let Ok(scenario) = std::env::var(WORKER) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    match scenario.as_str() {
        "collectives-tcp" => check_collectives(&group_from_env()),
        "collectives-file" => {
            let params = GroupParams::new(
                env_usize("RANK"),
                env_usize("WORLD_SIZE"),
                Rendezvous::File {
                    path: dir.join("filestore"),
                },
            )
            .timeout(TIMEOUT)
            .gloo(GlooDevice::Hostname("127.0.0.1".into()));
            check_collectives(&ProcessGroup::new(&params).unwrap());
        }
        "alone" => {
            // Rank 0 of 2 with nobody else: joining must fail within about the timeout.
            let launch = Launch::from_env().unwrap().unwrap();
            let params = GroupParams::from_launch(&launch)
                .timeout(Duration::from_secs(3))
                .gloo(GlooDevice::Hostname("127.0.0.1".into()));
            let t0 = Instant::now();
            let err = ProcessGroup::new(&params).unwrap_err().to_string();
            let secs = t0.elapsed().as_secs_f64();
            println!("error after {secs:.1} s: {err}");
            assert!(secs < 30.0, "took {secs} s");
            assert!(
                err.starts_with("rank 0 of 2: joining the process group"),
                "{err}"
            );
            assert!(err.to_lowercase().contains("timed out"), "{err}");
            assert!(err.contains("were all 2 ranks started"), "{err}");
        }
        "peer-leaves" => {
            // Rank 1 joins, then exits; rank 0's next collective must fail, not hang.
            let g = group_from_env();
            if g.rank() == 1 {
                std::process::exit(0);
            }
            let t0 = Instant::now();
            let err = g
                .all_reduce_sum(&mut [Tensor::ones([4], (Kind::Float, Device::Cpu))])
                .unwrap_err()
                .to_string();
            let secs = t0.elapsed().as_secs_f64();
            println!("error after {secs:.1} s: {err}");
            assert!(secs < 60.0, "took {secs} s");
            assert!(err.starts_with("rank 0 of 2: all_reduce"), "{err}");
        }
        "steps" => steps_worker(&dir),
        "fit" => fit_worker(&dir),
        other => panic!("unknown scenario {other}"),
    }
}

// ---- the tests --------------------------------------------------------------------------

#[test]
fn collectives_over_tcp_store_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    assert_all_ok(&launch_group("collectives-tcp", 2, dir.path(), &[]));
}

#[test]
fn collectives_over_file_store() {
    let dir = tempfile::tempdir().unwrap();
    assert_all_ok(&launch_group("collectives-file", 2, dir.path(), &[]));
}

#[test]
fn a_rank_that_never_arrives_times_out_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = wait_all(vec![spawn("alone", 0, 2, port, dir.path(), &[])]);
    println!("{}", log(&out[0]));
    assert_all_ok(&out);
}

#[test]
fn a_rank_that_leaves_makes_the_next_collective_fail() {
    let dir = tempfile::tempdir().unwrap();
    assert_all_ok(&launch_group("peer-leaves", 2, dir.path(), &[]));
}

fn steps_give_identical_parameters_on_every_rank(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = launch_group(
        "steps",
        2,
        dir.path(),
        &[("BACKEND", backend), ("DROPOUT", "1")],
    );
    assert_all_ok(&out);
    let r0 = read_tensors(&dir.path().join("steps-rank0.safetensors"));
    let r1 = read_tensors(&dir.path().join("steps-rank1.safetensors"));
    assert!(r0.len() >= 10, "{} trainable variables", r0.len());
    assert_bit_identical(&r0, &r1, &format!("{backend}: rank 0 vs rank 1"));
}

#[test]
fn two_ranks_hold_bit_identical_parameters_fused() {
    steps_give_identical_parameters_on_every_rank(
        &ConvBackend::default_for(Device::Cpu).unwrap().to_string(),
    );
}

#[test]
fn two_ranks_hold_bit_identical_parameters_libtorch_ops() {
    steps_give_identical_parameters_on_every_rank("libtorch");
}

/// 2 ranks, each on batch A (8 slices), against 1 process on the batch [A; A] (16 slices),
/// dropout off. The mathematics says they take the same steps: BatchNorm's batch mean and
/// biased variance of [A; A] are those of A, the mean loss over [A; A] is the mean over A,
/// and so is its gradient, which is what the all-reduce average of two equal gradients
/// gives. (With different halves BatchNorm's batch statistics would differ, as in DDP
/// without SyncBatchNorm, and the two runs must not agree.) Only float summation order
/// differs, so: within 1e-4 of the largest parameter.
fn half_batches_equal_the_whole_batch(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = launch_group(
        "steps",
        2,
        dir.path(),
        &[("BACKEND", backend), ("SAME", "1")],
    );
    assert_all_ok(&out);
    let two = read_tensors(&dir.path().join("steps-all-rank0.safetensors"));

    let _lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    tch::manual_seed(11); // rank 0's initialisation, which the workers broadcast
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = Crnn2d::new(&vs.root(), &tiny(false)).unwrap();
    model.set_backend(backend_named(backend)).unwrap();
    let mut adam = KerasAdam::new(&vs, &train_cfg(1));
    for step in 0..3 {
        let (xs, ys) = toy_batch(8 * step, 8);
        let (xs, ys) = (Tensor::cat(&[&xs, &xs], 0), Tensor::cat(&[&ys, &ys], 0));
        train_step(&model, &mut adam, &xs, &ys, 5).unwrap();
    }
    let one = sorted_variables(&vs);
    let (diff, scale) = max_difference(&two, &one);
    println!("{backend}: max |2 ranks - 1 process| = {diff:.3e} (largest parameter {scale:.3})");
    assert!(diff <= 1e-4 * scale.max(1.0), "{backend}: differ by {diff}");
    // And the steps did move the parameters (the comparison is not of two initialisations).
    tch::manual_seed(11);
    let fresh = nn::VarStore::new(Device::Cpu);
    let _ = Crnn2d::new(&fresh.root(), &tiny(false)).unwrap();
    let (moved, _) = max_difference(&one, &sorted_variables(&fresh));
    assert!(moved > 100.0 * diff.max(1e-7), "moved {moved}");
}

#[test]
fn two_ranks_on_half_batches_equal_one_on_the_whole_batch_fused() {
    half_batches_equal_the_whole_batch(&ConvBackend::default_for(Device::Cpu).unwrap().to_string());
}

#[test]
fn two_ranks_on_half_batches_equal_one_on_the_whole_batch_libtorch_ops() {
    half_batches_equal_the_whole_batch("libtorch");
}

/// Two ranks train 3 epochs uninterrupted; again with rank 1 killed in epoch 2 (rank 0 then
/// fails too, as torchrun would stop the group), relaunched with resume: the same weights,
/// bit for bit, and the same history on both ranks.
#[test]
fn a_killed_rank_then_a_relaunched_group_ends_as_the_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let backend = ConvBackend::default_for(Device::Cpu).unwrap().to_string();
    let common = [("BACKEND", backend.as_str()), ("EPOCHS", "3")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v: Vec<(&str, &str)> = common.to_vec();
        v.extend_from_slice(extra);
        v
    };
    assert_all_ok(&launch_group(
        "fit",
        2,
        dir.path(),
        &with(&[("RUN", "straight")]),
    ));

    let killed = launch_group(
        "fit",
        2,
        dir.path(),
        &with(&[("RUN", "killed"), ("DIE_AT", "2:3"), ("DIE_RANK", "1")]),
    );
    assert!(
        !killed[1].status.success(),
        "rank 1 should have died:\n{}",
        log(&killed[1])
    );
    assert!(
        !killed[0].status.success(),
        "rank 0 should have failed:\n{}",
        log(&killed[0])
    );
    let rank0 = String::from_utf8_lossy(&killed[0].stderr);
    assert!(
        rank0.contains("rank 0 of 2"),
        "rank 0's error names it:\n{rank0}"
    );

    assert_all_ok(&launch_group(
        "fit",
        2,
        dir.path(),
        &with(&[("RUN", "killed"), ("RESUME", "1")]),
    ));
    let a = read_tensors(&dir.path().join("straight").join("weights.safetensors"));
    let b = read_tensors(&dir.path().join("killed").join("weights.safetensors"));
    assert_bit_identical(&a, &b, "resumed vs uninterrupted");
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let straight = read("straight.history-rank0.json");
    assert_eq!(
        straight,
        read("straight.history-rank1.json"),
        "ranks' histories"
    );
    assert_eq!(
        straight,
        read("killed.history-rank0.json"),
        "resumed history"
    );
    assert_eq!(
        straight,
        read("killed.history-rank1.json"),
        "resumed history, rank 1"
    );
    let history: Vec<[f64; 4]> = serde_json::from_str(&straight).unwrap();
    assert_eq!(history.len(), 3);
}
