//! From arrays to the paper's numbers and pictures on synthetic predictions:
//! `cargo run -p eval --example demo -- OUT_DIR` writes confusion.png, tsne.png, curves.png and
//! prints the slice- and song-level reports.

use std::path::PathBuf;

use eval::plot::{EpochPoint, plot_confusion, plot_scatter, plot_training_curves};
use eval::{
    ClassificationReport, TsneConfig, VoteRule, confusion_matrix, normalize_rows, song_vote, tsne,
};
use ndarray::Array2;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "eval-demo".into()),
    );
    let names: Vec<String> = [
        "aerosmith",
        "beatles",
        "cure",
        "depeche_mode",
        "garth_brooks",
        "madonna",
        "metallica",
        "queen",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let k = names.len();
    // 40 songs x 12 slices; each slice leans to its song's artist with some confusion.
    let mut state = 42u64;
    let mut rnd = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f32 / (1u64 << 31) as f32
    };
    let (songs, per) = (40usize, 12usize);
    let mut probs = Array2::<f32>::zeros((songs * per, k));
    let mut song_of_slice = Vec::new();
    let mut y_true = Vec::new();
    for s in 0..songs {
        for i in 0..per {
            let row = s * per + i;
            for c in 0..k {
                probs[[row, c]] = rnd()
                    + if c == s % k { 1.5 } else { 0.0 }
                    + if c == (s + 1) % k { 0.6 } else { 0.0 };
            }
            let sum: f32 = probs.row(row).sum();
            probs.row_mut(row).mapv_inplace(|p| p / sum);
            song_of_slice.push(s);
            y_true.push(s % k);
        }
    }
    let y_pred: Vec<usize> = probs
        .outer_iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &p)| if p > b.1 { (i, p) } else { b })
                .0
        })
        .collect();
    let slice_report = ClassificationReport::new(&y_true, &y_pred, &names)?;
    println!("slice level\n{slice_report}");
    let song_pred = song_vote(probs.view(), &song_of_slice, VoteRule::Paper)?;
    let song_true: Vec<usize> = (0..songs).map(|s| s % k).collect();
    let song_report = ClassificationReport::new(&song_true, &song_pred, &names)?;
    println!("song level (paper vote)\n{song_report}");
    println!(
        "paper F1: slice {:.3}, song {:.3}",
        slice_report.weighted_f1(),
        song_report.weighted_f1()
    );

    let cm = normalize_rows(&confusion_matrix(&y_true, &y_pred, k)?);
    plot_confusion(
        &out.join("confusion.png"),
        &cm,
        &names,
        "Slice-level confusion (row-normalised)",
    )?;
    let emb = tsne(probs.view(), &TsneConfig::default())?;
    plot_scatter(
        &out.join("tsne.png"),
        emb.view(),
        &y_true,
        &names,
        "t-SNE of slice probabilities",
    )?;
    let history: Vec<EpochPoint> = (0..30)
        .map(|e| {
            let e = f64::from(e);
            EpochPoint {
                loss: 2.0 * (-e / 8.0).exp() + 0.1,
                acc: 1.0 - 0.9 * (-e / 6.0).exp(),
                val_loss: 2.0 * (-e / 10.0).exp() + 0.3 + 0.01 * e,
                val_acc: 0.85 - 0.75 * (-e / 7.0).exp(),
            }
        })
        .collect();
    plot_training_curves(&out.join("curves.png"), &history, "Training curves")?;
    println!("plots written to {}", out.display());
    Ok(())
}
