//! Sharded feature extraction: which shard a track belongs to (a stable hash of its
//! corpus-relative path, the same on every machine), where shard I of N is written, and which
//! shard this process is, from the flag or the scheduler's environment (Slurm job arrays,
//! Kubernetes Indexed Jobs, torchrun/`RANK`). The shards are merged by [`crate::merge_shards`].

use std::path::{Path, PathBuf};

use crate::{Corpus, Error, Result};

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// How many shards there are (>= 1).
    pub count: usize,
}

/// 64-bit FNV-1a of `bytes` (offset basis 0xcbf29ce484222325, prime 0x100000001b3): a fixed,
/// documented algorithm, unlike `std`'s `DefaultHasher`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Shard {
    /// Checks `index < count` and `count >= 1`.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::Invalid {
                field: "shard",
                rule: format!("shard {index} of {count}: need 0 <= I < N and N >= 1"),
            });
        }
        Ok(Self { index, count })
    }

    /// Parses `I/N` (as `--shard 0/4`).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::Invalid {
            field: "--shard",
            rule: format!("{s:?} is not I/N (for example 0/4)"),
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        Self::new(
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        )
    }

    /// The shard of a track: FNV-1a 64 of its corpus-relative path (UTF-8, `/`-separated, as
    /// [`crate::Track::rel_path`]) modulo `count`.
    pub fn of(rel_path: &str, count: usize) -> usize {
        (fnv1a64(rel_path.as_bytes()) % count.max(1) as u64) as usize
    }

    /// Whether `rel_path` belongs to this shard.
    pub fn holds(&self, rel_path: &str) -> bool {
        Self::of(rel_path, self.count) == self.index
    }

    /// The corpus restricted to this shard's tracks (possibly none).
    pub fn select(&self, corpus: &Corpus) -> Corpus {
        let mut c = corpus.clone();
        c.tracks.retain(|t| self.holds(&t.rel_path));
        c
    }

    /// `features.h5` -> `features.shard-I-of-N.h5` (the suffix goes before the extension).
    pub fn path(&self, store: &Path) -> PathBuf {
        let stem = store
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match store.extension() {
            Some(ext) => format!(
                "{stem}.shard-{}-of-{}.{}",
                self.index,
                self.count,
                ext.to_string_lossy()
            ),
            None => format!("{stem}.shard-{}-of-{}", self.index, self.count),
        };
        store.with_file_name(name)
    }

    /// This process's shard from the scheduler's environment, and which variables said so:
    /// Slurm job arrays (`SLURM_ARRAY_TASK_ID` relative to `SLURM_ARRAY_TASK_MIN` in steps of
    /// `SLURM_ARRAY_TASK_STEP`, N = `SLURM_ARRAY_TASK_COUNT`), Kubernetes Indexed Jobs
    /// (`JOB_COMPLETION_INDEX`, N from `num_shards`, since Kubernetes sets no count), or
    /// `RANK`/`WORLD_SIZE` (torchrun). `Ok(None)` when none is set.
    pub fn from_env(num_shards: Option<usize>) -> Result<Option<(Self, &'static str)>> {
        Self::from_vars(|k| std::env::var(k).ok(), num_shards)
    }

    /// [`Shard::from_env`] over any variable lookup (tests pass a map).
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        num_shards: Option<usize>,
    ) -> Result<Option<(Self, &'static str)>> {
        let num = |name: &'static str| -> Result<Option<i64>> {
            var(name)
                .map(|v| {
                    v.trim().parse::<i64>().map_err(|_| Error::Invalid {
                        field: name,
                        rule: format!("{v:?} is not an integer"),
                    })
                })
                .transpose()
        };
        let usize_of = |name: &'static str, v: i64| -> Result<usize> {
            usize::try_from(v).map_err(|_| Error::Invalid {
                field: name,
                rule: format!("{v} is negative"),
            })
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let count = match (num("SLURM_ARRAY_TASK_COUNT")?, num_shards) {
                (Some(c), _) => usize_of("SLURM_ARRAY_TASK_COUNT", c)?,
                (None, Some(n)) => n,
                (None, None) => {
                    return Err(Error::Invalid {
                        field: "SLURM_ARRAY_TASK_COUNT",
                        rule: "not set; pass --num-shards".into(),
                    });
                }
            };
            let offset = id - min;
            if offset % step != 0 {
                return Err(Error::Invalid {
                    field: "SLURM_ARRAY_TASK_ID",
                    rule: format!("{id} is not MIN {min} + k * STEP {step}"),
                });
            }
            let index = usize_of("SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN", offset / step)?;
            return Ok(Some((
                Self::new(index, count)?,
                "Slurm job array (SLURM_ARRAY_TASK_ID, _MIN, _STEP, _COUNT)",
            )));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let count = num_shards.ok_or_else(|| Error::Invalid {
                field: "--num-shards",
                rule: "a Kubernetes Indexed Job sets JOB_COMPLETION_INDEX but no count: pass \
                       --num-shards (the Job's .spec.completions)"
                    .into(),
            })?;
            return Ok(Some((
                Self::new(usize_of("JOB_COMPLETION_INDEX", index)?, count)?,
                "Kubernetes Indexed Job (JOB_COMPLETION_INDEX, --num-shards)",
            )));
        }
        if let (Some(rank), Some(world)) = (num("RANK")?, num("WORLD_SIZE")?) {
            return Ok(Some((
                Self::new(usize_of("RANK", rank)?, usize_of("WORLD_SIZE", world)?)?,
                "RANK / WORLD_SIZE",
            )));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn fnv1a64_matches_the_published_vectors() {
        // From the FNV reference test suite (Noll): "", "a", "foobar".
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn parse_path_and_partition() {
        let s = Shard::parse("1/3").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.index, s.count), (1, 3));
        assert!(Shard::parse("3/3").is_err());
        assert!(Shard::parse("x/3").is_err());
        assert!(Shard::parse("0/0").is_err());
        assert_eq!(
            s.path(Path::new("data/features.h5")),
            PathBuf::from("data/features.shard-1-of-3.h5")
        );
        assert_eq!(
            s.path(Path::new("store")),
            PathBuf::from("store.shard-1-of-3")
        );
        // Every path in exactly one shard.
        for p in ["a/b/c.ogg", "x/y/z.mp3", "q/r/s.opus"] {
            let n = (0..3)
                .filter(|&i| Shard { index: i, count: 3 }.holds(p))
                .count();
            assert_eq!(n, 1);
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn scheduler_environments() {
        let slurm = vars(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        let (s, src) = Shard::from_vars(slurm, None)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!());
        assert_eq!((s.index, s.count), (3, 4));
        assert!(src.starts_with("Slurm"));
        let bad_step = vars(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert!(Shard::from_vars(bad_step, None).is_err());
        let k8s = vars(&[("JOB_COMPLETION_INDEX", "2")]);
        assert!(Shard::from_vars(&k8s, None).is_err(), "needs --num-shards");
        let (s, src) = Shard::from_vars(&k8s, Some(5))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!());
        assert_eq!(
            (s.index, s.count, src.starts_with("Kubernetes")),
            (2, 5, true)
        );
        let torch = vars(&[("RANK", "1"), ("WORLD_SIZE", "2")]);
        let (s, _) = Shard::from_vars(torch, None)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!());
        assert_eq!((s.index, s.count), (1, 2));
        assert!(matches!(Shard::from_vars(vars(&[]), None), Ok(None)));
        assert!(Shard::from_vars(vars(&[("RANK", "2"), ("WORLD_SIZE", "2")]), None).is_err());
    }
}
