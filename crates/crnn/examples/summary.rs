//! A Keras-style table of any built-in network for an input shape:
//! `cargo run --release -p crnn --example summary -- --model NAME --frames F --classes C [--mels M]`
//!
//! The rows are what Keras's `model.summary()` shows for the paper's code (`src/models.py`);
//! the closing `Total params` and `Trainable params` are counted from the variables of the
//! network built here, and the example fails if they differ from the rows' sum.
use clap::Parser;
use crnn::{CrnnConfig, ModelChoice, NetworkSpec, format_keras_summary, keras_summary};

/// Prints the Keras-style layer table of a network of the paper's code.
#[derive(Parser, Debug)]
#[command(name = "summary")]
struct Args {
    /// crnn2d, crnn2d-larger, crnn2d-vgg, crnn1d, rnn, crnn1d-bn or rnn-bn (-bn: a BatchNorm
    /// over the mel bands first).
    #[arg(long, default_value = "crnn2d")]
    model: String,
    /// Frames per slice (94 = 3 s).
    #[arg(long, default_value_t = 94)]
    frames: usize,
    /// Output classes.
    #[arg(long, default_value_t = 20)]
    classes: usize,
    /// Mel bands.
    #[arg(long, default_value_t = 128)]
    mels: usize,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("summary: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = CrnnConfig {
        n_mels: args.mels,
        ..ModelChoice::from_name(&args.model)?.config(args.classes, args.frames)
    };
    let rows = keras_summary(&config)?;
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _network = config.build(&vs.root())?;
    let (trainable, all) = crnn::parameter_counts(&vs);
    let total: usize = rows.iter().map(|r| r.params).sum();
    let frozen: usize = rows.iter().map(|r| r.non_trainable).sum();
    if (all, trainable) != (total, total - frozen) {
        return Err(format!(
            "the built network has {all} parameters ({trainable} trained), the table {total} ({} trained)",
            total - frozen
        )
        .into());
    }
    print!("{}", format_keras_summary(&config, &rows));
    Ok(())
}
