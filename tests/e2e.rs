//! End to end on a subset of the real `small` corpus (fetched with apt on first use, then
//! cached in data/): experiment with 1 epoch, then every artefact checked for existence and
//! form (JSON parses, PNGs have sensible sizes, the summary has the paper's layout), not for
//! a score. A second call reads the finished run back instead of training again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use artist_crnn::experiment_cli::{Args, run};
use clap::Parser;

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

/// `experiment` on `list` with its store in `cache`, 1 epoch on the CPU, into `out`.
fn experiment_args(list: &Path, cache: &Path, out: &Path, extra: &[&str]) -> Args {
    let mut v = vec![
        "experiment",
        "--data-dir",
        list.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ];
    v.extend_from_slice(extra);
    Args::try_parse_from(v).unwrap()
}

#[test]
fn experiment_on_a_small_subset_writes_every_artefact() {
    crnn::recycle_large_allocations();
    // Three artists with short tracks: 32 songs, ~80 minutes of music.
    let dir = tempfile::tempdir().unwrap();
    let list = common::small_subset(dir.path());
    let out = dir.path().join("out");
    let cache = dir.path().join("features.h5");
    let argv = |extra: &[&str]| experiment_args(&list, &cache, &out, extra);
    let first = run(argv(&[])).unwrap();
    assert_eq!((first.runs, first.trained, first.reports.len()), (1, 1, 1));

    let run_dir = out.join("song/94/seed-0");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["classes"].as_array().unwrap().len(), 3);
    for key in [
        "slice_level",
        "song_level_paper_vote",
        "song_level_mean_probability",
    ] {
        let f1 = report[key]["weighted_f1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&f1), "{key}: {f1}");
        assert!(report[key]["report"]["weighted avg"]["f1-score"].is_number());
        assert_eq!(report[key]["confusion"].as_array().unwrap().len(), 3);
    }
    let songs: Vec<u64> = report["counts"]["songs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(songs.iter().sum::<u64>(), 32);
    assert!(report["training"]["epochs"].as_u64().unwrap() == 1);

    for png in ["confusion_slice.png", "confusion_song.png"] {
        let (w, h) = png_size(&run_dir.join(png));
        assert!(
            (300..3000).contains(&w) && (300..3000).contains(&h),
            "{png}: {w}x{h}"
        );
    }
    assert_eq!(png_size(&run_dir.join("training_curves.png")), (1400, 560));
    for f in ["config.json", "weights.safetensors", "history.csv"] {
        assert!(run_dir.join("model").join(f).is_file(), "model/{f}");
    }
    let history = std::fs::read_to_string(run_dir.join("model/history.csv")).unwrap();
    assert!(
        history.starts_with("epoch,loss,acc,val_loss,val_acc,seconds,val_f1\n")
            && history.lines().count() == 2
    );
    // Every F1 comes with its song-level bootstrap interval, and every test song is listed.
    for key in ["song_f1", "slice_f1"] {
        let v = report[key]["value"].as_f64().unwrap();
        let ci: Vec<f64> = serde_json::from_value(report[key]["ci95"].clone()).unwrap();
        assert!(ci[0] <= v && v <= ci[1], "{key}: {v} outside {ci:?}");
    }
    assert_eq!(
        report["song_f1"]["value"].as_f64().unwrap(),
        report["song_level_paper_vote"]["weighted_f1"]
            .as_f64()
            .unwrap()
    );
    assert_eq!(report["bootstrap"]["resamples"].as_u64().unwrap(), 10_000);
    let test_songs = report["songs"].as_array().unwrap();
    assert_eq!(
        test_songs.len() as u64
            + report["counts"]["test_songs_without_slices"]
                .as_array()
                .unwrap()
                .len() as u64,
        songs[2]
    );
    assert_eq!(report["training"]["monitor"], "val-loss");

    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    for want in [
        "### slice-level weighted F1",
        "### song-level weighted F1",
        "| split | 3 s (94) |",
        "| song average | 0.",
        "| song best |",
        "95 % song-level bootstrap interval",
        "| song | 94 | 0 |",
    ] {
        assert!(md.contains(want), "summary.md lacks {want:?}:\n{md}");
    }
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(
        csv.starts_with("level,split,stat,94\n") && csv.contains("song,song,average,"),
        "{csv}"
    );

    let tsne = std::fs::read_to_string(out.join("tsne.csv")).unwrap();
    assert!(tsne.starts_with("x0,x1,label\n"));
    let test_slices = report["counts"]["slices"][2].as_u64().unwrap() as usize;
    assert_eq!(tsne.lines().count(), test_slices + 1);
    assert_eq!(png_size(&out.join("tsne.png")), (1400, 1100));

    let ci = report["song_f1"]["ci95"].as_array().unwrap();
    let cell = format!(
        "| song average | {:.3} [{:.3}, {:.3}] |",
        report["song_f1"]["value"].as_f64().unwrap(),
        ci[0].as_f64().unwrap(),
        ci[1].as_f64().unwrap()
    );
    assert!(md.contains(&cell), "summary.md lacks {cell:?}:\n{md}");

    // Re-run: the finished run is read back, not trained again (what the run says it did).
    let second = run(argv(&["--no-tsne"])).unwrap();
    assert_eq!(second.reports.len(), 1);
    assert_eq!(
        (second.runs, second.trained, second.read_back),
        (1, 0, 1),
        "a finished run was redone"
    );

    // predict on a folder of every format: each file is predicted or named with its reason.
    let library = dir.path().join("library");
    let (audio, text) = common::mixed_library(&library);
    let predictor =
        artist_crnn::predict::Predictor::load(&run_dir.join("model"), tch::Device::Cpu).unwrap();
    let mut predicted = Vec::new();
    for file in audio.iter().chain([&text]) {
        let name = file.file_name().unwrap().to_str().unwrap();
        match predictor.predict(file, tch::Device::Cpu) {
            Ok(p) => {
                let total: f64 = p.mean_probability.iter().sum();
                assert!((total - 1.0).abs() < 1e-4, "{name}: {total}");
                assert_eq!(p.votes.iter().sum::<u32>() as usize, p.slices);
                predicted.push(name);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                assert!(msg.contains(&file.display().to_string()), "{msg}");
                assert!(
                    msg.contains("shorter than one") || msg.contains("not a supported audio file"),
                    "{name}: {msg}"
                );
                assert!(
                    name == "notes.m4a" || msg.contains("shorter than one"),
                    "{name} failed: {msg}"
                );
            }
        }
    }
    // The 3 s+ files of each new format give slices.
    for must in [
        "guitar_mono.m4a",
        "guitar_mono.opus",
        "fanfare.ogg",
        "house_lo.wav",
    ] {
        assert!(
            predicted.contains(&must),
            "{must} not predicted: {predicted:?}"
        );
    }

    // Bad input: a missing data folder is a clear error.
    let err = run(Args::try_parse_from([
        "experiment",
        "--data-dir",
        "/nonexistent/corpus",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap())
    .unwrap_err();
    assert!(format!("{err:#}").contains("no such folder"), "{err:#}");
}

/// Song k-fold end to end on the small subset: every song tested once, `pooled.json` in its
/// documented layout, the summary's interval, a resumed call that trains nothing, and
/// `compare` of the run with itself (difference 0, p = 1) and with a run on other songs
/// (refused, naming a song).
#[test]
fn song_kfold_pools_its_folds_and_compares() {
    use artist_crnn::compare::{TestSet, compare, first_difference};
    crnn::recycle_large_allocations();
    let dir = tempfile::tempdir().unwrap();
    let list = common::small_subset(dir.path());
    let out = dir.path().join("out");
    let cache = dir.path().join("features.h5");
    let argv = |split: &str, extra: &[&str]| {
        let mut v = vec![
            "--no-tsne",
            "--bootstrap-resamples",
            "500",
            "--split",
            split,
        ];
        v.extend_from_slice(extra);
        experiment_args(&list, &cache, &out, &v)
    };
    let kfold = ["--folds", "2", "--monitor", "val-accuracy"];
    let first = run(argv("song-kfold", &kfold)).unwrap();
    assert_eq!(first.runs, 2);
    let seed_dir = out.join("song-kfold/94/seed-0");
    for fold in 0..2 {
        let d = seed_dir.join(format!("fold-{fold}"));
        assert!(d.join("report.json").is_file() && d.join("model/config.json").is_file());
        let config = std::fs::read_to_string(d.join("model/config.json")).unwrap();
        assert!(config.contains("\"monitor\": \"val-accuracy\""), "{config}");
    }
    let pooled: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(seed_dir.join("pooled.json")).unwrap())
            .unwrap();
    let songs = pooled["songs"].as_array().unwrap();
    let mut names: Vec<&str> = songs.iter().map(|s| s["song"].as_str().unwrap()).collect();
    names.sort_unstable();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n, "a song tested twice");
    assert!(n >= 28, "{n} of 32 songs tested");
    for s in songs {
        for key in [
            "song",
            "artist",
            "predicted",
            "fold",
            "n_slices",
            "correct_slices",
        ] {
            assert!(!s[key].is_null(), "pooled song lacks {key}: {s}");
        }
        assert!(s["correct_slices"].as_u64() <= s["n_slices"].as_u64());
    }
    for key in ["song_f1", "slice_f1"] {
        let v = pooled[key]["value"].as_f64().unwrap();
        let ci = pooled[key]["ci95"].as_array().unwrap();
        assert!(
            ci[0].as_f64().unwrap() <= v && v <= ci[1].as_f64().unwrap(),
            "{key}"
        );
    }
    assert_eq!(pooled["bootstrap"]["resamples"], 500);
    assert_eq!(pooled["per_artist"].as_object().unwrap().len(), 3);
    assert_eq!(pooled["per_fold"].as_array().unwrap().len(), 2);
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("| song-kfold average | "), "{md}");
    assert!(md.contains("| song-kfold (2 folds) | 94 | 0 |"), "{md}");

    // Killed or not, a second call reads both folds back and trains nothing.
    let again = run(argv("song-kfold", &kfold)).unwrap();
    assert_eq!((again.runs, again.trained, again.read_back), (2, 0, 2));
    let pooled_again = std::fs::read_to_string(seed_dir.join("pooled.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&pooled_again).unwrap(),
        pooled
    );

    // compare: the run against itself, and against the song split's test songs.
    let a = TestSet::open(&out.join("song-kfold")).unwrap();
    let params = eval::BootstrapParams {
        resamples: 300,
        seed: 0,
    };
    let same = compare(&a, &a, &params).unwrap();
    assert_eq!(same.song_f1.difference.value, 0.0);
    assert_eq!(same.song_f1.difference.ci95, [0.0, 0.0]);
    assert_eq!(same.mcnemar.p_value, 1.0);
    run(argv("song", &[])).unwrap();
    let single = TestSet::open(&out.join("song")).unwrap();
    let why = first_difference(&a, &single).unwrap();
    assert!(why.contains("song ") && why.contains("tested in"), "{why}");
    let err = compare(&a, &single, &params).unwrap_err();
    assert!(
        format!("{err:#}").contains("not tested on identical songs"),
        "{err:#}"
    );
    // A folder with several runs is refused with the runs listed.
    let other = out.join("song-kfold/94/seed-1");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(seed_dir.join("pooled.json"), other.join("pooled.json")).unwrap();
    let err = TestSet::open(&out).unwrap_err();
    assert!(format!("{err:#}").contains("name one"), "{err:#}");
}

/// `--model` and `--augment`: CRNN1D with input BatchNorm (`crnn1d-bn`) and RNN, each with
/// every augmentation, through the whole experiment on the small subset; each gets its own folder, report and summary rows,
/// records its architecture and augmentation, predicts a file, and a re-run reads both back.
#[test]
fn other_models_and_augmentation_run_the_whole_experiment() {
    crnn::recycle_large_allocations();
    let dir = tempfile::tempdir().unwrap();
    let list = common::small_subset(dir.path());
    let out = dir.path().join("out");
    let cache = dir.path().join("features.h5");
    let aug = "crop,specaugment,mixup,gain";
    let extra = [
        "--no-tsne",
        "--bootstrap-resamples",
        "300",
        "--model",
        "crnn1d-bn,rnn",
        "--augment",
        aug,
    ];
    let first = run(experiment_args(&list, &cache, &out, &extra)).unwrap();
    assert_eq!((first.runs, first.trained), (2, 2));
    for (model, architecture) in [("crnn1d-bn", "crnn1d"), ("rnn", "rnn")] {
        let variant = format!("{model}+{}", aug.replace(',', "+"));
        let run_dir = out.join("song/94").join(&variant).join("seed-0");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(report["model"], variant.as_str());
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(run_dir.join("model/config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(config["model"]["architecture"], architecture);
        assert_eq!(
            config["model"].get("input_norm").is_some(),
            model.ends_with("-bn")
        );
        assert_eq!(config["train"]["augment"]["crop"], true);
        assert!(config["train"]["augment"]["mixup"]["alpha"].is_number());
        assert!(
            first
                .summary_md
                .contains(&format!("| song {variant} average |"))
                && first
                    .summary_md
                    .contains(&format!("| song {variant} | 94 | 0 |")),
            "{}",
            first.summary_md
        );
        // The model predicts a file of the corpus.
        let predictor =
            artist_crnn::predict::Predictor::load(&run_dir.join("model"), tch::Device::Cpu)
                .unwrap();
        let text = std::fs::read_to_string(&list).unwrap();
        let path = text
            .lines()
            .next()
            .and_then(|l| l.split('\t').next())
            .unwrap();
        let p = predictor
            .predict(Path::new(path), tch::Device::Cpu)
            .unwrap();
        assert!(p.slices > 0);
    }
    let again = run(experiment_args(&list, &cache, &out, &extra)).unwrap();
    assert_eq!((again.runs, again.trained, again.read_back), (2, 0, 2));
}
