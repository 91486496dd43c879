//! The Keras-exact pieces against references computed outside Rust or by hand, on the CPU
//! and, when there is one, on CUDA (`test_device!`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use crnn::{
    Crnn2d, CrnnConfig, KerasAdam, KerasBatchNorm, KerasGru, PAPER_SLICE_FRAMES, TrainConfig,
    parameter_counts,
};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor, nn};

/// Output of `tests/keras_gru_reference.py` (numpy float64), the full sequence (B=2, T=5, U=3).
const GRU_REFERENCE: [f64; 30] = [
    -0.01161950104190298,
    0.0887977624429762,
    0.4417560546246148,
    0.7015603469176371,
    -0.15344875529309948,
    -0.37454192057567004,
    0.3997229180997945,
    0.03400159857180569,
    0.11014758314064263,
    0.34020738961796354,
    0.12780104405119638,
    0.07650807232426937,
    0.4496415223954223,
    0.14463722270644375,
    -0.1273896557508277,
    0.9851342359677498,
    -0.7056656864404564,
    -0.6678676350391614,
    0.9851342359677498,
    -0.7056656864404564,
    -0.28501629807798945,
    0.9988912558257566,
    0.08066843243031199,
    -0.7082694663607465,
    0.9988912558257566,
    0.08066843243031199,
    -0.355285339185351,
    0.9966872775611187,
    -0.3924767004918481,
    -0.7335007224704607,
];

fn keras_gru(device: Device) {
    let (b, t, i, u) = (2usize, 5usize, 4usize, 3usize);
    let vs = nn::VarStore::new(device);
    let mut gru = KerasGru::new(vs.root() / "gru", i, u);
    let x: Vec<f64> = (0..b)
        .flat_map(|bb| {
            (0..t).flat_map(move |tt| {
                (0..i).map(move |ii| (0.3 * (bb * 100 + tt * 10 + ii) as f64).sin() * 2.0)
            })
        })
        .collect();
    let w: Vec<f64> = (0..i)
        .flat_map(|r| (0..3 * u).map(move |c| (0.7 * (r * 9 + c) as f64).cos() * 0.8))
        .collect();
    let uk: Vec<f64> = (0..u)
        .flat_map(|r| (0..3 * u).map(move |c| ((1.1 * (r * 9 + c) as f64) + 0.5).sin() * 0.9))
        .collect();
    let bias: Vec<f64> = (0..3 * u).map(|c| 0.05 * c as f64 - 0.2).collect();
    gru.kernel = Tensor::from_slice(&w)
        .view([i as i64, 3 * u as i64])
        .to_device(device);
    gru.recurrent_kernel = Tensor::from_slice(&uk)
        .view([u as i64, 3 * u as i64])
        .to_device(device);
    gru.bias = Tensor::from_slice(&bias).to_device(device);
    let xs = Tensor::from_slice(&x)
        .view([b as i64, t as i64, i as i64])
        .to_device(device);
    let seq = gru.forward(&xs, true).to_device(Device::Cpu);
    let got = Vec::<f64>::try_from(seq.view([-1])).unwrap();
    for (g, r) in got.iter().zip(GRU_REFERENCE) {
        assert!((g - r).abs() < 1e-14, "{g} vs {r}");
    }
    let last =
        Vec::<f64>::try_from(gru.forward(&xs, false).to_device(Device::Cpu).view([-1])).unwrap();
    assert_eq!(&last[..3], &got[12..15]);
    assert_eq!(&last[3..], &got[27..30]);
}
test_device!(
    keras_gru,
    keras_gru_matches_numpy_transcription_cpu,
    keras_gru_matches_numpy_transcription_cuda
);

fn batchnorm(device: Device) {
    let vs = nn::VarStore::new(device);
    let bn = KerasBatchNorm::new(vs.root() / "bn", 2, 0.99, 1e-3);
    // Channel 0: values 1..=8, channel 1: 10 * (1..=8) over (N=2, C=2, 4).
    let data: Vec<f32> = (0..2)
        .flat_map(|n| {
            (0..2).flat_map(move |c| {
                (0..4).map(move |k| ((n * 4 + k + 1) as f32) * if c == 0 { 1.0 } else { 10.0 })
            })
        })
        .collect();
    let x = Tensor::from_slice(&data).view([2, 2, 4]).to_device(device);
    let y = bn.forward_t(&x, true).to_device(Device::Cpu);
    // Train mode: batch statistics, biased variance: mean 4.5, var 5.25 (channel 0).
    let y0 = Vec::<f32>::try_from(y.select(1, 0).reshape([-1])).unwrap();
    let want0: Vec<f32> = (1..=8)
        .map(|v| (v as f32 - 4.5) / (5.25f32 + 1e-3).sqrt())
        .collect();
    for (a, b) in y0.iter().zip(&want0) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // Moving averages: 0.99 * init + 0.01 * batch (biased variance).
    let mm = Vec::<f32>::try_from(bn.moving_mean.to_device(Device::Cpu)).unwrap();
    let mv = Vec::<f32>::try_from(bn.moving_variance.to_device(Device::Cpu)).unwrap();
    assert!(
        (mm[0] - 0.045).abs() < 1e-6 && (mm[1] - 0.45).abs() < 1e-5,
        "{mm:?}"
    );
    assert!(
        (mv[0] - (0.99 + 0.0525)).abs() < 1e-5 && (mv[1] - (0.99 + 5.25)).abs() < 1e-4,
        "{mv:?}"
    );
    // Eval mode: moving statistics, and no update.
    let e = bn.forward_t(&x, false);
    let e0 = e.double_value(&[0, 0, 0]);
    assert!(
        (e0 - (1.0 - 0.045) / (0.99f64 + 0.0525 + 1e-3).sqrt()).abs() < 1e-5,
        "{e0}"
    );
    assert_eq!(
        Vec::<f32>::try_from(bn.moving_mean.to_device(Device::Cpu)).unwrap(),
        mm
    );
}
test_device!(
    batchnorm,
    batchnorm_train_eval_and_keras_momentum_cpu,
    batchnorm_train_eval_and_keras_momentum_cuda
);

fn adam_step(device: Device) {
    let vs = nn::VarStore::new(device);
    let p = vs.root().var("p", &[3], nn::Init::Const(0.0));
    tch::no_grad(|| {
        p.shallow_clone()
            .copy_(&Tensor::from_slice(&[1.0f32, -2.0, 0.5]).to_device(device))
    });
    let cfg = TrainConfig {
        learning_rate: 0.1,
        ..TrainConfig::default()
    };
    let mut adam = KerasAdam::new(&vs, &cfg);
    let c = Tensor::from_slice(&[3.0f32, -0.5, 1e-9]).to_device(device);
    // loss = sum(p * c): gradient c.
    adam.backward_step(&(&p * &c).sum(Kind::Float));
    let got = Vec::<f32>::try_from(p.to_device(Device::Cpu)).unwrap();
    // t = 1: lr_t = lr sqrt(1 - b2) / (1 - b1); m = 0.1 g; v = 0.001 g^2;
    // p -= lr_t * m / (sqrt(v) + 1e-8)   (epsilon on the uncorrected sqrt(v), as Keras 2.1.1).
    let lr_t = 0.1 * (1.0f64 - 0.999).sqrt() / (1.0 - 0.9);
    for (k, (&p0, g)) in [1.0f64, -2.0, 0.5]
        .iter()
        .zip([3.0f64, -0.5, 1e-9])
        .enumerate()
    {
        let (m, v) = (0.1 * g, 0.001 * g * g);
        let want = p0 - lr_t * m / (v.sqrt() + 1e-8);
        assert!(
            (f64::from(got[k]) - want).abs() < 1e-6,
            "param {k}: {} vs {want}",
            got[k]
        );
    }
    // The third gradient is tiny, so epsilon dominates: the step is ~0.0316 * 1e-9 / 4.2e-8.
    assert!((f64::from(got[2]) - 0.5).abs() < 1e-3);
    assert_eq!(adam.steps(), 1);
}
test_device!(
    adam_step,
    one_adam_step_by_hand_cpu,
    one_adam_step_by_hand_cuda
);

#[test]
fn paper_parameter_count() {
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = Crnn2d::new(&vs.root(), &CrnnConfig::paper(20, 94)).unwrap();
    assert_eq!(parameter_counts(&vs), (393_172, 394_324));
}

fn every_slice_length(device: Device) {
    for frames in PAPER_SLICE_FRAMES {
        let vs = nn::VarStore::new(device);
        let cfg = CrnnConfig::paper(20, frames);
        let m = Crnn2d::new(&vs.root(), &cfg).unwrap();
        let x = Tensor::randn([2, 1, 128, frames as i64], (Kind::Float, device)) * 10.0 - 40.0;
        m.check_input(&x).unwrap();
        assert_eq!(m.forward_t(&x, false).size(), vec![2, 20], "{frames}");
        assert_eq!(m.forward_t(&x, true).size(), vec![2, 20], "{frames}");
        assert_eq!(m.embed_t(&x, false).size(), vec![2, 32], "{frames}");
        let p = m
            .probabilities_t(&x, false)
            .sum_dim_intlist(-1, false, Kind::Float);
        assert!((p - 1.0).abs().max().double_value(&[]) < 1e-5);
    }
    let vs = nn::VarStore::new(device);
    let err = Crnn2d::new(&vs.root(), &CrnnConfig::paper(20, 12)).unwrap_err();
    assert!(err.to_string().contains("at least 16"), "{err}");
    let m = Crnn2d::new(&(vs.root() / "ok"), &CrnnConfig::paper(20, 32)).unwrap();
    assert!(
        m.check_input(&Tensor::zeros([1, 1, 128, 33], (Kind::Float, device)))
            .is_err()
    );
}
test_device!(
    every_slice_length,
    every_paper_slice_length_builds_and_runs_cpu,
    every_paper_slice_length_builds_and_runs_cuda
);

#[test]
fn the_fused_backend_refuses_what_it_cannot_run() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut m = Crnn2d::new(&vs.root(), &CrnnConfig::paper(4, 32)).unwrap();
    let isa = crnn::crnn_kernels::Isa::best();
    m.set_backend(crnn::ConvBackend::FusedCpu(isa)).unwrap();
    vs.double();
    let x = Tensor::zeros([2, 1, 128, 32], (Kind::Double, Device::Cpu));
    let err = m.f_forward_t(&x, false).unwrap_err();
    assert!(err.to_string().contains("LibtorchOps"), "{err}");
    m.set_backend(crnn::ConvBackend::LibtorchOps).unwrap();
    assert_eq!(m.f_forward_t(&x, false).unwrap().size(), vec![2, 4]);
    for unavailable in crnn::crnn_kernels::Isa::ALL
        .into_iter()
        .filter(|i| !i.is_available())
    {
        assert!(
            m.set_backend(crnn::ConvBackend::FusedCpu(unavailable))
                .is_err()
        );
        assert_eq!(m.backend(), crnn::ConvBackend::LibtorchOps);
    }
}

/// Wrong input from a caller is a `crnn::Error` (or tch's error from the `f_` forms), never a
/// panic inside the library: through `predict_proba` (wrong shape), the model's `f_` forward
/// on the libtorch-op path (wrong dtype reaching BatchNorm and the GRU), the layers' `f_`
/// forms and the loss.
#[test]
fn wrong_inputs_are_errors_not_panics() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = Crnn2d::new(&vs.root(), &CrnnConfig::paper(3, 32)).unwrap();
    // A source of 64-mel slices for a 128-mel model.
    let data: Vec<ndarray::Array2<f32>> =
        (0..3).map(|_| ndarray::Array2::zeros((64, 32))).collect();
    let source =
        crnn::ViewSource::new(data.iter().map(|a| a.view()).collect(), vec![0, 1, 2]).unwrap();
    let err = crnn::predict_proba(&model, &source, 8, Device::Cpu).unwrap_err();
    assert!(matches!(err, crnn::Error::Shape { .. }), "{err}");
    assert!(err.to_string().contains("[128, 32]"), "{err}");
    // Right shape, wrong dtype (f64 input, f32 variables), on both backends.
    let xs = Tensor::zeros([2, 1, 128, 32], (Kind::Double, Device::Cpu));
    for backend in [
        crnn::ConvBackend::LibtorchOps,
        crnn::ConvBackend::default_for(Device::Cpu).unwrap(),
    ] {
        model.set_backend(backend).unwrap();
        for train in [false, true] {
            let err = model.f_probabilities_t(&xs, train).unwrap_err();
            eprintln!("{backend}, train {train}: {err}");
        }
    }
    // The layers' own f_ forms.
    let bn = KerasBatchNorm::new(vs.root() / "extra_bn", 4, 0.99, 1e-3);
    assert!(
        bn.f_forward_t(&Tensor::zeros([2, 5, 3], (Kind::Float, Device::Cpu)), true)
            .is_err()
    );
    assert!(
        bn.f_update_moving(
            &Tensor::zeros([3], (Kind::Float, Device::Cpu)),
            &Tensor::ones([3], (Kind::Float, Device::Cpu))
        )
        .is_err()
    );
    let gru = KerasGru::new(vs.root() / "extra_gru", 4, 3);
    assert!(
        gru.f_forward(&Tensor::zeros([2, 4], (Kind::Float, Device::Cpu)), true)
            .is_err()
    );
    assert!(
        gru.f_forward(&Tensor::zeros([2, 5, 6], (Kind::Float, Device::Cpu)), false)
            .is_err()
    );
    // The loss with labels outside the classes.
    let probs = Tensor::full([2, 3], 1.0 / 3.0, (Kind::Float, Device::Cpu));
    let labels = Tensor::from_slice(&[0i64, 7]);
    assert!(crnn::f_keras_categorical_crossentropy(&probs, &labels, 3).is_err());
    // Adam with a gradient of the wrong shape for its variable.
    let mut adam = KerasAdam::new(&vs, &TrainConfig::default());
    let var = vs.trainable_variables()[0].shallow_clone();
    let bad = Tensor::zeros([1, 2, 3, 4, 5], (Kind::Float, Device::Cpu));
    assert!(adam.f_apply(&[(var, bad)]).is_err());
}
