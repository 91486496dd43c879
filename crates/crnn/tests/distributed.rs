//! Data-parallel training on c10d's ProcessGroupGloo, over loopback only: each test starts
//! two worker processes (this test binary again, in `worker::dist_worker_process`) with torchrun's
//! environment (`RANK`, `WORLD_SIZE`, `MASTER_ADDR=127.0.0.1`, `MASTER_PORT`), or a
//! FileStore, and checks what they did. Every worker has a short c10d timeout and the parent
//! kills workers that outlive a deadline, so no test can hang.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crnn::{ConvBackend, Crnn2d, CrnnConfig, KerasAdam, SliceSource, TrainConfig, train_step};
use tch::{Device, Tensor, nn};

use common::Toy;

#[path = "distributed/worker.rs"]
mod worker;

const WORKER: &str = "CRNN_DIST_TEST_WORKER";
const DIR: &str = "CRNN_DIST_TEST_DIR";
/// c10d timeout of the workers.
const TIMEOUT: Duration = Duration::from_secs(60);
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
        toy.write_slice(first + i, out).unwrap();
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
        "worker::dist_worker_process",
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

/// Says on the terminal (not the captured output) that a test was skipped, and why.
fn skipped(test: &str, why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{test}: skipped ({why})");
}

#[test]
fn cuda_tensors_through_gloo() {
    if !tch::Cuda::is_available() {
        return skipped("cuda_tensors_through_gloo", "no CUDA device");
    }
    let dir = tempfile::tempdir().unwrap();
    assert_all_ok(&launch_group(
        "collectives-cuda",
        2,
        dir.path(),
        &[("BACKEND", "gloo")],
    ));
}

#[test]
fn collectives_over_nccl_on_two_gpus() {
    if !crnn::ProcessGroup::nccl_available() {
        return skipped(
            "collectives_over_nccl_on_two_gpus",
            "this build has no ProcessGroupNCCL (CPU libtorch)",
        );
    }
    if tch::Cuda::device_count() < 2 {
        return skipped(
            "collectives_over_nccl_on_two_gpus",
            "NCCL needs a GPU per rank and fewer than 2 are visible",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    assert_all_ok(&launch_group(
        "collectives-cuda",
        2,
        dir.path(),
        &[("BACKEND", "nccl")],
    ));
}

#[test]
fn nccl_is_refused_where_it_cannot_run() {
    // Checked before any network call: a CPU device, or (CPU libtorch) no NCCL in the build.
    let params = crnn::GroupParams::new(
        0,
        1,
        crnn::Rendezvous::File {
            path: "unused".into(),
        },
    )
    .backend(crnn::CollectiveBackend::Nccl);
    let err = crnn::ProcessGroup::new(&params).unwrap_err().to_string();
    assert!(err.contains("nccl needs a CUDA device, not Cpu"), "{err}");
    if !crnn::ProcessGroup::nccl_available() {
        let err = crnn::ProcessGroup::new(&params.device(Device::Cuda(0)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("this build has no ProcessGroupNCCL"), "{err}");
    }
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

/// The fused backend of this CPU, or `None` (and a visible skip line naming `test`) on a CPU
/// without AVX2+FMA, where the default backend is libtorch's ops and a "fused" test would
/// compare libtorch with libtorch.
fn fused_or_skip(test: &str) -> Option<String> {
    match ConvBackend::default_for(Device::Cpu).unwrap() {
        b @ ConvBackend::FusedCpu(_) => Some(b.to_string()),
        other => {
            skipped(
                test,
                &format!("this CPU lacks AVX2+FMA, so its default backend is {other}, not fused"),
            );
            None
        }
    }
}

#[test]
fn two_ranks_hold_bit_identical_parameters_fused() {
    if let Some(backend) = fused_or_skip("two_ranks_hold_bit_identical_parameters_fused") {
        steps_give_identical_parameters_on_every_rank(&backend);
    }
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
    if let Some(backend) =
        fused_or_skip("two_ranks_on_half_batches_equal_one_on_the_whole_batch_fused")
    {
        half_batches_equal_the_whole_batch(&backend);
    }
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

/// The other architectures (libtorch ops), RNN with every augmentation and CRNN1D with its
/// input BatchNorm (whose moving statistics rank 0 gives every rank before validation), train
/// as a group of two ranks: both end with the same history (the ranks agree on every epoch),
/// and the model directory loads.
#[test]
fn every_architecture_trains_data_parallel() {
    for (model, augment) in [("rnn", "crop,specaugment,mixup,gain"), ("crnn1d-bn", "")] {
        let dir = tempfile::tempdir().unwrap();
        let mut env = vec![
            ("BACKEND", "libtorch-ops"),
            ("EPOCHS", "2"),
            ("RUN", "zoo"),
            ("MODEL", model),
        ];
        if !augment.is_empty() {
            env.push(("AUGMENT", augment));
        }
        assert_all_ok(&launch_group("fit", 2, dir.path(), &env));
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(
            read("zoo.history-rank0.json"),
            read("zoo.history-rank1.json"),
            "{model}: ranks' histories"
        );
        let loaded = crnn::TrainedModel::load(&dir.path().join("zoo"), Device::Cpu).unwrap();
        assert!(loaded.is_finished(), "{model}");
        assert!(loaded.model.as_crnn2d().is_none(), "{model}");
        let config = read("zoo/config.json");
        assert_eq!(
            config.contains("\"input_norm\": true"),
            model.ends_with("-bn"),
            "{model}: {config}"
        );
    }
}
