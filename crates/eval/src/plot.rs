//! PNG plots with plotters: confusion heatmap, t-SNE scatter, training curves. Files are drawn
//! through `atomic_file` (a temporary name, fsync, rename), so a reader never sees half a PNG.

use std::path::Path;

use ndarray::{Array2, ArrayView2};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{Error, Result};

pub use crate::plot_ci::{Curve, CurvePoint, DifferenceRow, plot_curves, plot_differences};

pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

pub(crate) fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Plot {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Draws into `path` through a temporary `.png` next to it ([`atomic_file::write_atomic`]).
pub(crate) fn draw_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Result<()>,
) -> Result<()> {
    atomic_file::write_atomic(path, |tmp| {
        let root = BitMapBackend::new(tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        draw(&root)?;
        root.present().map_err(|e| plot_err(path, e))
    })
    .map_err(|e| match e {
        atomic_file::Error::Write(e) => e,
        atomic_file::Error::Io { path, source, .. } => Error::Io { path, source },
    })
}

/// matplotlib's "Blues" from white to dark blue, `x` in [0, 1].
fn blues(x: f64) -> RGBColor {
    const STOPS: [(f64, [f64; 3]); 5] = [
        (0.0, [247.0, 251.0, 255.0]),
        (0.25, [198.0, 219.0, 239.0]),
        (0.5, [107.0, 174.0, 214.0]),
        (0.75, [33.0, 113.0, 181.0]),
        (1.0, [8.0, 48.0, 107.0]),
    ];
    let x = x.clamp(0.0, 1.0);
    let i = STOPS
        .iter()
        .rposition(|(s, _)| *s <= x)
        .unwrap_or(0)
        .min(STOPS.len() - 2);
    let (s0, c0) = STOPS[i];
    let (s1, c1) = STOPS[i + 1];
    let t = (x - s0) / (s1 - s0);
    let mix = |k: usize| (c0[k] + t * (c1[k] - c0[k])).round() as u8;
    RGBColor(mix(0), mix(1), mix(2))
}

/// 20 distinct colours (matplotlib "tab20"), cycled for more classes.
pub fn class_colour(class: usize) -> RGBColor {
    const TAB20: [(u8, u8, u8); 20] = [
        (31, 119, 180),
        (174, 199, 232),
        (255, 127, 14),
        (255, 187, 120),
        (44, 160, 44),
        (152, 223, 138),
        (214, 39, 40),
        (255, 152, 150),
        (148, 103, 189),
        (197, 176, 213),
        (140, 86, 75),
        (196, 156, 148),
        (227, 119, 194),
        (247, 182, 210),
        (127, 127, 127),
        (199, 199, 199),
        (188, 189, 34),
        (219, 219, 141),
        (23, 190, 207),
        (158, 218, 229),
    ];
    let (r, g, b) = TAB20[class % TAB20.len()];
    RGBColor(r, g, b)
}

/// Row-normalised confusion matrix as a heatmap (the paper's figures): true class down,
/// predicted class across, each cell's value printed, white text on dark cells.
pub fn plot_confusion(
    path: &Path,
    normalized: &Array2<f64>,
    class_names: &[String],
    title: &str,
) -> Result<()> {
    let n = normalized.nrows();
    if n == 0 || normalized.ncols() != n || class_names.len() != n {
        return Err(Error::Invalid {
            field: "confusion matrix",
            rule: format!(
                "must be square with one name per class: {:?}, {} names",
                normalized.dim(),
                class_names.len()
            ),
        });
    }
    let cell = (900 / n as u32).clamp(24, 60);
    let label_w = class_names
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(1) as u32
        * 9
        + 20;
    let (left, top) = (label_w + 40, 60);
    // Wide enough for the title too (22 px sans-serif: about 12 px a character), which
    // starts above the matrix and was clipped for small class counts.
    let title_w = title.chars().count() as u32 * 12 + 20;
    let size = (
        left + (cell * n as u32 + 40).max(title_w),
        top + cell * n as u32 + label_w + 40,
    );
    draw_png(path, size, |root| {
        let e = |x| plot_err(path, x);
        root.draw(&Text::new(
            title.to_string(),
            (left as i32, 20),
            ("sans-serif", 22).into_font(),
        ))
        .map_err(e)?;
        let font = ("sans-serif", (cell as f64 * 0.32).clamp(10.0, 16.0)).into_font();
        for i in 0..n {
            for j in 0..n {
                let v = normalized[[i, j]];
                let (x0, y0) = (
                    (left + j as u32 * cell) as i32,
                    (top + i as u32 * cell) as i32,
                );
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell as i32, y0 + cell as i32)],
                    blues(v).filled(),
                ))
                .map_err(e)?;
                let colour = if v > 0.5 { WHITE } else { BLACK };
                let style = font
                    .clone()
                    .color(&colour)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                root.draw(&Text::new(
                    format!("{v:.2}"),
                    (x0 + cell as i32 / 2, y0 + cell as i32 / 2),
                    style,
                ))
                .map_err(e)?;
            }
        }
        let label = ("sans-serif", 14).into_font();
        for (i, name) in class_names.iter().enumerate() {
            let yc = (top + i as u32 * cell + cell / 2) as i32;
            let style = TextStyle::from(label.clone()).pos(Pos::new(HPos::Right, VPos::Center));
            root.draw(&Text::new(name.clone(), (left as i32 - 6, yc), style))
                .map_err(e)?;
            let xc = (left + i as u32 * cell + cell / 2) as i32;
            let style = TextStyle::from(label.clone().transform(FontTransform::Rotate90))
                .pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(
                name.clone(),
                (xc, (top + n as u32 * cell + 6) as i32),
                style,
            ))
            .map_err(e)?;
        }
        let axis = ("sans-serif", 16).into_font();
        root.draw(&Text::new(
            "true artist".to_string(),
            (8, (top + n as u32 * cell / 2) as i32),
            TextStyle::from(axis.clone().transform(FontTransform::Rotate270))
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(e)?;
        root.draw(&Text::new(
            "predicted artist".to_string(),
            ((left + n as u32 * cell / 2) as i32, size.1 as i32 - 24),
            TextStyle::from(axis).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(e)?;
        Ok(())
    })
}

/// t-SNE (or any 2-D) scatter coloured by class, with a legend of class names.
pub fn plot_scatter(
    path: &Path,
    points: ArrayView2<'_, f32>,
    labels: &[usize],
    class_names: &[String],
    title: &str,
) -> Result<()> {
    if points.ncols() != 2 || points.nrows() != labels.len() || points.nrows() == 0 {
        return Err(Error::Invalid {
            field: "scatter points",
            rule: format!(
                "need [n, 2] points and n labels, got {:?} and {}",
                points.dim(),
                labels.len()
            ),
        });
    }
    crate::error::check_labels("labels", labels, class_names.len())?;
    let (mut lo, mut hi) = ([f32::MAX; 2], [f32::MIN; 2]);
    for row in points.outer_iter() {
        for k in 0..2 {
            lo[k] = lo[k].min(row[k]);
            hi[k] = hi[k].max(row[k]);
        }
    }
    let pad = |k: usize| ((hi[k] - lo[k]) * 0.05).max(1e-3);
    let (xr, yr) = (
        (lo[0] - pad(0))..(hi[0] + pad(0)),
        (lo[1] - pad(1))..(hi[1] + pad(1)),
    );
    draw_png(path, (1400, 1100), |root| {
        let e = |x| plot_err(path, x);
        let (plot, legend) = root.split_horizontally(1100);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 24))
            .margin(15)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(xr, yr)
            .map_err(e)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(e)?;
        chart
            .draw_series(
                points
                    .outer_iter()
                    .zip(labels)
                    .map(|(p, &c)| Circle::new((p[0], p[1]), 3, class_colour(c).filled())),
            )
            .map_err(e)?;
        legend
            .draw(&Text::new(
                "artist".to_string(),
                (10, 40),
                ("sans-serif", 18).into_font(),
            ))
            .map_err(e)?;
        for (c, name) in class_names.iter().enumerate() {
            let y = 70 + c as i32 * 24;
            legend
                .draw(&Circle::new((18, y + 7), 6, class_colour(c).filled()))
                .map_err(e)?;
            legend
                .draw(&Text::new(
                    name.clone(),
                    (32, y),
                    ("sans-serif", 15).into_font(),
                ))
                .map_err(e)?;
        }
        Ok(())
    })
}

/// One epoch of training history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochPoint {
    /// Training loss.
    pub loss: f64,
    /// Training accuracy.
    pub acc: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_acc: f64,
}

/// Loss (left) and accuracy (right) per epoch, training vs validation.
pub fn plot_training_curves(path: &Path, history: &[EpochPoint], title: &str) -> Result<()> {
    if history.is_empty() {
        return Err(Error::Empty("training history"));
    }
    let epochs = history.len() as f64;
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let max_loss = history
        .iter()
        .map(|h| finite(h.loss).max(finite(h.val_loss)))
        .fold(0.0, f64::max)
        * 1.05
        + 1e-6;
    draw_png(path, (1400, 560), |root| {
        let e = |x| plot_err(path, x);
        let root = root.titled(title, ("sans-serif", 22)).map_err(e)?;
        let (left, right) = root.split_horizontally(700);
        for (area, name, range, train, val) in [
            (
                &left,
                "loss",
                0.0..max_loss,
                (|h: &EpochPoint| h.loss) as fn(&EpochPoint) -> f64,
                (|h: &EpochPoint| h.val_loss) as fn(&EpochPoint) -> f64,
            ),
            (
                &right,
                "accuracy",
                0.0..1.0,
                |h: &EpochPoint| h.acc,
                |h: &EpochPoint| h.val_acc,
            ),
        ] {
            let mut chart = ChartBuilder::on(area)
                .margin(20)
                .x_label_area_size(40)
                .y_label_area_size(55)
                .build_cartesian_2d(1f64..epochs.max(2.0), range)
                .map_err(e)?;
            // Epochs are whole numbers: at most 12 ticks, and none between two epochs.
            let whole = |x: &f64| {
                if (x - x.round()).abs() < 1e-9 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            };
            chart
                .configure_mesh()
                .x_labels((epochs as usize).clamp(2, 12))
                .x_label_formatter(&whole)
                .x_desc("epoch")
                .y_desc(name)
                .draw()
                .map_err(e)?;
            for (label, f, colour) in [("train", train, BLUE), ("validation", val, RED)] {
                chart
                    .draw_series(LineSeries::new(
                        history
                            .iter()
                            .enumerate()
                            .map(|(i, h)| (i as f64 + 1.0, finite(f(h)))),
                        colour.stroke_width(2),
                    ))
                    .map_err(e)?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(e)?;
        }
        Ok(())
    })
}
