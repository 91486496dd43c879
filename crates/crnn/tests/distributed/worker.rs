//! The worker side of the distributed tests: what each rank process does, by scenario.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crnn::{
    CollectiveBackend, Crnn2d, EpochRecord, ExistingRun, FitParams, GlooDevice, GroupParams,
    KerasAdam, Launch, ProcessGroup, Rendezvous, TrainObserver, Trainer, train_step_distributed,
};
use tch::{Device, Kind, Tensor, nn};

use super::{
    DIR, TIMEOUT, Toy, WORKER, backend_named, sorted_variables, tiny, toy_batch, train_cfg,
};

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

fn check_collectives(g: &ProcessGroup, device: Device) {
    let (r, w) = (g.rank(), g.world_size());
    assert_eq!(w, 2);
    let cpu = |t: &Tensor| t.to_device(Device::Cpu).flatten(0, -1);
    // Two tensors of different shapes, one call.
    let mut ts = vec![
        Tensor::from_slice(&[(r + 1) as f32, 2.0]).to_device(device),
        Tensor::ones([2, 3], (Kind::Float, device)) * r as f64,
    ];
    g.all_reduce_sum(&mut ts).unwrap();
    assert_eq!(ts[0].device(), device, "results stay where the tensors are");
    assert_eq!(Vec::<f32>::try_from(cpu(&ts[0])).unwrap(), vec![3.0, 4.0]);
    assert_eq!(Vec::<f32>::try_from(cpu(&ts[1])).unwrap(), vec![1.0; 6]);
    let mut mean = [Tensor::from_slice(&[2.0 * r as f64, 5.0]).to_device(device)];
    g.all_reduce_mean(&mut mean).unwrap();
    assert_eq!(Vec::<f64>::try_from(cpu(&mean[0])).unwrap(), vec![1.0, 5.0]);
    // In place into a view of a bigger tensor.
    let big = Tensor::zeros([4], (Kind::Float, device)) + r as f64;
    let mut part = [big.narrow(0, 1, 2)];
    g.broadcast(&mut part, 1).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(cpu(&big)).unwrap(),
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
    // MODEL: another model of the zoo (libtorch ops; a crnn::ModelChoice name), AUGMENT: its
    // augmentation.
    let config = match std::env::var("MODEL") {
        Ok(name) => {
            let choice = crnn::ModelChoice::from_name(&name).unwrap();
            let frames = if choice.architecture == crnn::Architecture::Crnn1d {
                36
            } else {
                16
            };
            choice.config(2, frames)
        }
        Err(_) => tiny(true),
    };
    let (train, val) = (
        Toy::with_frames(70, config.slice_frames),
        Toy::with_frames(21, config.slice_frames),
    );
    let names = vec!["low".to_string(), "high".to_string()];
    let mut train_config = train_cfg(env_usize("EPOCHS"));
    if let Ok(list) = std::env::var("AUGMENT") {
        train_config.augment = crnn::Augment::from_names(&list).unwrap();
    }
    let model_dir = dir.join(&run);
    let params = FitParams::new(&config, &names, &train, &val, &model_dir)
        .backend(backend_named(&std::env::var("BACKEND").unwrap()))
        .existing(if std::env::var("RESUME").is_ok() {
            ExistingRun::Resume
        } else {
            ExistingRun::Refuse
        })
        .group(&g);
    let outcome = Trainer::new(train_config)
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
        "collectives-tcp" => check_collectives(&group_from_env(), Device::Cpu),
        "collectives-cuda" => {
            // CUDA tensors: NCCL (each rank its own GPU) or Gloo through host memory (both
            // ranks may share GPU 0), as BACKEND says.
            let launch = Launch::from_env().unwrap().unwrap();
            let nccl = std::env::var("BACKEND").unwrap() == "nccl";
            let device = Device::Cuda(if nccl { launch.rank } else { 0 });
            let params = GroupParams::from_launch(&launch)
                .timeout(TIMEOUT)
                .gloo(GlooDevice::Hostname("127.0.0.1".into()))
                .device(device)
                .backend(if nccl {
                    CollectiveBackend::Nccl
                } else {
                    CollectiveBackend::Gloo
                });
            let g = ProcessGroup::new(&params).unwrap();
            assert_eq!(g.backend() == CollectiveBackend::Nccl, nccl);
            check_collectives(&g, device);
        }
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
            check_collectives(&ProcessGroup::new(&params).unwrap(), Device::Cpu);
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
