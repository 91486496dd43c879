//! The experiment's closing stage: `summary.{md,csv}` with intervals, the F1-against-slice-
//! length PNG, and the t-SNE of one run.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use artist20::{Split, TrackFeatures};
use eval::plot::{Curve, CurvePoint};
use eval::{BootstrapParams, Level, Summary, TrialRecord};

use crate::cli::write_atomic;
use crate::evidence::{Pooled, RunSongs, collect_pooled, pool_runs};
use crate::experiment::RunReport;
use crate::experiment_cli::run_dir;
use crate::run_report::{collect_reports, monitor_of, table_label};

/// The paper's artist20 numbers (mean of 3 seeds, song split; `original-spec.md`): slice
/// length in frames, slice-level and song-level weighted F1. Another data set: drawn beside
/// ours for orientation only.
const PAPER_SONG_SPLIT: [(usize, f64, f64); 6] = [
    (32, 0.7293, 0.9295),
    (94, 0.7651, 0.9370),
    (157, 0.7701, 0.9182),
    (313, 0.7717, 0.9022),
    (628, 0.7683, 0.8611),
    (911, 0.7638, 0.8456),
];

/// The paper's artist20 album split (mean of 3 seeds), as [`PAPER_SONG_SPLIT`].
const PAPER_ALBUM_SPLIT: [(usize, f64, f64); 6] = [
    (32, 0.4818, 0.6410),
    (94, 0.5130, 0.6508),
    (157, 0.5365, 0.6520),
    (313, 0.5377, 0.6299),
    (628, 0.5345, 0.5862),
    (911, 0.6033, 0.6744),
];

fn pooled_records(p: &Pooled) -> [TrialRecord; 2] {
    let rec = |level, i: &eval::Interval| TrialRecord {
        split: table_label(&p.split, &p.model),
        level,
        slice_frames: p.slice_frames,
        seed: p.seed,
        weighted_f1: i.value,
        ci95: Some(i.ci95),
    };
    [
        rec(Level::Slice, &p.evidence.slice_f1),
        rec(Level::Song, &p.evidence.song_f1),
    ]
}

/// Reads every run under `out` and writes `summary.md` and `summary.csv`: one record per
/// single run and one per k-fold run (its pooled folds), each with its interval; where a cell
/// has several seeds, the interval over all their test songs together. Also draws
/// `f1_vs_length_<split>.png` for each split with two or more slice lengths. Returns the
/// reports and the Markdown.
pub fn write_summary(
    out: &Path,
    frames_per_second: f64,
    bootstrap: &BootstrapParams,
) -> Result<(Vec<RunReport>, String)> {
    let reports = collect_reports(out)?;
    let pooled = collect_pooled(out)?;
    let mut records: Vec<TrialRecord> = reports
        .iter()
        .filter(|r| r.fold.is_none())
        .flat_map(|r| r.trial_records())
        .collect();
    records.extend(pooled.iter().flat_map(pooled_records));
    let mut summary = Summary::new(&records, frames_per_second);
    // Cells of several seeds: the interval over every seed's test songs together.
    let mut units: BTreeMap<(String, usize), Vec<RunSongs<'_>>> = BTreeMap::new();
    for r in reports.iter().filter(|r| r.fold.is_none()) {
        units
            .entry((table_label(&r.split, &r.model), r.slice_frames))
            .or_default()
            .push((&r.songs, &r.classes));
    }
    for p in &pooled {
        units
            .entry((table_label(&p.split, &p.model), p.slice_frames))
            .or_default()
            .push((&p.songs, &p.classes));
    }
    for ((split, frames), runs) in &units {
        if runs.len() < 2 {
            continue;
        }
        if let Some(ev) = pool_runs(runs, bootstrap) {
            summary.set_pooled(Level::Slice, split, *frames, ev.slice_f1);
            summary.set_pooled(Level::Song, split, *frames, ev.song_f1);
        }
    }
    let mut md = format!(
        "# Results\n\nWeighted F1 (scikit-learn `weighted avg`, the paper's \"F1\"), song level by the paper's vote. \
         Brackets: 95 % song-level bootstrap interval ({} resamples, seed {}); a k-fold cell pools the test songs of all its folds.\n\n{}",
        bootstrap.resamples,
        bootstrap.seed,
        summary.to_markdown()
    );
    md.push_str(&test_songs_table(&reports, &pooled));
    for p in &pooled {
        md.push_str(&per_artist_table(p));
    }
    write_atomic(&out.join("summary.md"), |tmp| Ok(std::fs::write(tmp, &md)?))?;
    write_atomic(&out.join("summary.csv"), |tmp| {
        Ok(std::fs::write(tmp, summary.to_csv())?)
    })?;
    draw_length_curves(out, &summary, frames_per_second)?;
    Ok((reports, md))
}

/// How many test songs each cell's numbers rest on.
fn test_songs_table(reports: &[RunReport], pooled: &[Pooled]) -> String {
    let mut rows: Vec<String> = reports
        .iter()
        .filter(|r| r.fold.is_none())
        .map(|r| {
            format!(
                "| {} | {} | {} | {} | {} |\n",
                table_label(&r.split, &r.model),
                r.slice_frames,
                r.seed,
                r.songs.len(),
                monitor_of(&r.training)
            )
        })
        .collect();
    rows.extend(pooled.iter().map(|p| {
        format!(
            "| {} ({} folds) | {} | {} | {} | {} |\n",
            table_label(&p.split, &p.model),
            p.folds,
            p.slice_frames,
            p.seed,
            p.songs.len(),
            monitor_of(&p.training)
        )
    }));
    format!(
        "### Test songs behind each number\n\n| split | frames | seed | test songs | monitor |\n|---|---|---|---|---|\n{}\n",
        rows.concat()
    )
}

/// Song-level F1 per artist of a k-fold run.
fn per_artist_table(p: &Pooled) -> String {
    let mut s = format!(
        "### Per artist, song level: {} seed {}, {} frames ({} folds pooled)\n\n| artist | test songs | F1 [95 % interval] |\n|---|---|---|\n",
        table_label(&p.split, &p.model),
        p.seed,
        p.slice_frames,
        p.folds
    );
    for (artist, a) in &p.evidence.per_artist {
        s += &format!(
            "| {artist} | {} | {:.3} [{:.3}, {:.3}] |\n",
            a.songs, a.value, a.ci95[0], a.ci95[1]
        );
    }
    for (artist, folds) in &p.folds_without_test_songs {
        s += &format!("\n{artist}: no test songs in fold(s) {folds:?}.");
    }
    s + "\n\n"
}

/// `f1_vs_length_<split>.png` for every split with two or more slice lengths.
fn draw_length_curves(out: &Path, summary: &Summary, frames_per_second: f64) -> Result<()> {
    let lengths = summary.slice_lengths();
    for split in summary.split_names(Level::Song) {
        let have: Vec<usize> = lengths
            .iter()
            .copied()
            .filter(|&f| summary.cell(Level::Song, &split, f).is_some())
            .collect();
        if have.len() < 2 {
            continue;
        }
        let mut curves = Vec::new();
        for (level, name) in [(Level::Song, "song level"), (Level::Slice, "slice level")] {
            let points = have
                .iter()
                .filter_map(|&f| {
                    let c = summary.cell(level, &split, f)?;
                    let (value, ci95) = match (c.pooled, c.n) {
                        (Some(p), _) => (p.value, Some(p.ci95)),
                        (None, 1) => (c.mean, c.ci95),
                        (None, _) => (c.mean, None),
                    };
                    Some(CurvePoint {
                        x: f as f64 / frames_per_second,
                        value,
                        ci95,
                    })
                })
                .collect();
            curves.push(Curve {
                label: format!("{name}, this corpus ({split})"),
                points,
                reference: false,
            });
        }
        let paper = if split.starts_with("album") {
            &PAPER_ALBUM_SPLIT
        } else {
            &PAPER_SONG_SPLIT
        };
        for (k, name) in [(2usize, "song level"), (1, "slice level")] {
            curves.push(Curve {
                label: format!("{name}, paper on artist20 (another data set)"),
                points: paper
                    .iter()
                    .map(|row| CurvePoint {
                        x: row.0 as f64 / frames_per_second,
                        value: if k == 2 { row.2 } else { row.1 },
                        ci95: None,
                    })
                    .collect(),
                reference: true,
            });
        }
        let path = out.join(format!("f1_vs_length_{split}.png"));
        eval::plot::plot_curves(
            &path,
            &curves,
            "slice length (s, log scale)",
            "weighted F1",
            &format!("Weighted F1 against slice length ({split}; bands: 95 % intervals)"),
        )?;
        eprintln!("summary: {}", path.display());
    }
    Ok(())
}

/// The t-SNE of one run of this call: the paper plotted seed 21 at 313 frames, so the run
/// closest to that (fold 0 of a k-fold run). Failures are reported, not fatal.
pub fn write_tsne_of_grid(
    out: &Path,
    reports: &[RunReport],
    splits: &[Split],
    features: &TrackFeatures,
    device: tch::Device,
) {
    let split_of = |r: &RunReport| {
        splits.iter().find(|s| {
            s.kind.family() == r.split && s.seed == r.seed && s.kind.fold().map(|f| f.0) == r.fold
        })
    };
    let chosen = reports
        .iter()
        .filter(|r| split_of(r).is_some() && r.fold.unwrap_or(0) == 0)
        .min_by_key(|r| {
            (
                r.slice_frames.abs_diff(313),
                r.seed.abs_diff(21),
                r.split != "song",
            )
        });
    let Some((r, split)) = chosen.and_then(|r| Some((r, split_of(r)?))) else {
        return;
    };
    let dir = run_dir(out, &r.split, r.slice_frames, &r.model, r.seed, r.fold);
    let fold = r.fold.map_or(String::new(), |f| format!(", fold {f}"));
    let title = format!(
        "t-SNE of the bottleneck, test songs ({} split{fold}, {} frames, seed {})",
        r.split, r.slice_frames, r.seed
    );
    let result = crate::cli::load_model(&dir.join("model"), device).and_then(|model| {
        crate::representation::write_tsne(&crate::representation::TsneParams {
            model: &model,
            features,
            split,
            tracks: &split.test,
            device,
            out,
            title: &title,
        })
    });
    match result {
        Ok(n) => eprintln!(
            "t-SNE: {n} test slices -> {}",
            out.join("tsne.png").display()
        ),
        Err(e) => eprintln!("t-SNE skipped: {e:#}"),
    }
}
