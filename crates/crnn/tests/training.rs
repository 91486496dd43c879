//! The trainer on a tiny separable problem (one libtorch thread): learning, exact
//! determinism, exact resume, save/load, the NaN guard and the model-directory rules. The
//! device tests run on the CPU and, when there is one, on CUDA (`test_device!`); exact
//! determinism and resume are checked on the CPU (CUDA's kernels do not promise it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Toy;

use std::sync::atomic::Ordering;

use crnn::{
    Control, ConvBackend, CrnnConfig, EpochRecord, Error, ExistingRun, FitParams, RunStatus,
    Silent, TrainConfig, TrainObserver, TrainedModel, Trainer, predict_proba,
};
use tch::Device;

fn tiny() -> CrnnConfig {
    CrnnConfig {
        n_classes: 2,
        slice_frames: 16,
        conv_filters: [4, 8, 8, 8],
        gru_units: 8,
        ..CrnnConfig::default()
    }
}

fn names() -> Vec<String> {
    vec!["low".into(), "high".into()]
}

fn train_cfg(max_epochs: usize) -> TrainConfig {
    TrainConfig {
        max_epochs,
        patience: 100,
        seed: 3,
        learning_rate: 3e-3,
        ..TrainConfig::default()
    }
}

/// libtorch's RNG and thread count are process-wide: tests that train take turns.
static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    let guard = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    guard
}

fn fit(
    dir: &std::path::Path,
    cfg: TrainConfig,
    existing: ExistingRun,
    observer: &mut dyn TrainObserver,
) -> crnn::Result<crnn::TrainOutcome> {
    fit_on(dir, cfg, existing, observer, Device::Cpu, None)
}

fn fit_on(
    dir: &std::path::Path,
    cfg: TrainConfig,
    existing: ExistingRun,
    observer: &mut dyn TrainObserver,
    device: Device,
    backend: Option<ConvBackend>,
) -> crnn::Result<crnn::TrainOutcome> {
    let _guard = lock();
    let (train, val, config, names) = (Toy::new(48), Toy::new(16), tiny(), names());
    let mut params = FitParams::new(&config, &names, &train, &val, dir)
        .device(device)
        .existing(existing)
        .metadata(serde_json::json!({"test": true}));
    params.backend = backend;
    Trainer::new(cfg).fit(params, observer)
}

fn weights(dir: &std::path::Path) -> Vec<u8> {
    std::fs::read(dir.join(crnn::WEIGHTS_FILE)).unwrap()
}

#[test]
fn learns_a_separable_set_and_repeats_exactly() {
    let a = tempfile::tempdir().unwrap();
    let out = fit(a.path(), train_cfg(12), ExistingRun::Refuse, &mut Silent).unwrap();
    let first = out.history.first().unwrap();
    let last = out.history.last().unwrap();
    assert!(
        last.loss < first.loss,
        "loss did not fall: {first:?} -> {last:?}"
    );
    assert_eq!(last.acc, 1.0, "training accuracy {last:?}");
    assert_eq!(out.history.len(), 12);
    // Same seed, one thread: identical weights and history.
    let b = tempfile::tempdir().unwrap();
    let out_b = fit(b.path(), train_cfg(12), ExistingRun::Refuse, &mut Silent).unwrap();
    assert!(
        weights(a.path()) == weights(b.path()),
        "same seed, different weights"
    );
    let strip = |h: &[EpochRecord]| {
        h.iter()
            .map(|r| (r.loss, r.acc, r.val_loss, r.val_acc))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&out.history), strip(&out_b.history));
    // The directory says it is finished and refuses to train again.
    let file: crnn::ModelFile =
        serde_json::from_str(&std::fs::read_to_string(a.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(file.status, RunStatus::Finished);
    assert_eq!(file.best_epoch, out.best_epoch);
    assert!(matches!(
        fit(a.path(), train_cfg(12), ExistingRun::Resume, &mut Silent),
        Err(Error::AlreadyTrained { .. })
    ));
    assert_eq!(crnn::read_history(a.path()).unwrap().len(), 12);
}

/// The libtorch-op backend learns on every device (on CUDA it is the default).
fn libtorch_ops_learn(device: Device) {
    let dir = tempfile::tempdir().unwrap();
    let out = fit_on(
        dir.path(),
        train_cfg(12),
        ExistingRun::Refuse,
        &mut Silent,
        device,
        Some(ConvBackend::LibtorchOps),
    )
    .unwrap();
    let (first, last) = (out.history[0], out.history[11]);
    assert!(last.loss < 0.5 * first.loss, "{first:?} -> {last:?}");
    assert_eq!(last.acc, 1.0, "{last:?}");
}
test_device!(
    libtorch_ops_learn,
    the_libtorch_op_path_learns_cpu,
    the_libtorch_op_path_learns_cuda
);

#[test]
fn a_fused_backend_on_cuda_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let isa = crnn::crnn_kernels::Isa::best();
    let err = fit_on(
        dir.path(),
        train_cfg(1),
        ExistingRun::Refuse,
        &mut Silent,
        Device::Cuda(0),
        Some(ConvBackend::FusedCpu(isa)),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(!dir.path().join("config.json").exists());
}

#[test]
fn a_config_json_from_before_the_backend_split_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    fit(dir.path(), train_cfg(1), ExistingRun::Refuse, &mut Silent).unwrap();
    let path = dir.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["train"]["channels_last"] = true.into();
    json["train"]["fused_cpu_kernels"] = false.into();
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let _guard = lock();
    let m = TrainedModel::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(
        m.model.backend(),
        ConvBackend::default_for(Device::Cpu).unwrap()
    );
}

struct StopAfter(usize);
impl TrainObserver for StopAfter {
    fn epoch(&mut self, r: &EpochRecord, _improved: bool) -> Control {
        if r.epoch >= self.0 {
            Control::Interrupt
        } else {
            Control::Continue
        }
    }
}

#[test]
fn interrupted_then_resumed_equals_uninterrupted() {
    let whole = tempfile::tempdir().unwrap();
    let full = fit(whole.path(), train_cfg(6), ExistingRun::Refuse, &mut Silent).unwrap();
    let parts = tempfile::tempdir().unwrap();
    let part = fit(
        parts.path(),
        train_cfg(6),
        ExistingRun::Refuse,
        &mut StopAfter(3),
    )
    .unwrap();
    assert!(part.interrupted);
    assert_eq!(part.history.len(), 3);
    // Without asking to resume, an unfinished run is not touched.
    assert!(matches!(
        fit(parts.path(), train_cfg(6), ExistingRun::Refuse, &mut Silent),
        Err(Error::UnfinishedRun { epoch: 3, .. })
    ));
    // A different configuration cannot resume it.
    assert!(matches!(
        fit(parts.path(), train_cfg(7), ExistingRun::Resume, &mut Silent),
        Err(Error::Mismatch { .. })
    ));
    let rest = fit(parts.path(), train_cfg(6), ExistingRun::Resume, &mut Silent).unwrap();
    assert_eq!(rest.history.len(), 6);
    assert!(
        weights(whole.path()) == weights(parts.path()),
        "resumed run ends with different weights"
    );
    let strip = |h: &[EpochRecord]| h.iter().map(|r| (r.loss, r.val_loss)).collect::<Vec<_>>();
    assert_eq!(strip(&full.history), strip(&rest.history));
}

fn save_load(device: Device) {
    let dir = tempfile::tempdir().unwrap();
    fit_on(
        dir.path(),
        train_cfg(2),
        ExistingRun::Refuse,
        &mut Silent,
        device,
        None,
    )
    .unwrap();
    // Building a model draws from libtorch's global generator: hold the lock, or a training
    // test running beside this one gets other initial weights and dropout masks.
    let _guard = lock();
    let data = Toy::new(10);
    let a = TrainedModel::load(dir.path(), device).unwrap();
    let b = TrainedModel::load(dir.path(), device).unwrap();
    // Same batch size: a loaded model is the saved one, bit for bit.
    let pa = predict_proba(&a.model, &data, 4, device).unwrap();
    let pb = predict_proba(&b.model, &data, 4, device).unwrap();
    assert_eq!(pa, pb);
    assert_eq!(pa.dim(), (10, 2));
    // Another batch size: libtorch's convolutions and GEMMs may pick other kernels (and so
    // another summation order) for another batch, on some CPUs (seen: 1 ulp on an AVX2-only
    // Zen 3). Probabilities agree to float rounding, stated as 1e-6 absolute.
    let pc = predict_proba(&b.model, &data, 7, device).unwrap();
    let worst = pa
        .iter()
        .zip(pc.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-6, "batch 4 vs 7 differ by {worst}");
    assert_eq!(a.file.class_names, names());
    let e = crnn::embed(&a.model, &data, 3, device).unwrap();
    assert_eq!(e.dim(), (10, 8));
}
test_device!(
    save_load,
    save_load_gives_identical_outputs_cpu,
    save_load_gives_identical_outputs_cuda
);

struct PoisonAfterFirst<'a>(&'a Toy);
impl TrainObserver for PoisonAfterFirst<'_> {
    fn epoch(&mut self, _r: &EpochRecord, _improved: bool) -> Control {
        self.0.poison.store(true, Ordering::Relaxed);
        Control::Continue
    }
}

fn nan_guard(device: Device) {
    let _guard = lock();
    let dir = tempfile::tempdir().unwrap();
    let (train, val, config, names) = (Toy::new(48), Toy::new(16), tiny(), names());
    let params = || FitParams::new(&config, &names, &train, &val, dir.path()).device(device);
    let err = Trainer::new(train_cfg(5))
        .fit(params(), &mut PoisonAfterFirst(&train))
        .unwrap_err();
    assert!(matches!(err, Error::Diverged { epoch: 2, .. }), "{err}");
    assert!(err.to_string().contains("checkpoint"), "{err}");
    let file: crnn::ModelFile =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        (file.status, file.epochs_completed, file.best_epoch),
        (RunStatus::Training, 1, 1)
    );
    assert!(TrainedModel::load(dir.path(), device).is_ok());
    // With clean data, the run resumes from epoch 1.
    train.poison.store(false, Ordering::Relaxed);
    let out = Trainer::new(train_cfg(5))
        .fit(params().existing(ExistingRun::Resume), &mut Silent)
        .unwrap();
    assert_eq!(out.history.len(), 5);
}
test_device!(
    nan_guard,
    nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint_cpu,
    nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint_cuda
);

#[test]
fn bad_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (train, empty, config, names) = (Toy::new(8), Toy::new(0), tiny(), names());
    let params = FitParams::new(&config, &names, &train, &empty, dir.path());
    assert!(matches!(params.check(), Err(Error::EmptyData(_))));
    let err = Trainer::new(train_cfg(1))
        .fit(params, &mut Silent)
        .unwrap_err();
    assert!(matches!(err, Error::EmptyData(_)), "{err}");
    let wrong = CrnnConfig {
        slice_frames: 32,
        ..tiny()
    };
    let err = Trainer::new(train_cfg(1))
        .fit(
            FitParams::new(&wrong, &names, &train, &train, dir.path()),
            &mut Silent,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let err = FitParams::new(&config, &names[..1], &train, &train, dir.path())
        .check()
        .unwrap_err();
    assert!(err.to_string().contains("class_names"), "{err}");
    assert!(!dir.path().join("config.json").exists());
}

/// The epoch a monitor keeps, by its own rule over the recorded scores (strict improvement,
/// so the first of equal scores).
fn expected_best(monitor: crnn::Monitor, history: &[EpochRecord]) -> usize {
    let mut best = (0usize, monitor.initial());
    for r in history {
        let s = monitor.score(r);
        if monitor.improves(s, best.1) {
            best = (r.epoch, s);
        }
    }
    best.0
}

#[test]
fn each_monitor_keeps_its_own_epoch_on_one_trajectory() {
    use crnn::Monitor;
    let mut histories = Vec::new();
    for monitor in Monitor::ALL {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TrainConfig {
            monitor,
            ..train_cfg(8)
        };
        let out = fit(dir.path(), cfg, ExistingRun::Refuse, &mut Silent).unwrap();
        assert_eq!(out.monitor, monitor);
        assert_eq!(out.history.len(), 8, "{monitor}: patience 100 never stops");
        assert_eq!(
            out.best_epoch,
            expected_best(monitor, &out.history),
            "{monitor}"
        );
        let kept = &out.history[out.best_epoch - 1];
        assert_eq!(out.best_score, monitor.score(kept), "{monitor}");
        assert_eq!(out.best_val_loss, kept.val_loss, "{monitor}");
        for r in &out.history {
            assert!(
                (0.0..=1.0).contains(&r.val_f1),
                "{monitor}: val_f1 {}",
                r.val_f1
            );
        }
        let file: crnn::ModelFile =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(file.train.monitor, monitor, "recorded in config.json");
        assert_eq!(file.best_epoch, out.best_epoch);
        if monitor == Monitor::Last {
            // The kept weights are the last epoch's: their validation F1 is the last record's,
            // recomputed here with scikit-learn-equal eval. (Loading draws initial weights
            // from libtorch's generator: under the lock, as training.)
            let _guard = lock();
            let model = TrainedModel::load(dir.path(), Device::Cpu).unwrap();
            let val = Toy::new(16);
            let probs = predict_proba(&model.model, &val, 64, Device::Cpu).unwrap();
            let pred: Vec<usize> = probs
                .outer_iter()
                .map(|r| usize::from(r[1] > r[0]))
                .collect();
            let truth: Vec<usize> = (0..16).map(|i| crnn::SliceSource::label(&val, i)).collect();
            let f1 = eval::ClassificationReport::new(&truth, &pred, &names())
                .unwrap()
                .weighted_f1();
            let last = out.history.last().unwrap();
            assert!(
                (last.val_f1 - f1).abs() < 1e-12,
                "{} vs eval {f1}",
                last.val_f1
            );
            assert_eq!(out.best_epoch, 8);
        }
        histories.push(
            out.history
                .iter()
                .map(|r| (r.loss, r.val_loss, r.val_acc, r.val_f1))
                .collect::<Vec<_>>(),
        );
    }
    // The monitor picks weights; it does not change the trajectory.
    assert!(histories.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn patience_counts_on_the_monitor_and_resume_keeps_it() {
    use crnn::Monitor;
    for monitor in [Monitor::ValAccuracy, Monitor::ValLoss, Monitor::Last] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TrainConfig {
            monitor,
            patience: 1,
            ..train_cfg(10)
        };
        let out = fit(dir.path(), cfg, ExistingRun::Refuse, &mut Silent).unwrap();
        // Where patience 1 stops: the first epoch that does not improve on the best so far.
        let mut best = monitor.initial();
        let mut stop = out.history.len();
        for r in &out.history {
            let s = monitor.score(r);
            if monitor.improves(s, best) {
                best = s;
            } else {
                stop = r.epoch;
                break;
            }
        }
        if monitor == Monitor::Last {
            assert_eq!((out.history.len(), out.stopped_early), (10, false));
        } else {
            assert_eq!(out.history.len(), stop, "{monitor}");
            assert_eq!(out.stopped_early, stop < 10, "{monitor}");
        }
    }
    // An interrupted run resumes only with its own monitor.
    let dir = tempfile::tempdir().unwrap();
    let acc = TrainConfig {
        monitor: Monitor::ValAccuracy,
        ..train_cfg(5)
    };
    fit(
        dir.path(),
        acc.clone(),
        ExistingRun::Refuse,
        &mut StopAfter(2),
    )
    .unwrap();
    assert!(matches!(
        fit(dir.path(), train_cfg(5), ExistingRun::Resume, &mut Silent),
        Err(Error::Mismatch {
            what: "training config",
            ..
        })
    ));
    let whole = tempfile::tempdir().unwrap();
    let full = fit(whole.path(), acc.clone(), ExistingRun::Refuse, &mut Silent).unwrap();
    let rest = fit(dir.path(), acc, ExistingRun::Resume, &mut Silent).unwrap();
    assert_eq!(rest.best_epoch, full.best_epoch);
    assert_eq!(rest.best_score, full.best_score);
    assert!(weights(whole.path()) == weights(dir.path()));
    // Names, and config files from before monitors existed.
    for m in Monitor::ALL {
        assert_eq!(Monitor::from_name(m.name()).unwrap(), m);
    }
    assert!(Monitor::from_name("val_loss").is_err());
    let mut old = serde_json::to_value(TrainConfig::default()).unwrap();
    old.as_object_mut().unwrap().remove("monitor");
    let read: TrainConfig = serde_json::from_value(old).unwrap();
    assert_eq!(read.monitor, Monitor::ValLoss);
}

fn fit_keeping(dir: &std::path::Path, cfg: TrainConfig) -> crnn::TrainOutcome {
    let _guard = lock();
    let (train, val, config, names) = (Toy::new(48), Toy::new(16), tiny(), names());
    let params = FitParams::new(&config, &names, &train, &val, dir)
        .metadata(serde_json::json!({"test": true}))
        .keep_epoch_weights(true);
    Trainer::new(cfg).fit(params, &mut Silent).unwrap()
}

#[test]
fn reselecting_equals_training_with_the_other_monitor() {
    use crnn::Monitor;
    let src = tempfile::tempdir().unwrap();
    let out = fit_keeping(src.path(), train_cfg(7));
    for e in 1..=7 {
        assert!(
            crnn::epoch_weights_path(src.path(), e).is_file(),
            "epoch {e} kept"
        );
    }
    // The last epoch's kept weights are the ones training ended with.
    assert_eq!(out.monitor, Monitor::ValLoss);
    for monitor in [Monitor::ValAccuracy, Monitor::ValF1, Monitor::Last] {
        let direct = tempfile::tempdir().unwrap();
        let cfg = TrainConfig {
            monitor,
            ..train_cfg(7)
        };
        let trained = fit(direct.path(), cfg, ExistingRun::Refuse, &mut Silent).unwrap();
        let re = tempfile::tempdir().unwrap();
        let dst = re.path().join("model");
        let chosen = crnn::reselect(src.path(), &dst, monitor).unwrap();
        assert_eq!(chosen.best_epoch, trained.best_epoch, "{monitor}");
        assert_eq!(chosen.best_score, trained.best_score, "{monitor}");
        let strip = |h: &[EpochRecord]| {
            h.iter()
                .map(|r| (r.epoch, r.loss, r.acc, r.val_loss, r.val_acc, r.val_f1))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&chosen.history), strip(&trained.history), "{monitor}");
        assert!(
            weights(&dst) == weights(direct.path()),
            "{monitor}: other weights"
        );
        let a: crnn::ModelFile =
            serde_json::from_str(&std::fs::read_to_string(dst.join("config.json")).unwrap())
                .unwrap();
        let b: crnn::ModelFile = serde_json::from_str(
            &std::fs::read_to_string(direct.path().join("config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(a, b, "{monitor}: config.json");
        drop((lock(), TrainedModel::load(&dst, Device::Cpu).unwrap()));
        // A second reselect into the same directory is refused.
        assert!(matches!(
            crnn::reselect(src.path(), &dst, monitor),
            Err(Error::AlreadyTrained { .. })
        ));
    }
}

#[test]
fn reselecting_is_refused_where_it_cannot_know() {
    use crnn::Monitor;
    // A run that stopped early: a monitor that would have trained on cannot be replayed.
    let src = tempfile::tempdir().unwrap();
    let out = fit_keeping(
        src.path(),
        TrainConfig {
            monitor: Monitor::ValAccuracy,
            patience: 1,
            ..train_cfg(10)
        },
    );
    assert!(out.stopped_early, "{:?}", out.history);
    // What the trainer reported is what the model directory says afterwards.
    let recorded = crnn::recorded_outcome(src.path()).unwrap();
    assert_eq!(
        (
            recorded.stopped_early,
            recorded.best_epoch,
            recorded.monitor
        ),
        (true, out.best_epoch, out.monitor)
    );
    assert_eq!(recorded.history.len(), out.history.len());
    let dst = tempfile::tempdir().unwrap();
    let e = crnn::reselect(src.path(), &dst.path().join("m"), Monitor::Last).unwrap_err();
    assert!(e.to_string().contains("stopped early"), "{e}");
    // Without the kept epochs there is nothing to take.
    let plain = tempfile::tempdir().unwrap();
    fit(plain.path(), train_cfg(3), ExistingRun::Refuse, &mut Silent).unwrap();
    let e = crnn::reselect(plain.path(), &dst.path().join("n"), Monitor::Last).unwrap_err();
    assert!(e.to_string().contains("keep_epoch_weights"), "{e}");
    // replay_monitor agrees with the trainer on where patience stops.
    let h = crnn::read_history(src.path()).unwrap();
    let replay = crnn::replay_monitor(Monitor::ValAccuracy, &h, 1, 10).unwrap();
    assert_eq!((replay.0, replay.1), (out.best_epoch, out.history.len()));
}
