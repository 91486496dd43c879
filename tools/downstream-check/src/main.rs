//! Builds the paper's network, runs a batch through it on the default CPU backend and one
//! training step, and prints what it ran. Exits non-zero on any error.
use crnn::tch::{Device, Kind, Tensor, nn};
use crnn::{Crnn2d, CrnnConfig, KerasAdam, TrainConfig, train_step};

fn main() -> Result<(), crnn::Error> {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Crnn2d::new(&vs.root(), &CrnnConfig::paper(4, 32))?;
    let x = Tensor::randn([3, 1, 128, 32], (Kind::Float, Device::Cpu));
    let p = model.f_probabilities_t(&x, false)?;
    let sum = p.f_sum(Kind::Float)?.f_double_value(&[])?;
    let mut adam = KerasAdam::new(&vs, &TrainConfig::default());
    let labels = Tensor::from_slice(&[0i64, 1, 2]);
    let step = train_step(&model, &mut adam, &x, &labels, 1)?;
    println!(
        "downstream-check: backend {}, probabilities sum {sum:.4} over 3 slices, loss {:.4}",
        model.backend(),
        step.loss
    );
    if (sum - 3.0).abs() > 1e-3 || !step.loss.is_finite() {
        std::process::exit(1);
    }
    Ok(())
}
