//! The default corpus: real recorded music by 20 named artists from Debian 12 game-soundtrack
//! packages (`data/corpus_manifest.tsv`: artist, album, licence, package, member, sha256 of
//! every file). [`fetch`] downloads the packages with `apt-get download` (pinned versions),
//! extracts exactly the listed members byte for byte (`dpkg-deb`, `tar`, `unzip` for the two
//! `.pk3` zip containers), checks every sha256 and writes `<root>/<artist>/<album>/<file>`
//! atomically. A second run checks sizes and mtimes against a stamp file and does nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::io_err;
use crate::{Error, Result};

/// The manifest, compiled in.
pub const MANIFEST_TSV: &str = include_str!("../data/corpus_manifest.tsv");

/// Stamp file in the corpus root: verified files with their size, mtime and sha256.
pub const STAMP_FILE: &str = ".artist-crnn-verified.tsv";

/// Which part of the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// 5 artists, 60 tracks, 203 min, 5 packages (189 MB download): CI and quick runs.
    Small,
    /// 20 artists, 213 tracks, 685 min, 13 packages (1.16 GB download): the main data set.
    Default,
    /// 24 artists, 267 tracks (29 of them Ogg Opus, decoded by audio-io's libopus; a build of
    /// audio-io without its `opus` feature leaves them out, with a message, giving 22 artists
    /// and 238 tracks).
    Full,
}

impl Tier {
    /// `small`, `default` or `full`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Small => "small",
            Tier::Default => "default",
            Tier::Full => "full",
        }
    }

    /// Parses `small`, `default` or `full`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "small" => Ok(Tier::Small),
            "default" => Ok(Tier::Default),
            "full" => Ok(Tier::Full),
            other => Err(Error::Invalid {
                field: "tier",
                rule: format!("must be small, default or full, got {other:?}"),
            }),
        }
    }
}

/// One file of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Artist folder name.
    pub artist: String,
    /// Album folder name.
    pub album: String,
    /// `<artist>/<album>/<file>` inside the corpus root.
    pub path: String,
    /// Duration, seconds (ffprobe).
    pub duration_s: f64,
    /// Debian package.
    pub package: String,
    /// Its version (Debian 12 bookworm).
    pub package_version: String,
    /// Member path inside the package; `a.pk3!inner` for a file inside a zip container.
    pub member: String,
    /// Licence as Debian states it.
    pub licence: String,
    /// How the attribution was established.
    pub evidence: String,
    /// Codec (`vorbis` or `opus`).
    pub codec: String,
    /// Smallest tier that includes it.
    pub tier: Tier,
    /// sha256 of the file.
    pub sha256: String,
}

/// Parses the compiled-in manifest.
pub fn manifest() -> Result<Vec<ManifestEntry>> {
    parse_manifest(MANIFEST_TSV)
}

fn parse_manifest(text: &str) -> Result<Vec<ManifestEntry>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| Error::Layout {
                path: "corpus_manifest.tsv".into(),
                rule: format!("no column {name}"),
            })
    };
    let c = [
        col("artist")?,
        col("album")?,
        col("path")?,
        col("duration_s")?,
        col("source_package")?,
        col("package_version")?,
        col("member_in_package")?,
        col("licence")?,
        col("attribution_evidence")?,
        col("codec")?,
        col("tier")?,
        col("sha256")?,
    ];
    lines
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let f: Vec<&str> = l.split('\t').collect();
            let get = |k: usize| {
                f.get(c[k]).copied().ok_or_else(|| Error::Layout {
                    path: "corpus_manifest.tsv".into(),
                    rule: format!("line {} is short", i + 2),
                })
            };
            Ok(ManifestEntry {
                artist: get(0)?.into(),
                album: get(1)?.into(),
                path: get(2)?.into(),
                duration_s: get(3)?.parse().unwrap_or(0.0),
                package: get(4)?.into(),
                package_version: get(5)?.into(),
                member: get(6)?.into(),
                licence: get(7)?.into(),
                evidence: get(8)?.into(),
                codec: get(9)?.into(),
                tier: Tier::parse(get(10)?)?,
                sha256: get(11)?.into(),
            })
        })
        .collect()
}

/// Whether this build's audio-io decodes a manifest codec (`vorbis`, `opus`, ...): every one
/// but Opus is always built in; Opus needs audio-io's `opus` feature (on by default).
pub fn codec_decodable(codec: &str) -> bool {
    match codec {
        "opus" => audio_io::formats::enabled().any(|f| f.name == "Ogg Opus"),
        _ => true,
    }
}

/// Entries of a tier that the pipeline can decode, and those left out (Opus in a build
/// without audio-io's `opus` feature).
pub fn tier_entries(tier: Tier) -> Result<(Vec<ManifestEntry>, Vec<ManifestEntry>)> {
    Ok(manifest()?
        .into_iter()
        .filter(|e| e.tier <= tier)
        .partition(|e| codec_decodable(&e.codec)))
}

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
    /// Wall time.
    pub seconds: f64,
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
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

fn read_stamps(root: &Path) -> BTreeMap<String, (u64, u64, String)> {
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

fn write_stamps(root: &Path, stamps: &BTreeMap<String, (u64, u64, String)>) -> Result<()> {
    let text: String = stamps
        .iter()
        .map(|(p, (s, m, h))| format!("{p}\t{s}\t{m}\t{h}\n"))
        .collect();
    let tmp = root.join(format!("{STAMP_FILE}.tmp"));
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, root.join(STAMP_FILE)).map_err(io_err(root))
}

fn run(cmd: &mut Command, what: &str) -> Result<std::process::Output> {
    let out = cmd
        .output()
        .map_err(|e| Error::Fetch(format!("{what}: cannot run: {e}")))?;
    if !out.status.success() {
        return Err(Error::Fetch(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
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

/// [`fetch`] for any list of manifest entries.
pub fn fetch_entries(
    root: &Path,
    entries: &[ManifestEntry],
    deb_cache: &Path,
    mut on_step: impl FnMut(&str),
) -> Result<FetchReport> {
    let t0 = Instant::now();
    std::fs::create_dir_all(root).map_err(io_err(root))?;
    let mut stamps = read_stamps(root);
    let mut missing: Vec<&ManifestEntry> = Vec::new();
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
    let mut downloaded = Vec::new();
    let mut written = 0usize;
    if !missing.is_empty() {
        std::fs::create_dir_all(deb_cache).map_err(io_err(deb_cache))?;
        let packages: BTreeSet<(&str, &str)> = missing
            .iter()
            .map(|e| (e.package.as_str(), e.package_version.as_str()))
            .collect();
        let need: Vec<String> = packages
            .iter()
            .filter(|(p, v)| deb_in_cache(deb_cache, p, v).is_none())
            .map(|(p, v)| format!("{p}={v}"))
            .collect();
        if !need.is_empty() {
            on_step(&format!(
                "downloading {} package(s) with apt-get: {}",
                need.len(),
                need.join(" ")
            ));
            let mut cmd = Command::new("apt-get");
            cmd.arg("download").args(&need).current_dir(deb_cache);
            run(&mut cmd, "apt-get download").map_err(|e| {
                Error::Fetch(format!("{e}\n(needs Debian 12 bookworm 'main' in the apt sources and a fresh package list: run `apt-get update` as root; scripts/run.sh does)"))
            })?;
            downloaded = need;
        }
        let work = tempdir_in(root)?;
        for (package, version) in &packages {
            let deb = deb_in_cache(deb_cache, package, version).ok_or_else(|| {
                Error::Fetch(format!(
                    "{package}_{version}: no .deb in {} after download",
                    deb_cache.display()
                ))
            })?;
            on_step(&format!("extracting {package}"));
            let dest = work.join(package);
            std::fs::create_dir_all(&dest).map_err(io_err(&dest))?;
            let ours: Vec<&&ManifestEntry> =
                missing.iter().filter(|e| e.package == *package).collect();
            let members: BTreeSet<String> = ours
                .iter()
                .map(|e| format!("./{}", e.member.split('!').next().unwrap_or(&e.member)))
                .collect();
            let list = work.join(format!("{package}.members"));
            std::fs::write(
                &list,
                members.iter().map(|m| format!("{m}\n")).collect::<String>(),
            )
            .map_err(io_err(&list))?;
            let sh = format!(
                "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' -T '{}'",
                deb.display(),
                dest.display(),
                list.display()
            );
            run(
                Command::new("sh").arg("-c").arg(&sh).env("LC_ALL", "C"),
                &format!("extracting {}", deb.display()),
            )?;
            for e in ours {
                let out = root.join(&e.path);
                let part = PathBuf::from(format!("{}.part", out.display()));
                if let Some(parent) = out.parent() {
                    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                match e.member.split_once('!') {
                    Some((container, inner)) => {
                        let zip = dest.join(container);
                        let o = run(
                            Command::new("unzip").arg("-p").arg(&zip).arg(inner),
                            &format!("unzip {inner} from {}", zip.display()),
                        )?;
                        std::fs::write(&part, o.stdout).map_err(io_err(&part))?;
                    }
                    None => {
                        std::fs::copy(dest.join(&e.member), &part)
                            .map_err(io_err(&dest.join(&e.member)))?;
                    }
                }
                let sum = sha256_file(&part)?;
                if sum != e.sha256 {
                    let _ = std::fs::remove_file(&part);
                    return Err(Error::Fetch(format!(
                        "{}: sha256 {sum} differs from the manifest's {} (package {package} {version}, member {})",
                        e.path, e.sha256, e.member
                    )));
                }
                std::fs::rename(&part, &out).map_err(io_err(&out))?;
                if let Some((size, mtime)) = stamp_of(&out) {
                    stamps.insert(e.path.clone(), (size, mtime, sum));
                }
                written += 1;
            }
            let _ = std::fs::remove_dir_all(&dest);
        }
        let _ = std::fs::remove_dir_all(&work);
    }
    write_stamps(root, &stamps)?;
    let credits = root.join("CREDITS.md");
    std::fs::write(&credits, credits_markdown(entries)).map_err(io_err(&credits))?;
    Ok(FetchReport {
        tier: entries.iter().map(|e| e.tier).max().unwrap_or(Tier::Small),
        present: entries.len(),
        written,
        downloaded_packages: downloaded,
        left_out: Vec::new(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn tempdir_in(root: &Path) -> Result<PathBuf> {
    let dir = root.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    Ok(dir)
}

/// The attribution page for a set of entries: per artist, their works with licence, source
/// package and member, as the CC-BY / CC-BY-SA licences ask.
pub fn credits_markdown(entries: &[ManifestEntry]) -> String {
    let mut by_artist: BTreeMap<&str, Vec<&ManifestEntry>> = BTreeMap::new();
    for e in entries {
        by_artist.entry(&e.artist).or_default().push(e);
    }
    let mut out = String::from(
        "# Credits: the music of the default corpus\n\n\
         Every recording below is copied unchanged from a Debian 12 (bookworm) package; the\n\
         licence is as Debian's copyright file states it, the attribution as the evidence column says.\n\
         The corpus is built on demand and not redistributed by this project.\n\n",
    );
    for (artist, files) in by_artist {
        let albums: BTreeSet<&str> = files.iter().map(|e| e.album.as_str()).collect();
        out += &format!(
            "## {artist}\n\nAlbums: {}\n\n| file | licence | package | member | evidence |\n|---|---|---|---|---|\n",
            albums.into_iter().collect::<Vec<_>>().join(", ")
        );
        for e in files {
            let file = e.path.rsplit('/').next().unwrap_or(&e.path);
            out += &format!(
                "| {file} | {} | {} {} | `{}` | {} |\n",
                e.licence, e.package, e.package_version, e.member, e.evidence
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_tiers_and_counts() {
        let all = manifest().unwrap();
        assert_eq!(all.len(), 267);
        let (small, out) = tier_entries(Tier::Small).unwrap();
        assert_eq!((small.len(), out.len()), (60, 0));
        let artists: BTreeSet<&str> = small.iter().map(|e| e.artist.as_str()).collect();
        assert_eq!(artists.len(), 5);
        let (default, _) = tier_entries(Tier::Default).unwrap();
        assert_eq!(default.len(), 213);
        assert_eq!(
            default
                .iter()
                .map(|e| e.artist.as_str())
                .collect::<BTreeSet<_>>()
                .len(),
            20
        );
        let (full, left_out) = tier_entries(Tier::Full).unwrap();
        let opus = full.iter().filter(|e| e.codec == "opus").count();
        assert_eq!((full.len(), left_out.len(), opus), (267, 0, 29));
        assert_eq!(
            full.iter()
                .map(|e| e.artist.as_str())
                .collect::<BTreeSet<_>>()
                .len(),
            24
        );
        assert!(
            all.iter().all(|e| e.sha256.len() == 64
                && e.path.starts_with(&format!("{}/{}/", e.artist, e.album)))
        );
    }

    #[test]
    fn credits_name_every_artist_and_licence() {
        let (default, _) = tier_entries(Tier::Default).unwrap();
        let md = credits_markdown(&default);
        for e in &default {
            assert!(md.contains(&format!("## {}", e.artist)));
            assert!(md.contains(&e.licence));
        }
    }

    #[test]
    fn present_files_are_verified_without_network() {
        // A root that already holds a file with the right bytes: only the sha256 is checked.
        let dir = tempfile::tempdir().unwrap();
        let text = "artist\talbum\tpath\tduration_s\tsource_package\tpackage_version\tmember_in_package\tlicence\tattribution_evidence\tcodec\ttier\tsha256\n\
                    a\tb\ta/b/x.ogg\t1.0\tpkg\t1\tusr/x.ogg\tGPL\ttag\tvorbis\tsmall\t2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n";
        let entries = parse_manifest(text).unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x.ogg"), "hello").unwrap();
        // Package "pkg" does not exist: any download attempt would fail the call.
        let cache = dir.path().join("debs");
        let r = fetch_entries(dir.path(), &entries, &cache, |_| {}).unwrap();
        assert_eq!((r.present, r.written), (1, 0));
        assert!(r.downloaded_packages.is_empty());
        let stamps = std::fs::read_to_string(dir.path().join(STAMP_FILE)).unwrap();
        assert!(stamps.contains("a/b/x.ogg\t5\t"));
        assert!(
            std::fs::read_to_string(dir.path().join("CREDITS.md"))
                .unwrap()
                .contains("## a")
        );
        // A file whose bytes differ is not accepted: it is re-fetched (and here the fetch fails).
        std::fs::write(dir.path().join("a/b/x.ogg"), "HELLO").unwrap();
        assert!(fetch_entries(dir.path(), &entries, &cache, |_| {}).is_err());
    }
}
