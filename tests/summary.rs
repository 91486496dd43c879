//! The experiment's summary stage on pooled k-fold results at two slice lengths: intervals in
//! the tables, the per-artist table, and the F1-against-length PNG.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use artist_crnn::evidence::{Pooled, evidence};
use artist_crnn::run_report::SongRecord;
use eval::BootstrapParams;

fn pooled(frames: usize, right_every: usize) -> Pooled {
    let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let songs: Vec<SongRecord> = (0..30)
        .map(|i| {
            let label = i % 3;
            let predicted = if i % right_every == 0 {
                (label + 1) % 3
            } else {
                label
            };
            let mut slice_predicted = vec![0u32; 3];
            slice_predicted[label] = 3;
            slice_predicted[(label + 1) % 3] = 1 + (i % 2) as u32;
            SongRecord {
                song: format!("{}/album/song{i}.ogg", classes[label]),
                artist: classes[label].clone(),
                predicted: classes[predicted].clone(),
                predicted_mean_probability: classes[predicted].clone(),
                fold: Some(i % 3),
                n_slices: slice_predicted.iter().sum::<u32>() as usize,
                correct_slices: 3,
                slice_predicted,
            }
        })
        .collect();
    let params = BootstrapParams {
        resamples: 400,
        seed: 0,
    };
    Pooled {
        split: "song-kfold".into(),
        slice_frames: frames,
        seed: 0,
        folds: 3,
        evidence: evidence(&songs, &classes, &params).unwrap(),
        classes,
        songs,
        folds_without_test_songs: Default::default(),
        per_fold: Vec::new(),
        training: serde_json::json!({"monitor": "val-accuracy"}),
        seconds: 1.0,
        model: "crnn2d".into(),
    }
}

#[test]
fn pooled_runs_at_two_lengths_give_tables_with_intervals_and_the_length_plot() {
    let dir = tempfile::tempdir().unwrap();
    for (frames, every, model) in [
        (32usize, 3usize, "crnn2d"),
        (94, 5, "crnn2d"),
        (94, 4, "rnn"),
    ] {
        let p = Pooled {
            model: model.into(),
            ..pooled(frames, every)
        };
        let seed_dir =
            artist_crnn::experiment_cli::run_dir(dir.path(), &p.split, frames, model, 0, None);
        // The paper's model keeps the paths of before; another gets its own folder.
        assert_eq!(seed_dir.ends_with("94/rnn/seed-0"), model == "rnn");
        std::fs::create_dir_all(&seed_dir).unwrap();
        std::fs::write(
            seed_dir.join("pooled.json"),
            serde_json::to_string(&p).unwrap(),
        )
        .unwrap();
    }
    let params = BootstrapParams {
        resamples: 400,
        seed: 0,
    };
    let (reports, md) =
        artist_crnn::experiment_summary::write_summary(dir.path(), 31.25, &params).unwrap();
    assert!(reports.is_empty());
    let p94 = pooled(94, 5);
    let cell = format!(
        "{:.3} [{:.3}, {:.3}]",
        p94.evidence.song_f1.value, p94.evidence.song_f1.ci95[0], p94.evidence.song_f1.ci95[1]
    );
    assert!(md.contains("| split | 1 s (32) | 3 s (94) |"), "{md}");
    assert!(md.contains(&cell), "summary lacks {cell}:\n{md}");
    assert!(
        md.contains("| song-kfold (3 folds) | 94 | 0 | 30 | val-accuracy |"),
        "{md}"
    );
    assert!(md.contains("| a | 10 | "), "{md}");
    // Another model has rows of its own, not mixed into the paper model's cells.
    assert!(md.contains("| song-kfold rnn average |"), "{md}");
    assert!(md.contains("| song-kfold rnn (3 folds) | 94 |"), "{md}");
    let png = std::fs::read(dir.path().join("f1_vs_length_song-kfold.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(dir.path().join("summary.csv").is_file());
}
