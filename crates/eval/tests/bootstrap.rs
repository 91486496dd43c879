//! The song-level bootstrap against a committed numpy / scikit-learn / scipy reference on the
//! same resample indices, its coverage on synthetic predictions, and its degenerate cases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eval::{
    BootstrapParams, SongPredictions, bootstrap_indices, bootstrap_statistic, cluster_bootstrap,
    mcnemar_exact, paired_bootstrap, percentile_interval,
};
use rand::{RngExt, SeedableRng};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn predictions(case: &Value) -> SongPredictions {
    let mut d = SongPredictions::new(case["n_classes"].as_u64().unwrap() as usize);
    for s in case["songs"].as_array().unwrap() {
        let u = |v: &Value| v.as_u64().unwrap() as usize;
        let slices: Vec<(usize, usize)> = s["slices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (u(&p[0]), u(&p[1])))
            .collect();
        d.push_song(u(&s["label"]), u(&s["predicted"]), slices)
            .unwrap();
    }
    d
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-12, "{what}: {a} vs {b}");
}

#[test]
fn equals_the_python_reference_on_the_same_indices() {
    let case = load("bootstrap_case.json");
    let want = load("bootstrap_expected.json");
    let params: BootstrapParams = serde_json::from_value(case["params"].clone()).unwrap();
    let data = predictions(&case);
    // The indices are this crate's draws, the same on every machine.
    let indices = bootstrap_indices(data.len(), &params).unwrap();
    let committed: Vec<Vec<usize>> = serde_json::from_value(case["indices"].clone()).unwrap();
    assert_eq!(indices, committed, "the resample draws changed");
    let (mut songs, mut slices) = (Vec::new(), Vec::new());
    for (r, draw) in indices.iter().enumerate() {
        let mut w = vec![0u32; data.len()];
        draw.iter().for_each(|&i| w[i] += 1);
        let (s, l) = (data.song_f1(Some(&w)), data.slice_f1(Some(&w)));
        close(
            s,
            want["song_values"][r].as_f64().unwrap(),
            &format!("song F1, resample {r}"),
        );
        close(
            l,
            want["slice_values"][r].as_f64().unwrap(),
            &format!("slice F1, resample {r}"),
        );
        songs.push(s);
        slices.push(l);
    }
    let report = cluster_bootstrap(&data, &params).unwrap();
    close(
        report.song_f1.value,
        want["song_f1"].as_f64().unwrap(),
        "song F1",
    );
    close(
        report.slice_f1.value,
        want["slice_f1"].as_f64().unwrap(),
        "slice F1",
    );
    for (got, key) in [
        (report.song_f1.ci95, "song_ci95"),
        (report.slice_f1.ci95, "slice_ci95"),
    ] {
        close(got[0], want[key][0].as_f64().unwrap(), key);
        close(got[1], want[key][1].as_f64().unwrap(), key);
    }
    assert_eq!(percentile_interval(&songs), report.song_f1.ci95);
    assert_eq!(percentile_interval(&slices), report.slice_f1.ci95);
    // McNemar against scipy.stats.binomtest.
    for (k, pair) in case["mcnemar"].as_array().unwrap().iter().enumerate() {
        let (a, b) = (
            pair[0].as_u64().unwrap() as usize,
            pair[1].as_u64().unwrap() as usize,
        );
        let first: Vec<bool> = (0..a + b).map(|i| i < a).collect();
        let second: Vec<bool> = (0..a + b).map(|i| i >= a).collect();
        let m = mcnemar_exact(&first, &second).unwrap();
        assert_eq!((m.first_only, m.second_only), (a as u64, b as u64));
        let p = want["mcnemar_p"][k].as_f64().unwrap();
        assert!(
            (m.p_value - p).abs() <= 1e-12 * p.max(1e-300) + 1e-15,
            "McNemar {a}/{b}: {} vs scipy {p}",
            m.p_value
        );
    }
}

/// 1,000 simulated test sets of 100 songs, each right with probability 0.7 (two balanced
/// classes, so the population's accuracy and weighted F1 are both 0.7): the 95 % interval
/// should cover 0.7 in about 95 % of the sets.
#[test]
fn intervals_cover_the_truth() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let (sets, n, truth) = (1_000usize, 100usize, 0.7);
    let (mut covered_acc, mut covered_f1) = (0usize, 0usize);
    for set in 0..sets {
        let mut d = SongPredictions::new(2);
        let mut correct = Vec::with_capacity(n);
        for _ in 0..n {
            let label = rng.random_range(0..2usize);
            let right = rng.random_bool(truth);
            let predicted = if right { label } else { 1 - label };
            d.push_song(label, predicted, [(label, predicted)]).unwrap();
            correct.push(right);
        }
        let params = BootstrapParams {
            resamples: 1_000,
            seed: set as u64,
        };
        let acc = bootstrap_statistic(n, &params, |w| {
            let hits: u32 = w
                .iter()
                .zip(&correct)
                .map(|(w, c)| if *c { *w } else { 0 })
                .sum();
            f64::from(hits) / n as f64
        })
        .unwrap();
        let [lo, hi] = percentile_interval(&acc);
        covered_acc += usize::from(lo <= truth && truth <= hi);
        let r = cluster_bootstrap(&d, &params).unwrap();
        covered_f1 += usize::from(r.song_f1.ci95[0] <= truth && truth <= r.song_f1.ci95[1]);
    }
    for (what, covered) in [("accuracy", covered_acc), ("weighted F1", covered_f1)] {
        let rate = covered as f64 / sets as f64;
        println!("coverage of the 95 % interval, {what}: {rate:.3} over {sets} sets");
        assert!((0.93..=0.97).contains(&rate), "{what}: coverage {rate}");
    }
}

#[test]
fn degenerate_cases_are_defined_or_refused() {
    let params = BootstrapParams {
        resamples: 200,
        seed: 1,
    };
    // One song: every resample is that song.
    let mut one = SongPredictions::new(3);
    one.push_song(1, 2, [(1, 2), (1, 1)]).unwrap();
    let r = cluster_bootstrap(&one, &params).unwrap();
    assert_eq!(r.song_f1.value, 0.0);
    assert_eq!(r.song_f1.ci95, [0.0, 0.0]);
    assert_eq!(r.slice_f1.ci95, [r.slice_f1.value; 2]);
    // All correct: F1 1 in every resample.
    let mut all = SongPredictions::new(4);
    for s in 0..12 {
        all.push_song(s % 4, s % 4, [(s % 4, s % 4)]).unwrap();
    }
    let r = cluster_bootstrap(&all, &params).unwrap();
    assert_eq!((r.song_f1.value, r.song_f1.ci95), (1.0, [1.0, 1.0]));
    assert!(r.per_class.iter().all(|c| c.unwrap().f1.ci95 == [1.0, 1.0]));
    // One class: always right, so 1; a class without songs has no per-class interval.
    let mut single = SongPredictions::new(2);
    for _ in 0..5 {
        single.push_song(0, 0, [(0, 0)]).unwrap();
    }
    let r = cluster_bootstrap(&single, &params).unwrap();
    assert_eq!(r.song_f1.ci95, [1.0, 1.0]);
    assert!(r.per_class[1].is_none());
    // Nothing to resample, or no resamples: an error that says so.
    let e = cluster_bootstrap(&SongPredictions::new(2), &params).unwrap_err();
    assert!(e.to_string().contains("songs is empty"), "{e}");
    let mut no_slices = SongPredictions::new(2);
    no_slices.push_song(0, 0, []).unwrap();
    assert!(cluster_bootstrap(&no_slices, &params).is_err());
    let zero = BootstrapParams {
        resamples: 0,
        seed: 0,
    };
    assert!(
        cluster_bootstrap(&all, &zero)
            .unwrap_err()
            .to_string()
            .contains("resamples")
    );
}

#[test]
fn paired_comparison_of_identical_systems_is_zero_with_p_one() {
    let case = load("bootstrap_case.json");
    let d = predictions(&case);
    let params = BootstrapParams {
        resamples: 500,
        seed: 3,
    };
    let r = paired_bootstrap(&d, &d, &params).unwrap();
    assert_eq!(r.song_f1.difference.value, 0.0);
    assert_eq!(r.song_f1.difference.ci95, [0.0, 0.0]);
    assert_eq!(r.slice_f1.difference.ci95, [0.0, 0.0]);
    assert_eq!(r.mcnemar.p_value, 1.0);
    assert_eq!((r.mcnemar.first_only, r.mcnemar.second_only), (0, 0));
    // A better second system: positive difference, and the paired interval is narrower than
    // the two single intervals put together.
    let mut better = SongPredictions::new(d.n_classes());
    for (k, s) in case["songs"].as_array().unwrap().iter().enumerate() {
        let label = s["label"].as_u64().unwrap() as usize;
        let slices: Vec<(usize, usize)> = s["slices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|_| (label, label))
            .collect();
        let predicted = if k % 3 == 0 {
            label
        } else {
            d.song_predictions()[k]
        };
        better.push_song(label, predicted, slices).unwrap();
    }
    let r = paired_bootstrap(&d, &better, &params).unwrap();
    assert!(
        r.song_f1.difference.value > 0.0 && r.song_f1.difference.ci95[0] > 0.0,
        "{r:?}"
    );
    assert!(r.mcnemar.second_only > 0 && r.mcnemar.first_only == 0);
    // Different songs are refused, naming the first that differs.
    let mut other = SongPredictions::new(d.n_classes());
    other.push_song(3, 3, [(3, 3)]).unwrap();
    let e = paired_bootstrap(&d, &other, &params).unwrap_err();
    assert!(e.to_string().contains("song 0 differs"), "{e}");
}
