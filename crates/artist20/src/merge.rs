//! Merging the shards of a sharded feature-store build ([`crate::Shard`]) into one index
//! file: the store's own attributes, and under `tracks/` an HDF5 external link per track to
//! its dataset in its shard file (relative, so the folder can move). [`FeatureStore::open`],
//! h5py and any HDF5 reader open the index as one store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::build::create_partial;
use crate::h5attr::{ensure_groups, h5, str_attr};
use crate::store::{FailedTrack, FeatureStore};
use crate::{Error, Result, Shard};

/// What [`merge_shards`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    /// How many shards were merged.
    pub shards: usize,
    /// Tracks linked into the index.
    pub tracks: usize,
    /// Tracks that failed in their shard (listed in the index's `failed_json`).
    pub failed: usize,
}

/// The shard files beside `store` (`NAME.shard-I-of-N.EXT`): their common N, or an error that
/// names the missing, unfinished or conflicting shards.
pub fn find_shards(store: &Path) -> Result<Vec<(Shard, PathBuf)>> {
    let dir = store
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let probe = Shard { index: 0, count: 1 }.path(store);
    let name = probe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (prefix, suffix) = name
        .split_once("shard-0-of-1")
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap_or_default();
    let mut counts: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(crate::error::io_err(dir))?;
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(mid) = file
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(&suffix))
            .and_then(|r| r.strip_prefix("shard-"))
        else {
            continue;
        };
        if let Some((i, n)) = mid.split_once("-of-")
            && let (Ok(i), Ok(n)) = (i.parse::<usize>(), n.parse::<usize>())
        {
            counts.entry(n).or_default().push(i);
        }
    }
    let refuse = |reason: String| Error::Store {
        path: store.to_path_buf(),
        reason,
    };
    let (count, mut present) = match counts.len() {
        0 => {
            return Err(refuse(format!(
                "no shards to merge beside it (expected {prefix}shard-I-of-N{suffix}; build them \
                 with prepare --shard I/N)"
            )));
        }
        1 => counts.into_iter().next().unwrap_or_default(),
        _ => {
            return Err(refuse(format!(
                "shards of different counts beside it (N = {:?}): remove the stale ones",
                counts.keys().collect::<Vec<_>>()
            )));
        }
    };
    present.sort_unstable();
    let missing: Vec<String> = (0..count)
        .filter(|i| present.binary_search(i).is_err())
        .map(|i| {
            let p = Shard { index: i, count }.path(store);
            let partial = PathBuf::from(format!("{}.partial", p.display()));
            if partial.exists() {
                format!(
                    "{} (only its .partial: still running, or killed; rerun it)",
                    p.display()
                )
            } else {
                p.display().to_string()
            }
        })
        .collect();
    if !missing.is_empty() {
        return Err(refuse(format!(
            "cannot merge {count} shards: missing {}",
            missing.join(", ")
        )));
    }
    Ok((0..count)
        .map(|i| {
            let s = Shard { index: i, count };
            (s, s.path(store))
        })
        .collect())
}

/// The first field where two JSON values differ, as `a.b.c: X vs Y`.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => first_difference(p, q, &path),
                    (p, q) => Some(format!("{path}: {p:?} vs {q:?}")),
                }
            })
        }
        _ if a == b => None,
        _ => Some(format!("{at}: {a} vs {b}")),
    }
}

/// Checks that every shard of `store` is present and made with one format version and feature
/// configuration, then writes `store` as an index of external links to the shards' tracks
/// (atomically: `store.partial`, then renamed). Refuses, naming the shard and the field, when
/// a shard is missing, unfinished, of another configuration, or holds a track another shard
/// holds.
pub fn merge_shards(store: &Path) -> Result<MergeReport> {
    let shards = find_shards(store)?;
    let mut opened = Vec::with_capacity(shards.len());
    for (shard, path) in &shards {
        let s = FeatureStore::open(path).map_err(|e| Error::Store {
            path: path.clone(),
            reason: format!("shard {} of {}: {e}", shard.index, shard.count),
        })?;
        opened.push((shard, path, s));
    }
    let (_, first_path, first) = &opened[0];
    let config = first.config().clone();
    let want = serde_json::to_value(&config).map_err(|e| Error::Store {
        path: first_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut owner: BTreeMap<&str, &Path> = BTreeMap::new();
    let mut failed: Vec<FailedTrack> = Vec::new();
    for (shard, path, s) in &opened {
        let got = serde_json::to_value(s.config()).map_err(|e| Error::Store {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if let Some(diff) = first_difference(&want, &got, "") {
            return Err(Error::Store {
                path: path.to_path_buf(),
                reason: format!(
                    "shard {} of {} was made with another feature configuration than {} \
                     ({diff}): rebuild it",
                    shard.index,
                    shard.count,
                    first_path.display()
                ),
            });
        }
        for rel in s.entries().keys() {
            if let Some(other) = owner.insert(rel.as_str(), path.as_path()) {
                return Err(Error::Store {
                    path: path.to_path_buf(),
                    reason: format!(
                        "{rel} is in this shard and in {}: the shards come from different runs",
                        other.display()
                    ),
                });
            }
        }
        failed.extend(s.failed().iter().cloned());
    }
    failed.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));

    let partial_path = PathBuf::from(format!("{}.partial", store.display()));
    let index = create_partial(&partial_path, &config)?;
    let file = &index.file;
    let mut tracks = 0usize;
    let mut shard_names = Vec::new();
    for (_, path, s) in &opened {
        let target = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        shard_names.push(target.clone());
        for e in s.entries().values() {
            let (parent, name) = e.h5_path.rsplit_once('/').unwrap_or(("tracks", &e.h5_path));
            ensure_groups(file, parent, &partial_path)?
                .link_external(&target, &format!("/{}", e.h5_path), name)
                .map_err(h5(&partial_path))?;
            tracks += 1;
        }
    }
    str_attr(
        file,
        "failed_json",
        &to_json(&failed, &partial_path)?,
        &partial_path,
    )?;
    str_attr(
        file,
        "shards_json",
        &to_json(&shard_names, &partial_path)?,
        &partial_path,
    )?;
    file.flush().map_err(h5(&partial_path))?;
    drop(index);
    std::fs::rename(&partial_path, store).map_err(crate::error::io_err(store))?;
    Ok(MergeReport {
        shards: opened.len(),
        tracks,
        failed: failed.len(),
    })
}

fn to_json<T: serde::Serialize>(value: &T, path: &Path) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Store {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_names_the_field() {
        let a = serde_json::json!({"mel": {"n_mels": 128, "hop": 512}, "rate": 16000});
        let b = serde_json::json!({"mel": {"n_mels": 96, "hop": 512}, "rate": 16000});
        assert_eq!(
            first_difference(&a, &b, "").as_deref(),
            Some("mel.n_mels: 128 vs 96")
        );
        assert_eq!(first_difference(&a, &a, ""), None);
    }
}
