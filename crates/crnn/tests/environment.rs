//! The library reads no environment: `CRNN_KERNELS_ISA` and `CRNN_CONV_ALGORITHM` reach a
//! model only through an application's explicit `from_env` calls. A test binary of its own,
//! with one test, because it sets process environment variables.

use crnn::crnn_kernels::{ISA_ENV, Isa};
use crnn::{CONV_ALGORITHM_ENV, ConvAlgorithm, ConvBackend, Crnn2d, CrnnConfig};
use tch::{Device, nn};

#[test]
fn bad_environment_values_fail_only_the_explicit_from_env_calls() {
    // SAFETY: the only test of this binary, run before any other thread reads the environment.
    unsafe {
        std::env::set_var(CONV_ALGORITHM_ENV, "fft");
        std::env::set_var(ISA_ENV, "sse9");
    }
    let algorithm = ConvAlgorithm::from_env().unwrap_err().to_string();
    assert!(algorithm.contains("fft"), "{algorithm}");
    let isa = Isa::from_env().unwrap_err().to_string();
    assert!(isa.contains("sse9"), "{isa}");
    // The library's own choices ignore both.
    let default = ConvBackend::default_for(Device::Cpu).unwrap();
    assert_eq!(default, ConvBackend::choose(Device::Cpu, None).unwrap());
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Crnn2d::new(&vs.root(), &CrnnConfig::paper(3, 32)).unwrap();
    assert_eq!(model.conv_algorithm(), ConvAlgorithm::Winograd);
    assert_eq!(model.backend(), default);
    // Training and loading a model directory work too (they failed on a bad value).
    let data: Vec<ndarray::Array2<f32>> = (0..6)
        .map(|i| ndarray::Array2::from_elem((128, 32), i as f32 - 40.0))
        .collect();
    let views: Vec<_> = data.iter().map(|a| a.view()).collect();
    let source = crnn::ViewSource::new(views, vec![0, 1, 2, 0, 1, 2]).unwrap();
    let names: Vec<String> = ["a", "b", "c"].map(String::from).into();
    let dir = tempfile::tempdir().unwrap();
    let config = CrnnConfig::paper(3, 32);
    let trainer = crnn::Trainer::new(crnn::TrainConfig {
        max_epochs: 1,
        ..Default::default()
    });
    let params = crnn::FitParams::new(&config, &names, &source, &source, dir.path());
    let outcome = trainer.fit(params, &mut crnn::Silent).unwrap();
    assert_eq!(outcome.history.len(), 1);
    let loaded = crnn::TrainedModel::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(
        loaded.model.as_crnn2d().unwrap().conv_algorithm(),
        ConvAlgorithm::Winograd
    );
}
