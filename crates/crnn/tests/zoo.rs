//! The seed's five networks: parameter counts against Keras, CRNN1D and RNN (Conv1D, LSTM)
//! against a numpy transcription of Keras 2.1.1, gradients against finite differences in
//! float64, training steps that lower the loss, refused shapes, save/load and the backend
//! rules. Tiny shapes, one libtorch thread.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Toy;

use crnn::{
    Architecture, ConvBackend, CrnnConfig, FitParams, KerasAdam, ModelChoice, Network, NetworkSpec,
    Silent, TrainConfig, TrainedModel, Trainer, keras_summary, parameter_counts, predict_proba,
    train_step,
};
use tch::{Device, Kind, Tensor, nn};

/// libtorch's RNG and thread count are process-wide: tests that train take turns.
static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    let guard = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    guard
}

fn json(name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keras")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// `tests/keras/keras_param_counts.json` (Keras 3's `count_params()` of the paper's code,
/// GRU with `reset_after=False`): every model at 128 mels x {32, 94, 313, 911} frames, 20
/// classes. Where Keras refused the shape, so does the config.
#[test]
fn parameter_counts_equal_keras_for_every_model_and_length() {
    // Building draws from libtorch's global generator: not while another test reseeds it.
    let _g = lock();
    let reference = json("keras_param_counts.json");
    let mut checked = 0;
    for arch in Architecture::ALL {
        for frames in [32usize, 94, 313, 911] {
            let want = &reference["models"][arch.name()][frames.to_string()];
            let config = CrnnConfig::new(arch, 20, frames);
            if want.get("refused").is_some() {
                let err = config.validate().unwrap_err();
                assert!(
                    err.to_string().contains("too short"),
                    "{arch} {frames}: {err}"
                );
                continue;
            }
            let vs = nn::VarStore::new(Device::Cpu);
            let _net = config.build(&vs.root()).unwrap();
            let (trainable, all) = parameter_counts(&vs);
            let keras = (
                want["trainable"].as_u64().unwrap() as usize,
                want["total"].as_u64().unwrap() as usize,
            );
            assert_eq!((trainable, all), keras, "{arch} at {frames} frames");
            let rows = keras_summary(&config).unwrap();
            assert_eq!(
                rows.iter().map(|r| r.params).sum::<usize>(),
                keras.1,
                "{arch} table"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 19);
}

/// CRNN1D and RNN with `input_norm` (`crnn1d-bn`, `rnn-bn`) have Keras's count of the seed's
/// model plus one `BatchNormalization` over 128 mel bands: 4 x 128 parameters, of which the
/// 256 moving statistics are not trained (Keras's rule, which the 2-D models' `bn_in` already
/// meets in the test above).
#[test]
fn input_norm_adds_one_keras_batchnorm_over_the_mels() {
    let _g = lock();
    let reference = json("keras_param_counts.json");
    for m in ModelChoice::all().into_iter().filter(|m| m.input_norm) {
        for frames in [94usize, 313] {
            let want = &reference["models"][m.architecture.name()][frames.to_string()];
            let config = m.config(20, frames);
            let vs = nn::VarStore::new(Device::Cpu);
            let _net = config.build(&vs.root()).unwrap();
            let counts = parameter_counts(&vs);
            let keras = (
                want["trainable"].as_u64().unwrap() as usize + 2 * 128,
                want["total"].as_u64().unwrap() as usize + 4 * 128,
            );
            assert_eq!(counts, keras, "{m} at {frames} frames");
            let rows = keras_summary(&config).unwrap();
            assert_eq!(rows[0].kind, "BatchNormalization", "{m}");
            assert_eq!(rows.iter().map(|r| r.params).sum::<usize>(), keras.1);
        }
    }
    let err = CrnnConfig {
        input_norm: true,
        ..CrnnConfig::new(Architecture::Crnn2dVgg, 20, 94)
    }
    .validate()
    .unwrap_err();
    assert!(err.to_string().contains("input_norm"), "{err}");
}

/// Sets every variable of a CRNN1D or RNN built in float64 to the closed formula of
/// `tests/keras/keras_zoo_reference.py`, on Keras's layouts.
fn set_reference_weights(vs: &nn::VarStore, arch: Architecture) {
    let formula = |shape: &[i64], ident: f64, fan_in: f64| {
        let n: i64 = shape.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|j| (0.37 * j as f64 + ident).sin() / fan_in.sqrt())
            .collect();
        Tensor::from_slice(&v).view(shape)
    };
    let bias = |n: i64, ident: f64| {
        let v: Vec<f64> = (0..n)
            .map(|j| 0.1 * (0.37 * j as f64 + ident).sin())
            .collect();
        Tensor::from_slice(&v)
    };
    let vars = vs.variables();
    let set = |name: &str, value: Tensor| {
        let var = vars
            .get(name)
            .unwrap_or_else(|| panic!("no variable {name}"));
        assert_eq!(var.size(), value.size(), "{name}");
        tch::no_grad(|| var.shallow_clone().copy_(&value));
    };
    let mut ident = 0.0;
    if arch == Architecture::Crnn1d {
        for (i, &(cout, cin)) in [(64i64, 8i64), (128, 64), (128, 128)].iter().enumerate() {
            // Keras (width, input, filters) -> ours (filters, input, width).
            let w = formula(&[5, cin, cout], ident, (5 * cin) as f64).permute([2, 1, 0]);
            set(&format!("conv{}.kernel", i + 1), w);
            set(&format!("conv{}.bias", i + 1), bias(cout, ident + 1.0));
            ident += 2.0;
        }
    }
    let (layer, gates) = if arch == Architecture::Rnn {
        ("lstm", 4)
    } else {
        ("gru", 3)
    };
    let mut input = if arch == Architecture::Rnn { 8 } else { 128 };
    for k in 1..=2 {
        set(
            &format!("{layer}{k}.kernel"),
            formula(&[input, gates * 64], ident, input as f64),
        );
        set(
            &format!("{layer}{k}.recurrent_kernel"),
            formula(&[64, gates * 64], ident + 1.0, 64.0),
        );
        set(&format!("{layer}{k}.bias"), bias(gates * 64, ident + 2.0));
        ident += 3.0;
        input = 64;
    }
    set("dense.kernel", formula(&[64, 3], ident, 64.0));
    set("dense.bias", bias(3, ident + 1.0));
}

/// CRNN1D (Conv1D 5 `valid`, ReLU, MaxPool1D 2, Keras GRUs) and RNN (Keras 2.1.1 LSTMs:
/// hard-sigmoid gates, i f c o) against `tests/keras/keras_zoo_reference.json`, in float64.
#[test]
fn crnn1d_and_rnn_match_a_numpy_transcription_of_keras() {
    let _g = lock();
    let reference = json("keras_zoo_reference.json");
    for arch in [Architecture::Crnn1d, Architecture::Rnn] {
        let r = &reference[arch.name()];
        let shape: Vec<usize> = r["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let (b, m, t, c) = (shape[0], shape[1], shape[2], shape[3]);
        let config = CrnnConfig {
            n_mels: m,
            ..CrnnConfig::new(arch, c, t)
        };
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = config.build(&vs.root()).unwrap();
        vs.double();
        set_reference_weights(&vs, arch);
        let x: Vec<f64> = (0..b * m * t)
            .map(|k| {
                let (bb, mm, tt) = (k / (m * t), (k / t) % m, k % t);
                2.0 * (0.3 * (100 * bb + 10 * mm + tt) as f64).sin()
            })
            .collect();
        let xs = Tensor::from_slice(&x).view([b as i64, 1, m as i64, t as i64]);
        for (what, got) in [
            ("embedding", net.f_embed_t(&xs, false).unwrap()),
            ("probabilities", net.f_probabilities_t(&xs, false).unwrap()),
        ] {
            let got = Vec::<f64>::try_from(got.view([-1])).unwrap();
            let want: Vec<f64> = r[what]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(got.len(), want.len(), "{arch} {what}");
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-6, "{arch} {what}: max |difference| {worst:e}");
        }
    }
}

/// The smallest input each model takes (tiny shapes for the gradient and training tests).
fn tiny(m: ModelChoice, classes: usize) -> CrnnConfig {
    let frames = match m.architecture {
        Architecture::Crnn1d => 36,
        Architecture::Rnn => 4,
        _ => 16,
    };
    m.config(classes, frames)
}

fn batch(config: &CrnnConfig, n: i64, kind: Kind) -> (Tensor, Tensor) {
    tch::manual_seed(11);
    let xs = Tensor::randn(
        [n, 1, config.n_mels as i64, config.slice_frames as i64],
        (kind, Device::Cpu),
    );
    let ys = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(config.n_classes as i64);
    (xs, ys)
}

/// Loss in train mode with libtorch's generator reseeded, so that dropout draws the same
/// masks on every call.
fn seeded_loss(net: &dyn Network, xs: &Tensor, ys: &Tensor, classes: i64) -> Tensor {
    tch::manual_seed(5);
    let p = net.f_probabilities_t(xs, true).unwrap();
    crnn::keras_categorical_crossentropy(&p, ys, classes)
}

/// Autograd of every model against central differences in float64 (train mode: batch
/// statistics, the same dropout masks each call) for a few coordinates of the first, a
/// middle and the last layer.
#[test]
fn gradients_of_every_model_match_finite_differences() {
    let _g = lock();
    for arch in ModelChoice::all() {
        let config = tiny(arch, 3);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = config.build(&vs.root()).unwrap();
        vs.double();
        let (xs, ys) = batch(&config, 4, Kind::Double);
        let loss = seeded_loss(&*net, &xs, &ys, 3);
        loss.backward();
        let vars = vs.variables();
        let mut keys: Vec<&String> = vars.keys().filter(|k| vars[*k].requires_grad()).collect();
        keys.sort();
        let picked = [keys[0], keys[keys.len() / 2], keys[keys.len() - 1]];
        for name in picked {
            let var = &vars[name];
            let grad = var.grad();
            let n = var.numel() as i64;
            for k in [0, n / 3, n - 1] {
                // The element at flat (row-major) index k, whatever the strides.
                let mut idx = Vec::new();
                let mut rest = k;
                for &d in var.size().iter().rev() {
                    idx.push(rest % d);
                    rest /= d;
                }
                idx.reverse();
                let element = idx.iter().fold(var.shallow_clone(), |t, &i| t.get(i));
                let original = var.double_value(&idx);
                let eps = 1e-6;
                let at = |v: f64| {
                    tch::no_grad(|| {
                        let _ = element.shallow_clone().fill_(v);
                        seeded_loss(&*net, &xs, &ys, 3).double_value(&[])
                    })
                };
                let numeric = (at(original + eps) - at(original - eps)) / (2.0 * eps);
                at(original);
                let analytic = grad.double_value(&idx);
                let err = (numeric - analytic).abs();
                assert!(
                    err < 1e-6 + 1e-4 * analytic.abs(),
                    "{arch} {name}[{k}]: autograd {analytic:e}, finite differences {numeric:e}"
                );
            }
        }
    }
}

/// A few Adam steps on one batch lower its loss, for every model (libtorch ops; CRNN2D
/// through its fused CPU step where this CPU has it).
#[test]
fn a_few_training_steps_lower_the_loss_of_every_model() {
    let _g = lock();
    for arch in ModelChoice::all() {
        let config = tiny(arch, 3);
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = config.build(&vs.root()).unwrap();
        let (xs, ys) = batch(&config, 8, Kind::Float);
        let before = tch::no_grad(|| seeded_loss(&*net, &xs, &ys, 3).double_value(&[]));
        let mut adam = KerasAdam::new(&vs, &TrainConfig::default());
        for key in 0..12 {
            train_step(&*net, &mut adam, &xs, &ys, key).unwrap();
        }
        let after = tch::no_grad(|| seeded_loss(&*net, &xs, &ys, 3).double_value(&[]));
        assert!(after < before, "{arch}: loss {before} -> {after}");
    }
}

/// Every model trains through `Trainer::fit`, saves, loads (its `config.json` records the
/// architecture) and predicts the same probabilities after loading; the fused backend is
/// refused, before anything is written, for the models that do not have it.
#[test]
fn every_model_trains_saves_loads_and_predicts() {
    let _g = lock();
    let names = vec!["low".to_string(), "high".to_string()];
    for choice in ModelChoice::all() {
        let arch = choice.architecture;
        let config = choice.config(2, tiny(choice, 2).slice_frames.max(16));
        let frames = config.slice_frames;
        let (train, val) = (Toy::with_frames(16, frames), Toy::with_frames(8, frames));
        let dir = tempfile::tempdir().unwrap();
        let model_dir = dir.path().join("model");
        let cfg = TrainConfig {
            max_epochs: 1,
            batch_size: 8,
            ..TrainConfig::default()
        };
        if !arch.has_fused_kernels() {
            let fused = ConvBackend::FusedCpu(crnn::crnn_kernels::Isa::Portable);
            let params = FitParams::new(&config, &names, &train, &val, &model_dir).backend(fused);
            let err = Trainer::new(cfg.clone())
                .fit(params, &mut Silent)
                .unwrap_err();
            assert!(err.to_string().contains("CRNN2D only"), "{arch}: {err}");
            assert!(
                !model_dir.exists(),
                "{arch}: a refused run wrote {model_dir:?}"
            );
        }
        let params = FitParams::new(&config, &names, &train, &val, &model_dir);
        let outcome = Trainer::new(cfg).fit(params, &mut Silent).unwrap();
        assert_eq!(outcome.history.len(), 1);
        let saved: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(model_dir.join(crnn::CONFIG_FILE)).unwrap(),
        )
        .unwrap();
        let recorded = saved["model"].get("architecture").and_then(|a| a.as_str());
        let expected = (arch != Architecture::Crnn2d).then_some(arch.name());
        assert_eq!(recorded, expected, "{arch}");
        assert_eq!(
            saved["model"].get("input_norm").and_then(|b| b.as_bool()),
            choice.input_norm.then_some(true),
            "{choice}"
        );
        let loaded = TrainedModel::load(&model_dir, Device::Cpu).unwrap();
        let again = TrainedModel::load(&model_dir, Device::Cpu).unwrap();
        assert_eq!(loaded.model.input_shape(), (128, frames));
        let p1 = predict_proba(&loaded.model, &val, 4, Device::Cpu).unwrap();
        let p2 = predict_proba(&again.model, &val, 64, Device::Cpu).unwrap();
        assert_eq!(p1.dim(), (8, 2));
        let worst = (&p1 - &p2).iter().fold(0f32, |m, d| m.max(d.abs()));
        assert!(worst < 1e-6, "{arch}: {worst}");
        let emb = crnn::embed(&loaded.model, &val, 8, Device::Cpu).unwrap();
        assert_eq!(emb.ncols(), config.embedding_size(), "{arch}");
        // Validation was done in eval mode on unaugmented slices: the loaded weights give the
        // recorded validation loss.
        let (val_loss, _) = crnn::evaluate(&loaded.model, &val, 64, Device::Cpu).unwrap();
        let recorded = outcome.history[0].val_loss;
        assert!(
            (val_loss - recorded).abs() < 1e-5 * recorded.abs().max(1.0),
            "{arch}: {val_loss} vs {recorded}"
        );
    }
}

/// A model directory of CRNN2D written before there were other architectures (no
/// `architecture` field in `config.json`) still loads as CRNN2D, and a spec that does not
/// match a saved model is refused by `load_with`.
#[test]
fn old_model_folders_load_as_crnn2d() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let config = CrnnConfig::paper(2, 16);
    let names = vec!["a".to_string(), "b".to_string()];
    let (train, val) = (Toy::new(8), Toy::new(4));
    let params = FitParams::new(&config, &names, &train, &val, dir.path());
    let cfg = TrainConfig {
        max_epochs: 1,
        ..TrainConfig::default()
    };
    Trainer::new(cfg).fit(params, &mut Silent).unwrap();
    let text = std::fs::read_to_string(dir.path().join(crnn::CONFIG_FILE)).unwrap();
    assert!(!text.contains("architecture"), "{text}");
    let loaded = TrainedModel::load(dir.path(), Device::Cpu).unwrap();
    assert!(loaded.model.as_crnn2d().is_some());
    let other = CrnnConfig::new(Architecture::Rnn, 2, 16);
    let err = TrainedModel::load_with(dir.path(), Device::Cpu, &other).unwrap_err();
    assert!(err.to_string().contains("differs"), "{err}");
    TrainedModel::load_with(dir.path(), Device::Cpu, &config).unwrap();
    // What a resume compares: the saved model against the spec.
    assert!(config.matches_json(&loaded.file.model));
    assert!(!other.matches_json(&loaded.file.model));
}
