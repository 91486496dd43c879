//! The manifest of the default corpus: every file's artist, album, licence, source package,
//! member and sha256, compiled in; its tiers; the attribution page.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The manifest, compiled in.
pub const MANIFEST_TSV: &str = include_str!("../data/corpus_manifest.tsv");

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
            other => Err(Error::Manifest {
                rule: format!("a tier is small, default or full, not {other:?}"),
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

/// Parses a manifest in the layout of `data/corpus_manifest.tsv` (a header line naming the
/// columns, then one tab-separated line per file): for a corpus of your own, or a test.
pub fn parse_manifest(text: &str) -> Result<Vec<ManifestEntry>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| Error::Manifest {
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
                f.get(c[k]).copied().ok_or_else(|| Error::Manifest {
                    rule: format!("line {} is short", i + 2),
                })
            };
            Ok(ManifestEntry {
                artist: get(0)?.into(),
                album: get(1)?.into(),
                path: get(2)?.into(),
                duration_s: get(3)?.parse().map_err(|_| Error::Manifest {
                    rule: format!("line {}: duration_s is not a number", i + 2),
                })?,
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
        assert!(Tier::parse("huge").is_err());
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
}
