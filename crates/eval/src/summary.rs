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
}

/// Mean and max over seeds for one (split, level, slice length).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Mean over seeds ("average" row).
    pub mean: f64,
    /// Max over seeds ("best" row).
    pub max: f64,
    /// Number of seeds.
    pub n: usize,
}

/// The aggregated tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    cells: BTreeMap<(Level, String, usize), Cell>,
    frames_per_second: f64,
}

impl Summary {
    /// Aggregates `records`; `frames_per_second` labels the columns in seconds (31.25 for the
    /// paper's 16 kHz / hop 512).
    pub fn new(records: &[TrialRecord], frames_per_second: f64) -> Self {
        let mut groups: BTreeMap<(Level, String, usize), Vec<f64>> = BTreeMap::new();
        for r in records {
            groups
                .entry((r.level, r.split.clone(), r.slice_frames))
                .or_default()
                .push(r.weighted_f1);
        }
        let cells = groups
            .into_iter()
            .map(|(k, v)| {
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (
                    k,
                    Cell {
                        mean,
                        max,
                        n: v.len(),
                    },
                )
            })
            .collect();
        Self {
            cells,
            frames_per_second,
        }
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

    /// Markdown: one table per level, rows `<split> average` / `<split> best`, columns clip
    /// length (seconds and frames), values to 3 decimals as the paper; `-` where no run exists.
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
                "### {}-level weighted F1 (mean and max over seeds)\n",
                level.name()
            );
            let header: Vec<String> = cols.iter().map(|&c| self.column_label(c)).collect();
            let _ = writeln!(out, "| split | {} |", header.join(" | "));
            let _ = writeln!(out, "|---|{}", "---|".repeat(cols.len()));
            for split in &splits {
                for (stat, pick) in [("average", true), ("best", false)] {
                    let vals: Vec<String> = cols
                        .iter()
                        .map(|&c| match self.cell(level, split, c) {
                            Some(cell) => format!("{:.3}", if pick { cell.mean } else { cell.max }),
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
                for stat in ["average", "best", "n_seeds"] {
                    let _ = write!(out, "{},{split},{stat}", level.name());
                    for &c in &cols {
                        match self.cell(level, &split, c) {
                            Some(cell) if stat == "average" => {
                                let _ = write!(out, ",{}", cell.mean);
                            }
                            Some(cell) if stat == "best" => {
                                let _ = write!(out, ",{}", cell.max);
                            }
                            Some(cell) => {
                                let _ = write!(out, ",{}", cell.n);
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
        assert!(md.contains("| song average | - | 0.765 |"), "{md}");
        assert!(md.contains("| song best | 0.500 | 0.966 |"), "{md}");
        let csv = s.to_csv();
        assert!(csv.starts_with("level,split,stat,32,94\n"), "{csv}");
        assert!(csv.contains("song,song,n_seeds,1,3\n"), "{csv}");
        assert!(csv.contains("slice,song,average,,"), "{csv}");
    }
}
