#![doc = include_str!("../README.md")]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What went wrong in [`write_atomic`].
#[derive(Debug)]
pub enum Error<E> {
    /// The writer callback failed (the target is untouched).
    Write(E),
    /// A step around it failed: creating the folder, flushing, renaming.
    Io {
        /// The path the step was on.
        path: PathBuf,
        /// The step: `creating the folder`, `flushing`, `renaming into place`, `flushing
        /// the folder`.
        step: &'static str,
        /// The system's error.
        source: std::io::Error,
    },
}

impl<E: std::fmt::Display> std::fmt::Display for Error<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Write(e) => e.fmt(f),
            Error::Io { path, step, source } => {
                write!(f, "{}: {step}: {source}", path.display())
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Write(e) => Some(e),
            Error::Io { source, .. } => Some(source),
        }
    }
}

impl<E> Error<E> {
    /// Maps the writer's error, keeping [`Error::Io`] as it is.
    pub fn map_write<F>(self, f: impl FnOnce(E) -> F) -> Error<F> {
        match self {
            Error::Write(e) => Error::Write(f(e)),
            Error::Io { path, step, source } => Error::Io { path, step, source },
        }
    }
}

/// Calls of this process so far: part of every temporary name.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temporary path for `path`: same folder, hidden, unique to this process and call, the
/// extension kept last.
pub fn temporary_path(path: &Path) -> PathBuf {
    let dir = folder_of(path);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("file");
    let pid = std::process::id();
    let name = match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!(".{stem}.tmp-{pid}-{n}.{ext}"),
        None => format!(".{stem}.tmp-{pid}-{n}"),
    };
    dir.join(name)
}

fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn io<'a, E>(path: &'a Path, step: &'static str) -> impl FnOnce(std::io::Error) -> Error<E> + 'a {
    move |source| Error::Io {
        path: path.to_path_buf(),
        step,
        source,
    }
}

/// Replaces `path` with what `write` writes to the temporary path it is given: temporary file
/// in the same folder, fsync, rename, fsync of the folder (see the crate docs). On any error
/// the temporary file is removed and `path` keeps its old content.
pub fn write_atomic<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), Error<E>> {
    let dir = folder_of(path);
    std::fs::create_dir_all(dir).map_err(io(dir, "creating the folder"))?;
    let tmp = temporary_path(path);
    let result = write(&tmp).map_err(Error::Write).and_then(|()| {
        let file = std::fs::File::open(&tmp).map_err(io(&tmp, "flushing"))?;
        file.sync_all().map_err(io(&tmp, "flushing"))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io(path, "renaming into place"))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    sync_folder(dir).map_err(io(dir, "flushing the folder"))
}

#[cfg(unix)]
fn sync_folder(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_folder(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("atomic-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn writes_creates_the_folder_and_leaves_no_temporary() {
        let d = scratch("writes");
        let p = d.join("sub").join("weights.safetensors");
        write_atomic(&p, |tmp| {
            assert_eq!(tmp.parent(), p.parent());
            assert_eq!(
                tmp.extension().and_then(|e| e.to_str()),
                Some("safetensors")
            );
            std::fs::write(tmp, b"abc")
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the target is left");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_writer_keeps_the_old_file_and_removes_its_temporary() {
        let d = scratch("fails");
        let p = d.join("report.json");
        write_atomic(&p, |tmp| std::fs::write(tmp, b"old")).unwrap();
        let err = write_atomic(&p, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err(std::io::Error::other("encoder"))
        })
        .unwrap_err();
        assert!(matches!(err, Error::Write(_)), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        // A writer that "succeeds" without writing anything is an I/O error, named.
        let err = write_atomic(&p, |_| Ok::<(), std::io::Error>(())).unwrap_err();
        assert!(err.to_string().contains("flushing"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn temporaries_are_unique_per_call() {
        let p = Path::new("x/a.png");
        let (a, b) = (temporary_path(p), temporary_path(p));
        assert_ne!(a, b);
        assert!(a.to_string_lossy().ends_with(".png"));
        assert_eq!(
            temporary_path(Path::new("plain")).parent(),
            Some(Path::new("."))
        );
    }

    #[test]
    fn threads_writing_one_file_never_mix_bytes() {
        let d = scratch("threads");
        let p = d.join("state.json");
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..50 {
                        write_atomic(p, |tmp| std::fs::write(tmp, vec![t; 4096])).unwrap();
                    }
                });
            }
        });
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|&b| b == bytes[0]));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
