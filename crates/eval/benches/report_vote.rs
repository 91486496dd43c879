//! Classification report + song vote on 100k slices x 20 classes.

use criterion::{Criterion, criterion_group, criterion_main};
use eval::{ClassificationReport, VoteRule, song_vote};
use ndarray::Array2;

fn bench(c: &mut Criterion) {
    let (n, k) = (100_000usize, 20usize);
    let mut state = 7u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f32 / (1u64 << 31) as f32
    };
    let mut probs = Array2::<f32>::zeros((n, k));
    for mut row in probs.outer_iter_mut() {
        row.iter_mut().for_each(|p| *p = next());
        let s: f32 = row.sum();
        row /= s;
    }
    let song: Vec<usize> = (0..n).map(|i| i / 50).collect(); // 2,000 songs of 50 slices
    let y_true: Vec<usize> = (0..n).map(|i| (i / 50) % k).collect();
    let y_pred: Vec<usize> = probs
        .outer_iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &p)| if p > b.1 { (i, p) } else { b })
                .0
        })
        .collect();
    let names: Vec<String> = (0..k).map(|i| format!("artist_{i}")).collect();
    c.bench_function("report_100k_slices_20_classes", |b| {
        b.iter(|| ClassificationReport::new(&y_true, &y_pred, &names).expect("report"))
    });
    c.bench_function("song_vote_paper_100k_slices", |b| {
        b.iter(|| song_vote(probs.view(), &song, VoteRule::Paper).expect("vote"))
    });
    c.bench_function("song_vote_mean_100k_slices", |b| {
        b.iter(|| song_vote(probs.view(), &song, VoteRule::MeanProbability).expect("vote"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
