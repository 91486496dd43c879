//! t-SNE judged by outcome (1-NN accuracy on seeded Gaussian blobs), determinism on one
//! thread, and the plots checked for existence and pixel size (not pixels).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eval::plot::{EpochPoint, plot_confusion, plot_scatter, plot_training_curves};
use eval::{Error, TsneConfig, confusion_matrix, normalize_rows, tsne};
use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// `k` blobs of `per` points in 32-D, centres 4 apart, unit spread.
fn blobs(k: usize, per: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    let centres: Vec<Vec<f32>> = (0..k)
        .map(|_| (0..32).map(|_| 4.0 * normal.sample(&mut rng)).collect())
        .collect();
    let mut x = Array2::zeros((k * per, 32));
    let mut labels = Vec::new();
    for c in 0..k {
        for i in 0..per {
            for d in 0..32 {
                x[[c * per + i, d]] = centres[c][d] + normal.sample(&mut rng);
            }
            labels.push(c);
        }
    }
    (x, labels)
}

fn one_nn_accuracy(y: ArrayView2<'_, f32>, labels: &[usize]) -> f64 {
    let n = y.nrows();
    let mut correct = 0;
    for i in 0..n {
        let mut best = (f32::MAX, 0);
        for j in 0..n {
            if i != j {
                let d = (y[[i, 0]] - y[[j, 0]]).powi(2) + (y[[i, 1]] - y[[j, 1]]).powi(2);
                if d < best.0 {
                    best = (d, j);
                }
            }
        }
        correct += usize::from(labels[best.1] == labels[i]);
    }
    correct as f64 / n as f64
}

#[test]
fn tsne_separates_blobs() {
    let (x, labels) = blobs(6, 60, 3);
    let y = tsne(x.view(), &TsneConfig::default()).unwrap();
    assert_eq!(y.dim(), (360, 2));
    let acc = one_nn_accuracy(y.view(), &labels);
    assert!(acc > 0.95, "1-NN accuracy in 2-D {acc}");
}

#[test]
fn tsne_repeats_on_one_thread() {
    let (x, _) = blobs(3, 40, 5);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let cfg = TsneConfig {
        epochs: 300,
        seed: 11,
        ..TsneConfig::default()
    };
    let a = pool.install(|| tsne(x.view(), &cfg)).unwrap();
    let b = pool.install(|| tsne(x.view(), &cfg)).unwrap();
    assert_eq!(a, b);
    let c = pool
        .install(|| {
            tsne(
                x.view(),
                &TsneConfig {
                    seed: 12,
                    ..cfg.clone()
                },
            )
        })
        .unwrap();
    assert_ne!(a, c);
}

#[test]
fn tsne_refuses_too_few_points() {
    let (x, _) = blobs(2, 40, 1); // 80 points: 79 < 3 * 30
    let err = tsne(x.view(), &TsneConfig::default()).unwrap_err();
    assert!(
        matches!(err, Error::TooFewSamples { n_samples: 80, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("perplexity"), "{err}");
    assert!(
        tsne(
            x.view(),
            &TsneConfig {
                perplexity: 20.0,
                epochs: 50,
                ..TsneConfig::default()
            }
        )
        .is_ok()
    );
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &std::path::Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[test]
fn plots_are_written_with_their_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("artist_number_{i:02}")).collect();
    let t: Vec<usize> = (0..400).map(|i| i % 20).collect();
    let p: Vec<usize> = (0..400)
        .map(|i| if i % 3 == 0 { (i + 1) % 20 } else { i % 20 })
        .collect();
    let cm = normalize_rows(&confusion_matrix(&t, &p, 20).unwrap());
    let path = dir.path().join("confusion.png");
    plot_confusion(&path, &cm, &names, "slice level").unwrap();
    let (w, h) = png_size(&path);
    assert!(w > 900 && h > 900 && w < 2000 && h < 2000, "{w}x{h}");

    let (x, labels) = blobs(20, 10, 2);
    let pts = x.slice(ndarray::s![.., 0..2]).to_owned();
    let path = dir.path().join("tsne.png");
    plot_scatter(&path, pts.view(), &labels, &names, "t-SNE").unwrap();
    assert_eq!(png_size(&path), (1400, 1100));

    let history: Vec<EpochPoint> = (0..12)
        .map(|e| {
            let e = f64::from(e);
            EpochPoint {
                loss: 3.0 / (1.0 + e),
                acc: 0.1 + 0.07 * e,
                val_loss: 3.2 / (1.0 + e),
                val_acc: 0.05 * e,
            }
        })
        .collect();
    let path = dir.path().join("curves.png");
    plot_training_curves(&path, &history, "training").unwrap();
    assert_eq!(png_size(&path), (1400, 560));
    // No temporary files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn bad_plot_inputs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["a".to_string(), "b".to_string()];
    let cm = Array2::<f64>::zeros((3, 3));
    assert!(plot_confusion(&dir.path().join("x.png"), &cm, &names, "t").is_err());
    assert!(plot_training_curves(&dir.path().join("y.png"), &[], "t").is_err());
    let pts = Array2::<f32>::zeros((2, 2));
    assert!(plot_scatter(&dir.path().join("z.png"), pts.view(), &[0, 5], &names, "t").is_err());
}

#[test]
fn a_long_title_widens_a_small_confusion_plot() {
    // Five classes draw a ~470 px wide matrix; the experiment's title is longer than that.
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..5).map(|i| format!("artist_{i}")).collect();
    let t: Vec<usize> = (0..50).map(|i| i % 5).collect();
    let cm = normalize_rows(&confusion_matrix(&t, &t, 5).unwrap());
    let path = dir.path().join("confusion.png");
    let title = "Slice level: song split, 94 frames, seed 0";
    plot_confusion(&path, &cm, &names, title).unwrap();
    let (w, _) = png_size(&path);
    assert!(
        w as usize >= title.len() * 12,
        "{w} px for a {}-character title",
        title.len()
    );
}

#[test]
fn interval_plots_are_drawn() {
    use eval::plot::{Curve, CurvePoint, DifferenceRow, plot_curves, plot_differences};
    let dir = tempfile::tempdir().unwrap();
    let point = |x: f64, v: f64, band: bool| CurvePoint {
        x,
        value: v,
        ci95: band.then_some([v - 0.1, v + 0.1]),
    };
    let curves = vec![
        Curve {
            label: "song level".into(),
            points: vec![
                point(1.0, 0.5, true),
                point(3.0, 0.6, true),
                point(29.0, 0.55, true),
            ],
            reference: false,
        },
        Curve {
            label: "paper (another data set)".into(),
            points: vec![point(1.0, 0.93, false), point(3.0, 0.94, false)],
            reference: true,
        },
    ];
    let path = dir.path().join("curves.png");
    plot_curves(
        &path,
        &curves,
        "slice length (s)",
        "F1",
        "F1 against length",
    )
    .unwrap();
    assert_eq!(png_size(&path), (900, 600));
    let rows: Vec<DifferenceRow> = (0..5)
        .map(|i| DifferenceRow {
            label: format!("artist_{i}"),
            value: 0.1 * i as f64 - 0.2,
            ci95: [0.1 * i as f64 - 0.35, 0.1 * i as f64 - 0.05],
        })
        .collect();
    let path = dir.path().join("diff.png");
    plot_differences(&path, &rows, "B - A", "differences").unwrap();
    let (w, h) = png_size(&path);
    assert!(w > 760 && h >= 240, "{w}x{h}");
    assert!(plot_differences(&path, &[], "x", "t").is_err());
    assert!(plot_curves(&path, &[], "x", "y", "t").is_err());
}
