//! Augmentation through the trainer: seeded (the same seed gives the same run), resumable
//! bit for bit on the CPU, refused where the data cannot take it, and never applied to
//! validation. One libtorch thread; tiny shapes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Toy;

use crnn::{
    Architecture, Augment, Control, CrnnConfig, EpochRecord, ExistingRun, FitParams, Monitor,
    SliceSource, TrainConfig, TrainObserver, TrainedModel, Trainer,
};
use tch::Device;

static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    let guard = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    guard
}

fn config(arch: Architecture) -> CrnnConfig {
    let mut c = CrnnConfig::new(arch, 2, 16);
    if arch == Architecture::Crnn2d {
        c.conv_filters = [4, 8, 8, 8];
        c.gru_units = 8;
    }
    c
}

fn train_config(augment: &str) -> TrainConfig {
    TrainConfig {
        max_epochs: 3,
        patience: 100,
        seed: 5,
        batch_size: 8,
        monitor: Monitor::Last,
        augment: Augment::from_names(augment).unwrap(),
        ..TrainConfig::default()
    }
}

/// Stops the run after `after` epochs (as a Ctrl-C would).
struct StopAfter(usize);

impl TrainObserver for StopAfter {
    fn epoch(&mut self, record: &EpochRecord, _improved: bool) -> Control {
        if record.epoch >= self.0 {
            Control::Interrupt
        } else {
            Control::Continue
        }
    }
}

fn fit(
    dir: &std::path::Path,
    arch: Architecture,
    tc: &TrainConfig,
    existing: ExistingRun,
    observer: &mut dyn TrainObserver,
) -> crnn::Result<crnn::TrainOutcome> {
    let names = vec!["low".to_string(), "high".to_string()];
    let (train, val) = (Toy::new(24), Toy::new(8));
    let c = config(arch);
    let params = FitParams::new(&c, &names, &train, &val, dir).existing(existing);
    Trainer::new(tc.clone()).fit(params, observer)
}

fn weights(dir: &std::path::Path) -> Vec<u8> {
    std::fs::read(dir.join(crnn::WEIGHTS_FILE)).unwrap()
}

/// With every augmentation on: two runs with one seed end bit-identical, a run killed after
/// its first epoch and resumed ends bit-identical to them, and another seed differs. CRNN2D
/// (fused CPU step) and RNN (autograd).
#[test]
fn augmented_runs_repeat_and_resume_bit_for_bit() {
    let _g = lock();
    for arch in [Architecture::Crnn2d, Architecture::Rnn] {
        let tc = train_config("crop,specaugment,mixup,gain");
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let a = fit(
            dirs[0].path(),
            arch,
            &tc,
            ExistingRun::Refuse,
            &mut crnn::Silent,
        )
        .unwrap();
        let b = fit(
            dirs[1].path(),
            arch,
            &tc,
            ExistingRun::Refuse,
            &mut crnn::Silent,
        )
        .unwrap();
        assert_eq!(a.history.len(), 3);
        assert_eq!(weights(dirs[0].path()), weights(dirs[1].path()), "{arch}");
        assert_eq!(a.history.len(), b.history.len());
        let stopped = fit(
            dirs[2].path(),
            arch,
            &tc,
            ExistingRun::Refuse,
            &mut StopAfter(1),
        );
        assert!(stopped.unwrap().interrupted);
        // The augmentation is part of the run: resuming without it is refused.
        let plain = train_config("");
        let err = fit(
            dirs[2].path(),
            arch,
            &plain,
            ExistingRun::Resume,
            &mut crnn::Silent,
        )
        .unwrap_err();
        assert!(err.to_string().contains("training config"), "{arch}: {err}");
        let resumed = fit(
            dirs[2].path(),
            arch,
            &tc,
            ExistingRun::Resume,
            &mut crnn::Silent,
        )
        .unwrap();
        assert_eq!(
            weights(dirs[0].path()),
            weights(dirs[2].path()),
            "{arch} resumed"
        );
        let losses = |h: &[EpochRecord]| h.iter().map(|r| r.loss).collect::<Vec<_>>();
        assert_eq!(losses(&a.history), losses(&resumed.history));
        // Another seed, other draws.
        let other = TrainConfig {
            seed: 6,
            ..tc.clone()
        };
        fit(
            dirs[3].path(),
            arch,
            &other,
            ExistingRun::Refuse,
            &mut crnn::Silent,
        )
        .unwrap();
        assert_ne!(weights(dirs[0].path()), weights(dirs[3].path()), "{arch}");
        // The augmentation changes the run (it is not a no-op).
        let dir = tempfile::tempdir().unwrap();
        fit(
            dir.path(),
            arch,
            &train_config(""),
            ExistingRun::Refuse,
            &mut crnn::Silent,
        )
        .unwrap();
        assert_ne!(weights(dirs[0].path()), weights(dir.path()), "{arch}");
    }
}

/// Validation is never augmented: the recorded validation loss of the last epoch is the loss
/// of the saved weights on the plain validation slices, and it differs from what the same
/// weights give on augmented slices.
#[test]
fn validation_batches_are_untouched() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let tc = train_config("specaugment,gain,mixup,crop");
    let outcome = fit(
        dir.path(),
        Architecture::Rnn,
        &tc,
        ExistingRun::Refuse,
        &mut crnn::Silent,
    )
    .unwrap();
    let model = TrainedModel::load(dir.path(), Device::Cpu).unwrap();
    let val = Toy::new(8);
    let (loss, _) = crnn::evaluate(&model.model, &val, 256, Device::Cpu).unwrap();
    let recorded = outcome.history.last().unwrap().val_loss;
    assert!((loss - recorded).abs() < 1e-6, "{loss} vs {recorded}");
    // The same slices augmented give another loss (so the check above can fail).
    let mut data = vec![0f32; 8 * 128 * 16];
    for (i, out) in data.chunks_exact_mut(128 * 16).enumerate() {
        val.write_slice(i, out).unwrap();
    }
    let labels: Vec<i64> = (0..8).map(|i| (i % 2) as i64).collect();
    let aug = Augment::from_names("specaugment,gain").unwrap();
    aug.apply(&mut data, &labels, (128, 16), 2, 1).unwrap();
    let views: Vec<_> = data
        .chunks_exact(128 * 16)
        .map(|c| ndarray::ArrayView2::from_shape((128, 16), c).unwrap())
        .collect();
    let augmented = crnn::ViewSource::new(views, (0..8).map(|i| i % 2).collect()).unwrap();
    let (aug_loss, _) = crnn::evaluate(&model.model, &augmented, 256, Device::Cpu).unwrap();
    assert!((aug_loss - recorded).abs() > 1e-6, "{aug_loss}");
}

/// Crops need a source that knows its songs; a plain view source is refused before
/// anything is written.
#[test]
fn crops_are_refused_without_songs() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<ndarray::Array2<f32>> =
        (0..4).map(|_| ndarray::Array2::zeros((128, 16))).collect();
    let source =
        crnn::ViewSource::new(data.iter().map(|a| a.view()).collect(), vec![0, 1, 0, 1]).unwrap();
    let names = vec!["a".to_string(), "b".to_string()];
    let c = config(Architecture::Rnn);
    let params = FitParams::new(&c, &names, &source, &source, dir.path());
    let err = Trainer::new(train_config("crop"))
        .fit(params, &mut crnn::Silent)
        .unwrap_err();
    assert!(err.to_string().contains("crop needs"), "{err}");
    assert!(!dir.path().join(crnn::CONFIG_FILE).exists());
}
