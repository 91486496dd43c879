//! Helpers shared by the examples: the default-corpus tier and device choice, the conv
//! backend from the environment, model loading, atomic file writes.

use std::path::Path;

use anyhow::{Result, bail};

/// `--tier`: which part of the default corpus ([`corpus_fetch::Tier`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TierArg {
    /// 5 artists, 60 tracks, 203 min (189 MB download): CI and quick runs.
    Small,
    /// 20 artists, 213 tracks, 685 min (1.16 GB download): the main data set.
    Default,
    /// 24 artists, 267 tracks, 994 min (29 of them Ogg Opus).
    Full,
}

impl TierArg {
    /// The tier.
    pub fn tier(self) -> corpus_fetch::Tier {
        match self {
            TierArg::Small => corpus_fetch::Tier::Small,
            TierArg::Default => corpus_fetch::Tier::Default,
            TierArg::Full => corpus_fetch::Tier::Full,
        }
    }
}

/// `--device` values: `cpu`, `cuda` (or `cuda:N`), or none for CUDA when available.
pub fn choose_device(requested: Option<&str>) -> Result<tch::Device> {
    match requested {
        None => Ok(tch::Device::cuda_if_available()),
        Some("cpu") => Ok(tch::Device::Cpu),
        Some(s) if s == "cuda" || s.starts_with("cuda:") => {
            if !tch::Cuda::is_available() {
                bail!(
                    "--device {s} was requested but CUDA is not available (no GPU visible, or the \
                     CPU-only libtorch is installed: scripts/setup.sh installs the CUDA one when \
                     nvidia-smi sees a GPU)"
                );
            }
            let index = s
                .strip_prefix("cuda:")
                .map(str::parse::<usize>)
                .transpose()?
                .unwrap_or(0);
            if index as i64 >= tch::Cuda::device_count() {
                bail!(
                    "--device {s}: only {} CUDA device(s) visible",
                    tch::Cuda::device_count()
                );
            }
            Ok(tch::Device::Cuda(index))
        }
        Some(other) => bail!("--device must be cpu, cuda or cuda:N, got {other:?}"),
    }
}

/// Replaces `path` with what `write` writes to the temporary path it is given, through
/// [`atomic_file::write_atomic`] (temporary file in the same folder, fsync, rename, fsync of
/// the folder): a reader never sees a half-written file.
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    atomic_file::write_atomic(path, write).map_err(|e| match e {
        atomic_file::Error::Write(e) => e,
        atomic_file::Error::Io { path, step, source } => {
            anyhow::Error::new(source).context(format!("{}: {step}", path.display()))
        }
    })
}

/// The conv backend the examples use on `device` when no flag chooses one: the device's
/// default with the instruction set that `CRNN_KERNELS_ISA` names (`portable`, `avx2`,
/// `avx512`, `auto`). With [`crnn::ConvAlgorithm::from_env`] (`CRNN_CONV_ALGORITHM`), the
/// examples' one reading of those variables: the libraries read no environment. A bad value
/// is an error naming what the variable takes.
pub fn backend_from_env(device: tch::Device) -> Result<crnn::ConvBackend> {
    Ok(crnn::ConvBackend::choose(
        device,
        crnn::crnn_kernels::Isa::from_env()?,
    )?)
}

/// The backend `network` runs with when `wanted` is asked for: `wanted` for a CRNN2D (the
/// one network with fused CPU kernels), libtorch ops for the others.
pub fn network_backend(
    network: &dyn crnn::Network,
    wanted: crnn::ConvBackend,
) -> crnn::ConvBackend {
    if network.as_crnn2d().is_some() {
        wanted
    } else {
        crnn::ConvBackend::LibtorchOps
    }
}

/// Loads a model directory for inference with [`backend_from_env`]'s backend and
/// `CRNN_CONV_ALGORITHM`'s algorithm,
/// saying on stderr when the run behind it is unfinished (its weights are the best epoch so
/// far, not a result).
pub fn load_model(dir: &Path, device: tch::Device) -> Result<crnn::TrainedModel> {
    let mut model = crnn::TrainedModel::load(dir, device)?;
    let backend = network_backend(&*model.model, backend_from_env(device)?);
    model.model.set_backend(backend)?;
    model
        .model
        .set_conv_algorithm(crnn::ConvAlgorithm::from_env()?);
    if let Some(note) = model.unfinished_note() {
        eprintln!("warning: {}: {note}", dir.display());
    }
    Ok(model)
}
