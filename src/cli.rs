//! Helpers shared by the examples: device choice and atomic file writes.

use std::path::Path;

use anyhow::{Context, Result, bail};

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

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// reader never sees a half-written file.
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = write(&tmp);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}
