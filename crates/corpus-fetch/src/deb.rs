//! Members of a Debian package, read in Rust: a `.deb` is an `ar` archive whose `data.tar`
//! (xz- or gzip-compressed, or plain) holds the files; a member `a.pk3!inner` is a file inside
//! a zip container that is itself a member.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::io_err;
use crate::{Error, Result};

fn package_err(path: &Path, rule: impl Into<String>) -> Error {
    Error::Package {
        path: path.to_path_buf(),
        rule: rule.into(),
    }
}

/// `usr/share/x.ogg` as a tar path: without a leading `./` or `/`.
fn normalized(path: &str) -> &str {
    path.trim_start_matches("./").trim_start_matches('/')
}

/// Extracts the members `wanted` (package paths, `usr/share/...`, with or without a leading
/// `./`) of the `.deb` at `deb` into new files in `dest`, one per member, named by their
/// order; returns each member's file. Streams the data archive once; the files are written
/// as the tar is read. A member that is not in the package, or a package that is not a
/// `.deb`, is an error naming the package.
pub fn extract_members(
    deb: &Path,
    wanted: &BTreeSet<String>,
    dest: &Path,
) -> Result<BTreeMap<String, PathBuf>> {
    let file = File::open(deb).map_err(io_err(deb))?;
    let mut archive = ar::Archive::new(BufReader::new(file));
    let mut seen = Vec::new();
    while let Some(entry) = archive.next_entry() {
        let entry = entry
            .map_err(|e| package_err(deb, format!("not a readable .deb (ar archive): {e}")))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let data: Box<dyn Read + '_> = match name.as_str() {
            "data.tar.xz" => Box::new(lzma_rust2::XzReader::new(entry, true)),
            "data.tar.gz" => Box::new(flate2::read::GzDecoder::new(entry)),
            "data.tar" => Box::new(entry),
            other if other.starts_with("data.tar") => {
                return Err(package_err(
                    deb,
                    format!("{other}: a compression this reader does not take (xz, gzip or none)"),
                ));
            }
            other => {
                seen.push(other.to_string());
                continue;
            }
        };
        return extract_from_tar(deb, data, wanted, dest);
    }
    Err(package_err(
        deb,
        format!("no data.tar member (members: {})", seen.join(", ")),
    ))
}

fn extract_from_tar(
    deb: &Path,
    data: impl Read,
    wanted: &BTreeSet<String>,
    dest: &Path,
) -> Result<BTreeMap<String, PathBuf>> {
    let want: BTreeMap<&str, &String> = wanted.iter().map(|w| (normalized(w), w)).collect();
    let mut out = BTreeMap::new();
    let mut tar = tar::Archive::new(data);
    let entries = tar
        .entries()
        .map_err(|e| package_err(deb, format!("data.tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| package_err(deb, format!("data.tar: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| package_err(deb, format!("data.tar: {e}")))?
            .to_string_lossy()
            .into_owned();
        let Some(&original) = want.get(normalized(&path)) else {
            continue;
        };
        let target = dest.join(format!("member-{}", out.len()));
        let mut file = File::create(&target).map_err(io_err(&target))?;
        std::io::copy(&mut entry, &mut file)
            .map_err(|e| package_err(deb, format!("{path}: truncated or corrupt: {e}")))?;
        out.insert(original.clone(), target);
        if out.len() == want.len() {
            break;
        }
    }
    if let Some(missing) = wanted.iter().find(|w| !out.contains_key(*w)) {
        return Err(package_err(deb, format!("no member {missing}")));
    }
    Ok(out)
}

/// Copies the file `inner` of the zip container at `container` (a `.pk3` member of a
/// package) to `out`.
pub fn extract_from_zip(container: &Path, inner: &str, out: &Path) -> Result<()> {
    let file = File::open(container).map_err(io_err(container))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| package_err(container, format!("not a readable zip container: {e}")))?;
    let mut entry = zip
        .by_name(inner)
        .map_err(|e| package_err(container, format!("{inner}: {e}")))?;
    let mut target = File::create(out).map_err(io_err(out))?;
    std::io::copy(&mut entry, &mut target)
        .map_err(|e| package_err(container, format!("{inner}: truncated or corrupt: {e}")))?;
    Ok(())
}
