//! The paper's results tables from per-run records: mean and max of the weighted F1 over
//! seeds, rows split x {average, best}, one column per clip length, one table per level.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Slice-level ("frame level" in the paper's code) or song-level scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// One prediction per slice.
    Slice,
    /// One prediction per song, by the song vote.
    Song,
}

impl Level {
    /// "slice" or "song".
    pub fn name(self) -> &'static str {
        match self {
            Level::Slice => "slice",
            Level::Song => "song",
        }
    }
}

/// One finished run's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// Split name (`song`, `album`, ...).
    pub split: String,
    /// Level of the score.
    pub level: Level,
    /// Slice length in frames.
    pub slice_frames: usize,
    /// Seed of the run.
    pub seed: u64,
    /// Weighted-average F1 (the paper's F1).
    pub weighted_f1: f64,
    /// Its 95 % interval (song-level bootstrap), where the run has one.
    #[serde(default)]
    pub ci95: Option<[f64; 2]>,
}

/// Mean, spread and max over seeds for one (split, level, slice length).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Mean over seeds ("average" row).
    pub mean: f64,
    /// Min over seeds (with `max`, the spread between seeds).
    pub min: f64,
    /// Max over seeds ("best" row).
    pub max: f64,
    /// Number of seeds.
    pub n: usize,
    /// With one seed, that run's 95 % interval (if it has one).
    pub ci95: Option<[f64; 2]>,
    /// The 95 % interval of the score over all seeds' test predictions together (set with
    /// [`Summary::set_pooled`]).
    pub pooled: Option<crate::Interval>,
}

/// The aggregated tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    cells: BTreeMap<(Level, String, usize), Cell>,
    frames_per_second: f64,
}

fn fmt_interval(value: f64, ci: Option<[f64; 2]>) -> String {
    match ci {
        Some([lo, hi]) => format!("{value:.3} [{lo:.3}, {hi:.3}]"),
        None => format!("{value:.3}"),
    }
}

impl Summary {
    /// Aggregates `records`; `frames_per_second` labels the columns in seconds (31.25 for the
    /// paper's 16 kHz / hop 512).
    pub fn new(records: &[TrialRecord], frames_per_second: f64) -> Self {
        let mut groups: BTreeMap<(Level, String, usize), Vec<&TrialRecord>> = BTreeMap::new();
        for r in records {
            groups
                .entry((r.level, r.split.clone(), r.slice_frames))
                .or_default()
                .push(r);
        }
        let cells = groups
            .into_iter()
            .map(|(k, v)| {
                let f1 = || v.iter().map(|r| r.weighted_f1);
                let mean = f1().sum::<f64>() / v.len() as f64;
                let max = f1().fold(f64::NEG_INFINITY, f64::max);
                let min = f1().fold(f64::INFINITY, f64::min);
                let ci95 = if v.len() == 1 { v[0].ci95 } else { None };
                (
                    k,
                    Cell {
                        mean,
                        min,
                        max,
                        n: v.len(),
                        ci95,
                        pooled: None,
                    },
                )
            })
            .collect();
        Self {
            cells,
            frames_per_second,
        }
    }

    /// Sets the pooled interval of a cell (no effect where no run produced the cell).
    pub fn set_pooled(
        &mut self,
        level: Level,
        split: &str,
        slice_frames: usize,
        pooled: crate::Interval,
    ) {
        if let Some(c) = self
            .cells
            .get_mut(&(level, split.to_string(), slice_frames))
        {
            c.pooled = Some(pooled);
        }
    }

    /// Slice lengths with a cell, ascending.
    pub fn slice_lengths(&self) -> Vec<usize> {
        self.columns()
    }

    /// Splits with a cell at `level`, sorted.
    pub fn split_names(&self, level: Level) -> Vec<String> {
        self.splits(level)
    }

    /// The cell for a (level, split, slice length), if any run produced it.
    pub fn cell(&self, level: Level, split: &str, slice_frames: usize) -> Option<Cell> {
        self.cells
            .get(&(level, split.to_string(), slice_frames))
            .copied()
    }

    fn columns(&self) -> Vec<usize> {
        self.cells
            .keys()
            .map(|k| k.2)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    fn splits(&self, level: Level) -> Vec<String> {
        self.cells
            .keys()
            .filter(|k| k.0 == level)
            .map(|k| k.1.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    fn column_label(&self, frames: usize) -> String {
        format!("{:.0} s ({frames})", frames as f64 / self.frames_per_second)
    }

    /// Markdown: one table per level, rows `<split> average` / `<split> best` (and `<split>
    /// pooled` where a pooled interval is set), columns clip length (seconds and frames),
    /// values to 3 decimals as the paper; `-` where no run exists. An average of one seed
    /// shows its interval, `0.512 [0.441, 0.583]`; of several, the spread between seeds,
    /// `0.479 (0.261-0.703, 3 seeds)`; the pooled row the interval over all seeds' songs.
    pub fn to_markdown(&self) -> String {
        let cols = self.columns();
        let mut out = String::new();
        for level in [Level::Slice, Level::Song] {
            let splits = self.splits(level);
            if splits.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "### {}-level weighted F1 (mean and max over seeds; [95 % song-level bootstrap interval])\n",
                level.name()
            );
            let header: Vec<String> = cols.iter().map(|&c| self.column_label(c)).collect();
            let _ = writeln!(out, "| split | {} |", header.join(" | "));
            let _ = writeln!(out, "|---|{}", "---|".repeat(cols.len()));
            for split in &splits {
                let any_pooled = cols.iter().any(|&c| {
                    self.cell(level, split, c)
                        .is_some_and(|x| x.pooled.is_some())
                });
                for stat in ["average", "best", "pooled"] {
                    if stat == "pooled" && !any_pooled {
                        continue;
                    }
                    let vals: Vec<String> = cols
                        .iter()
                        .map(|&c| match self.cell(level, split, c) {
                            Some(cell) => match stat {
                                "average" if cell.n == 1 => fmt_interval(cell.mean, cell.ci95),
                                "average" => format!(
                                    "{:.3} ({:.3}-{:.3}, {} seeds)",
                                    cell.mean, cell.min, cell.max, cell.n
                                ),
                                "best" => format!("{:.3}", cell.max),
                                _ => cell
                                    .pooled
                                    .map_or("-".into(), |p| fmt_interval(p.value, Some(p.ci95))),
                            },
                            None => "-".into(),
                        })
                        .collect();
                    let _ = writeln!(out, "| {split} {stat} | {} |", vals.join(" | "));
                }
            }
            let _ = writeln!(out);
        }
        out
    }

    /// CSV with columns `level,split,stat,<frames>...` and `n_seeds_<frames>...`; full precision.
    pub fn to_csv(&self) -> String {
        let cols = self.columns();
        let mut out = String::from("level,split,stat");
        for c in &cols {
            let _ = write!(out, ",{c}");
        }
        out.push('\n');
        for level in [Level::Slice, Level::Song] {
            for split in self.splits(level) {
                for stat in [
                    "average",
                    "best",
                    "n_seeds",
                    "ci95_lo",
                    "ci95_hi",
                    "pooled",
                    "pooled_lo",
                    "pooled_hi",
                ] {
                    let _ = write!(out, "{},{split},{stat}", level.name());
                    for &c in &cols {
                        match self.cell(level, &split, c) {
                            Some(cell) if stat == "average" => {
                                let _ = write!(out, ",{}", cell.mean);
                            }
                            Some(cell) if stat == "best" => {
                                let _ = write!(out, ",{}", cell.max);
                            }
                            Some(cell) if stat == "n_seeds" => {
                                let _ = write!(out, ",{}", cell.n);
                            }
                            Some(cell) => {
                                let v = match stat {
                                    "ci95_lo" => cell.ci95.map(|c| c[0]),
                                    "ci95_hi" => cell.ci95.map(|c| c[1]),
                                    "pooled" => cell.pooled.map(|p| p.value),
                                    "pooled_lo" => cell.pooled.map(|p| p.ci95[0]),
                                    _ => cell.pooled.map(|p| p.ci95[1]),
                                };
                                match v {
                                    Some(v) => {
                                        let _ = write!(out, ",{v}");
                                    }
                                    None => out.push(','),
                                }
                            }
                            None => out.push(','),
                        }
                    }
                    out.push('\n');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(split: &str, level: Level, frames: usize, seed: u64, f1: f64) -> TrialRecord {
        TrialRecord {
            split: split.into(),
            level,
            slice_frames: frames,
            seed,
            weighted_f1: f1,
            ci95: None,
        }
    }

    #[test]
    fn hand_made_case() {
        let records = vec![
            rec("song", Level::Slice, 94, 0, 0.7684),
            rec("song", Level::Slice, 94, 21, 0.7651),
            rec("song", Level::Slice, 94, 42, 0.7617),
            rec("song", Level::Song, 94, 0, 0.9237),
            rec("song", Level::Song, 94, 21, 0.9656),
            rec("song", Level::Song, 94, 42, 0.9218),
            rec("song", Level::Song, 32, 0, 0.5),
        ];
        let s = Summary::new(&records, 31.25);
        let c = s.cell(Level::Song, "song", 94).unwrap();
        assert!((c.mean - (0.9237 + 0.9656 + 0.9218) / 3.0).abs() < 1e-12);
        assert_eq!(c.max, 0.9656);
        assert_eq!(c.n, 3);
        let md = s.to_markdown();
        assert!(md.contains("| split | 1 s (32) | 3 s (94) |"), "{md}");
        assert!(
            md.contains("| song average | - | 0.765 (0.762-0.768, 3 seeds) |"),
            "{md}"
        );
        assert!(md.contains("| song best | 0.500 | 0.966 |"), "{md}");
        let csv = s.to_csv();
        assert!(csv.starts_with("level,split,stat,32,94\n"), "{csv}");
        assert!(csv.contains("song,song,n_seeds,1,3\n"), "{csv}");
        assert!(csv.contains("slice,song,average,,"), "{csv}");
    }

    #[test]
    fn intervals_where_the_runs_have_them() {
        let mut one = rec("song-kfold", Level::Song, 94, 0, 0.512);
        one.ci95 = Some([0.441, 0.583]);
        let mut s = Summary::new(
            &[
                one,
                rec("song", Level::Song, 94, 0, 0.4),
                rec("song", Level::Song, 94, 21, 0.6),
            ],
            31.25,
        );
        s.set_pooled(
            Level::Song,
            "song",
            94,
            crate::Interval {
                value: 0.49,
                ci95: [0.38, 0.61],
            },
        );
        let md = s.to_markdown();
        assert!(
            md.contains("| song-kfold average | 0.512 [0.441, 0.583] |"),
            "{md}"
        );
        assert!(
            md.contains("| song average | 0.500 (0.400-0.600, 2 seeds) |"),
            "{md}"
        );
        assert!(
            md.contains("| song pooled | 0.490 [0.380, 0.610] |"),
            "{md}"
        );
        assert!(!md.contains("song-kfold pooled"), "{md}");
        let csv = s.to_csv();
        assert!(csv.contains("song,song-kfold,ci95_lo,0.441\n"), "{csv}");
        assert!(csv.contains("song,song,pooled_hi,0.61\n"), "{csv}");
    }
}
