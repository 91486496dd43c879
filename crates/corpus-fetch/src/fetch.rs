//! [`fetch`]: every file of a tier in place, byte for byte, under an advisory lock.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::deb::{extract_from_zip, extract_members};
use crate::error::io_err;
use crate::manifest::{ManifestEntry, Tier, credits_markdown, tier_entries};
use crate::{Error, Result};

/// Stamp file in the corpus root: verified files with their size, mtime and sha256.
pub const STAMP_FILE: &str = ".artist-crnn-verified.tsv";

/// The advisory lock file in the corpus root (and in the package cache): one process
/// fetches at a time, the others wait and then find the corpus ready.
pub const LOCK_FILE: &str = ".artist-crnn-fetch.lock";

/// What [`fetch`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchReport {
    /// Tier fetched.
    pub tier: Tier,
    /// Files in place and verified.
    pub present: usize,
    /// Of them, files written now.
    pub written: usize,
    /// Packages downloaded now.
    pub downloaded_packages: Vec<String>,
    /// Files left out (codec the decoder lacks), `path: reason`.
    pub left_out: Vec<String>,
    /// Seconds spent waiting for another process's fetch into the same folder.
    pub waited_seconds: f64,
    /// Wall time.
    pub seconds: f64,
}

/// An exclusive advisory lock (`flock`) on `dir/LOCK_FILE`, held until dropped. Waits for
/// another holder, telling `on_step` once.
struct FolderLock {
    _file: File,
    waited: f64,
}

impl FolderLock {
    fn take(dir: &Path, on_step: &mut dyn FnMut(&str)) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let t0 = Instant::now();
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                on_step(&format!(
                    "waiting for another process fetching into {}",
                    dir.display()
                ));
                file.lock().map_err(io_err(&path))?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
        }
        Ok(Self {
            _file: file,
            waited: t0.elapsed().as_secs_f64(),
        })
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn stamp_of(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    let t = m
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos() as u64;
    Some((m.len(), t))
}

/// A verified file's size, mtime (ns) and sha256.
type Stamp = (u64, u64, String);

type Stamps = BTreeMap<String, Stamp>;

fn read_stamps(root: &Path) -> Stamps {
    let text = std::fs::read_to_string(root.join(STAMP_FILE)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 4).then(|| {
                Some((
                    f[0].to_string(),
                    (f[1].parse().ok()?, f[2].parse().ok()?, f[3].to_string()),
                ))
            })?
        })
        .collect()
}

fn write_stamps(root: &Path, stamps: &Stamps) -> Result<()> {
    let text: String = stamps
        .iter()
        .map(|(p, (s, m, h))| format!("{p}\t{s}\t{m}\t{h}\n"))
        .collect();
    let path = root.join(STAMP_FILE);
    atomic_file::write_atomic(&path, |tmp| std::fs::write(tmp, &text).map_err(io_err(tmp)))?;
    Ok(())
}

/// The cached .deb of a package version (apt writes an epoch's `:` as `%3a`).
fn deb_in_cache(cache: &Path, package: &str, version: &str) -> Option<PathBuf> {
    let prefix = format!("{package}_{}_", version.replace(':', "%3a"));
    std::fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
}

/// Makes sure every file of `tier` is in `root`, byte for byte as the manifest says.
/// Packages are downloaded into `deb_cache` (kept, so a rebuild needs no network).
/// `on_step` hears what is happening (for a progress display).
pub fn fetch(
    root: &Path,
    tier: Tier,
    deb_cache: &Path,
    on_step: impl FnMut(&str),
) -> Result<FetchReport> {
    let (entries, left_out) = tier_entries(tier)?;
    let mut report = fetch_entries(root, &entries, deb_cache, on_step)?;
    report.tier = tier;
    report.left_out = left_out
        .iter()
        .map(|e| {
            format!(
                "{}: {} (audio-io was built without its `opus` feature)",
                e.path, e.codec
            )
        })
        .collect();
    Ok(report)
}

/// The entries not yet in `root` with their bytes; those that are get a stamp.
fn missing_entries<'e>(
    root: &Path,
    entries: &'e [ManifestEntry],
    stamps: &mut Stamps,
) -> Result<Vec<&'e ManifestEntry>> {
    let mut missing = Vec::new();
    for e in entries {
        let p = root.join(&e.path);
        let ok = match (stamp_of(&p), stamps.get(&e.path)) {
            (Some((size, mtime)), Some((s, m, h)))
                if (size, mtime) == (*s, *m) && *h == e.sha256 =>
            {
                true
            }
            (Some((size, mtime)), _) => {
                let ok = sha256_file(&p)? == e.sha256;
                if ok {
                    stamps.insert(e.path.clone(), (size, mtime, e.sha256.clone()));
                }
                ok
            }
            (None, _) => false,
        };
        if !ok {
            missing.push(e);
        }
    }
    Ok(missing)
}

/// [`fetch`] for any list of manifest entries. Under an advisory lock on `root` (a second
/// process waits, then finds the files in place) and, while downloading, on `deb_cache`.
/// Every file is written through a temporary name unique to the process and renamed after
/// its sha256 is checked; the stamp file and `CREDITS.md` likewise.
pub fn fetch_entries(
    root: &Path,
    entries: &[ManifestEntry],
    deb_cache: &Path,
    mut on_step: impl FnMut(&str),
) -> Result<FetchReport> {
    let t0 = Instant::now();
    let lock = FolderLock::take(root, &mut on_step)?;
    let mut stamps = read_stamps(root);
    let missing = missing_entries(root, entries, &mut stamps)?;
    let mut downloaded = Vec::new();
    let mut written = 0usize;
    if !missing.is_empty() {
        let packages: BTreeSet<(&str, &str)> = missing
            .iter()
            .map(|e| (e.package.as_str(), e.package_version.as_str()))
            .collect();
        downloaded = download(deb_cache, &packages, &mut on_step)?;
        let work = WorkDir::new(root)?;
        for &(package, version) in &packages {
            let ours: Vec<&ManifestEntry> = missing
                .iter()
                .copied()
                .filter(|e| e.package == package)
                .collect();
            on_step(&format!("extracting {package}"));
            let fresh = downloaded
                .iter()
                .any(|d| d.starts_with(&format!("{package}=")));
            let done = match install_package(root, deb_cache, package, version, &ours, &work.0) {
                Err(e @ Error::Package { .. }) if !fresh => {
                    // A cached .deb that is truncated or damaged (a killed download): fetch
                    // it again, once.
                    on_step(&format!("{e}: downloading {package} again"));
                    if let Some(deb) = deb_in_cache(deb_cache, package, version) {
                        std::fs::remove_file(&deb).map_err(io_err(&deb))?;
                    }
                    downloaded.extend(download(
                        deb_cache,
                        &[(package, version)].into(),
                        &mut on_step,
                    )?);
                    install_package(root, deb_cache, package, version, &ours, &work.0)?
                }
                other => other?,
            };
            for (path, stamp) in done {
                stamps.insert(path, stamp);
                written += 1;
            }
        }
    }
    write_stamps(root, &stamps)?;
    let credits = root.join("CREDITS.md");
    let md = credits_markdown(entries);
    atomic_file::write_atomic(&credits, |tmp| {
        std::fs::write(tmp, &md).map_err(io_err(tmp))
    })?;
    Ok(FetchReport {
        tier: entries.iter().map(|e| e.tier).max().unwrap_or(Tier::Small),
        present: entries.len(),
        written,
        downloaded_packages: downloaded,
        left_out: Vec::new(),
        waited_seconds: lock.waited,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// A scratch folder in the corpus root unique to this process, removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(root: &Path) -> Result<Self> {
        let dir = root.join(format!(".fetch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Self(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Downloads the packages not yet in `cache` with `apt-get download name=version` (each
/// path and name an argument of its own; no shell), under the cache's lock. Returns the
/// `name=version` downloaded.
fn download(
    cache: &Path,
    packages: &BTreeSet<(&str, &str)>,
    on_step: &mut dyn FnMut(&str),
) -> Result<Vec<String>> {
    let _lock = FolderLock::take(cache, on_step)?;
    let need: Vec<String> = packages
        .iter()
        .filter(|(p, v)| deb_in_cache(cache, p, v).is_none())
        .map(|(p, v)| format!("{p}={v}"))
        .collect();
    if need.is_empty() {
        return Ok(need);
    }
    on_step(&format!(
        "downloading {} package(s) with apt-get: {}",
        need.len(),
        need.join(" ")
    ));
    let fail = |message: String| Error::Download {
        packages: need.join(" "),
        message,
    };
    let out = Command::new("apt-get")
        .arg("download")
        .args(&need)
        .current_dir(cache)
        .output()
        .map_err(|e| {
            fail(format!(
                "cannot run apt-get: {e} (fetching the corpus needs Debian's apt)"
            ))
        })?;
    if !out.status.success() {
        return Err(fail(format!(
            "{} ({}); needs Debian 12 bookworm 'main' in the apt sources and a fresh package list: run `apt-get update` as root (scripts/run.sh does)",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        )));
    }
    Ok(need)
}

/// Extracts `ours` (entries of one package) from its cached `.deb` into `root`, each checked
/// against its sha256 and renamed into place; returns their stamps.
fn install_package(
    root: &Path,
    cache: &Path,
    package: &str,
    version: &str,
    ours: &[&ManifestEntry],
    work: &Path,
) -> Result<Vec<(String, Stamp)>> {
    let deb = deb_in_cache(cache, package, version).ok_or_else(|| Error::Package {
        path: cache.join(format!("{package}_{version}_*.deb")),
        rule: "not in the package cache after the download".into(),
    })?;
    let dest = work.join(package);
    std::fs::create_dir_all(&dest).map_err(io_err(&dest))?;
    let containers: BTreeSet<String> = ours
        .iter()
        .map(|e| e.member.split('!').next().unwrap_or(&e.member).to_string())
        .collect();
    let files = extract_members(&deb, &containers, &dest)?;
    let mut stamps = Vec::new();
    for e in ours {
        let (container, inner) = match e.member.split_once('!') {
            Some((c, i)) => (c, Some(i)),
            None => (e.member.as_str(), None),
        };
        let extracted = files.get(container).ok_or_else(|| Error::Package {
            path: deb.clone(),
            rule: format!("no member {container}"),
        })?;
        let out = root.join(&e.path);
        atomic_file::write_atomic(&out, |tmp| {
            match inner {
                Some(inner) => extract_from_zip(extracted, inner, tmp)?,
                None => {
                    std::fs::copy(extracted, tmp).map_err(io_err(tmp))?;
                }
            }
            let got = sha256_file(tmp)?;
            if got != e.sha256 {
                return Err(Error::Checksum {
                    path: e.path.clone(),
                    expected: e.sha256.clone(),
                    got,
                    package: format!("{package} {version}"),
                    member: e.member.clone(),
                });
            }
            Ok(())
        })?;
        if let Some((size, mtime)) = stamp_of(&out) {
            stamps.push((e.path.clone(), (size, mtime, e.sha256.clone())));
        }
    }
    let _ = std::fs::remove_dir_all(&dest);
    Ok(stamps)
}
