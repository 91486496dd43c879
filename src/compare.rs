//! The `compare` command: two experiment outputs (or two single runs) on identical test songs,
//! the paired bootstrap of their F1 differences, the exact McNemar test on song correctness,
//! a per-artist table (Markdown) and a PNG of the per-artist differences.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use eval::{BootstrapParams, PairedReport, paired_bootstrap};

use crate::evidence::{Pooled, predictions};
use crate::run_report::{RunReport, SongRecord, find_files, monitor_of};

/// The test songs of one side of a comparison.
#[derive(Debug, Clone)]
pub struct TestSet {
    /// The file they were read from.
    pub source: PathBuf,
    /// What it is: split, frames, seed, folds, monitor.
    pub description: String,
    /// Classes in label order.
    pub classes: Vec<String>,
    /// The songs, sorted by (fold, song).
    pub songs: Vec<SongRecord>,
}

impl TestSet {
    /// Reads a `pooled.json` or `report.json`, or finds the one such file in a folder: its own
    /// `pooled.json` or `report.json`, else the only `pooled.json` under it, else the only
    /// single-run `report.json` under it (several are refused, listed).
    pub fn open(path: &Path) -> Result<Self> {
        let file = if path.is_file() {
            path.to_path_buf()
        } else if path.is_dir() {
            Self::find(path)?
        } else {
            bail!("{}: no such file or folder", path.display());
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))?;
        let mut set = if value.get("per_fold").is_some() {
            let p: Pooled = serde_json::from_value(value)
                .with_context(|| format!("{}: not a pooled.json", file.display()))?;
            TestSet {
                description: format!(
                    "{} split, {} folds pooled, {} frames, seed {}, monitor {}",
                    p.split,
                    p.folds,
                    p.slice_frames,
                    p.seed,
                    monitor_of(&p.training)
                ),
                source: file.clone(),
                classes: p.classes,
                songs: p.songs,
            }
        } else {
            let r: RunReport = serde_json::from_value(value)
                .with_context(|| format!("{}: not a report.json", file.display()))?;
            if r.songs.is_empty() {
                bail!(
                    "{}: no per-song records (written before intervals existed); delete it and re-run the experiment to evaluate the saved model again",
                    file.display()
                );
            }
            let fold = r.fold.map_or(String::new(), |f| format!(", fold {f}"));
            TestSet {
                description: format!(
                    "{} split{fold}, {} frames, seed {}, monitor {}",
                    r.split,
                    r.slice_frames,
                    r.seed,
                    monitor_of(&r.training)
                ),
                source: file.clone(),
                classes: r.classes,
                songs: r.songs,
            }
        };
        set.songs
            .sort_by(|a, b| (a.fold, &a.song).cmp(&(b.fold, &b.song)));
        Ok(set)
    }

    fn find(dir: &Path) -> Result<PathBuf> {
        for own in ["pooled.json", "report.json"] {
            if dir.join(own).is_file() {
                return Ok(dir.join(own));
            }
        }
        let pooled = find_files(dir, "pooled.json");
        let list = |v: &[PathBuf]| {
            v.iter()
                .map(|p| format!("  {}", p.display()))
                .collect::<Vec<_>>()
                .join("\n")
        };
        match pooled.len() {
            1 => return Ok(pooled[0].clone()),
            0 => {}
            _ => bail!(
                "{} holds {} k-fold runs; name one:\n{}",
                dir.display(),
                pooled.len(),
                list(&pooled)
            ),
        }
        let singles: Vec<PathBuf> = find_files(dir, "report.json")
            .into_iter()
            .filter(|p| {
                !p.parent()
                    .and_then(|d| d.file_name())
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("fold-"))
            })
            .collect();
        match singles.len() {
            1 => Ok(singles[0].clone()),
            0 => bail!("{}: no pooled.json or report.json under it", dir.display()),
            _ => bail!(
                "{} holds {} runs; name one:\n{}",
                dir.display(),
                singles.len(),
                list(&singles)
            ),
        }
    }
}

/// `None` if `a` and `b` test the same songs (same classes; same songs, folds, artists and
/// slice counts), else the first difference in words.
pub fn first_difference(a: &TestSet, b: &TestSet) -> Option<String> {
    if a.classes != b.classes {
        let only: Vec<&String> = a
            .classes
            .iter()
            .filter(|c| !b.classes.contains(c))
            .chain(b.classes.iter().filter(|c| !a.classes.contains(c)))
            .collect();
        return Some(if only.is_empty() {
            "the classes are in a different order".into()
        } else {
            format!("the classes differ: {only:?} is in one only")
        });
    }
    let key = |s: &SongRecord| (s.fold, s.song.clone());
    let bs: BTreeMap<_, &SongRecord> = b.songs.iter().map(|s| (key(s), s)).collect();
    let a_keys: std::collections::BTreeSet<_> = a.songs.iter().map(key).collect();
    let fold = |f: Option<usize>| f.map_or(String::new(), |f| format!(" (fold {f})"));
    for s in &a.songs {
        match bs.get(&key(s)) {
            None => {
                return Some(format!(
                    "song {}{} is tested in A but not in B",
                    s.song,
                    fold(s.fold)
                ));
            }
            Some(t) if t.artist != s.artist => {
                return Some(format!(
                    "song {}{}: artist {} in A, {} in B",
                    s.song,
                    fold(s.fold),
                    s.artist,
                    t.artist
                ));
            }
            Some(t) if t.n_slices != s.n_slices => {
                return Some(format!(
                    "song {}{}: {} slices in A, {} in B (other slice length or slicing rule)",
                    s.song,
                    fold(s.fold),
                    s.n_slices,
                    t.n_slices
                ));
            }
            Some(_) => {}
        }
    }
    b.songs.iter().find(|s| !a_keys.contains(&key(s))).map(|s| {
        format!(
            "song {}{} is tested in B but not in A",
            s.song,
            fold(s.fold)
        )
    })
}

/// The comparison of `b` against `a` (differences are B - A).
pub fn compare(a: &TestSet, b: &TestSet, params: &BootstrapParams) -> Result<PairedReport> {
    if let Some(d) = first_difference(a, b) {
        bail!(
            "{} and {} were not tested on identical songs: {d}",
            a.source.display(),
            b.source.display()
        );
    }
    let pa = predictions(&a.songs, &a.classes)?;
    let pb = predictions(&b.songs, &b.classes)?;
    Ok(paired_bootstrap(&pa, &pb, params)?)
}

fn fmt_diff(d: &eval::Difference) -> String {
    let i = &d.difference;
    format!("{:+.3} [{:+.3}, {:+.3}]", i.value, i.ci95[0], i.ci95[1])
}

/// The comparison as Markdown.
pub fn to_markdown(a: &TestSet, b: &TestSet, r: &PairedReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Paired comparison: B - A\n");
    let _ = writeln!(s, "- A: `{}` ({})", a.source.display(), a.description);
    let _ = writeln!(s, "- B: `{}` ({})", b.source.display(), b.description);
    let _ = writeln!(
        s,
        "- {} test songs, identical in both; paired song-level bootstrap, {} resamples, seed {} (each resample scores A and B on the same songs).\n",
        r.songs, r.params.resamples, r.params.seed
    );
    let _ = writeln!(s, "| weighted F1 | A | B | B - A [95 % paired interval] |");
    let _ = writeln!(s, "|---|---|---|---|");
    for (name, d) in [
        ("song level (paper vote)", &r.song_f1),
        ("slice level", &r.slice_f1),
    ] {
        let _ = writeln!(
            s,
            "| {name} | {:.3} | {:.3} | {} |",
            d.first,
            d.second,
            fmt_diff(d)
        );
    }
    let m = &r.mcnemar;
    let _ = writeln!(
        s,
        "\nExact McNemar test on song correctness: {} songs right in A only, {} in B only, two-sided p = {:.4}.\n",
        m.first_only, m.second_only, m.p_value
    );
    let _ = writeln!(s, "### Per artist, song-level F1\n");
    let _ = writeln!(
        s,
        "| artist | test songs | A | B | B - A [95 % paired interval] |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (c, d) in r.per_class.iter().enumerate() {
        let Some(d) = d else { continue };
        let n = a.songs.iter().filter(|x| x.artist == a.classes[c]).count();
        let _ = writeln!(
            s,
            "| {} | {n} | {:.3} | {:.3} | {} |",
            a.classes[c],
            d.first,
            d.second,
            fmt_diff(d)
        );
    }
    s
}

/// The PNG: song- and slice-level differences, then one row per artist.
pub fn draw(path: &Path, a: &TestSet, r: &PairedReport) -> Result<()> {
    let row = |label: String, d: &eval::Difference| eval::plot::DifferenceRow {
        label,
        value: d.difference.value,
        ci95: d.difference.ci95,
    };
    let mut rows = vec![
        row("all songs: song F1".into(), &r.song_f1),
        row("all songs: slice F1".into(), &r.slice_f1),
    ];
    for (c, d) in r.per_class.iter().enumerate() {
        if let Some(d) = d {
            rows.push(row(a.classes[c].clone(), d));
        }
    }
    eval::plot::plot_differences(
        path,
        &rows,
        "F1 difference, B - A (95 % paired bootstrap interval)",
        &format!(
            "B - A on {} test songs; McNemar p = {:.3}",
            r.songs, r.mcnemar.p_value
        ),
    )?;
    Ok(())
}
