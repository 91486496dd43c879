//! PNGs of scores with their intervals: curves with bands (F1 against slice length) and a
//! forest plot of differences (one row per class, a point and its interval).

use std::path::Path;

use plotters::prelude::*;

use crate::plot::{draw_png, plot_err};
use crate::{Error, Result};

/// One point of a [`Curve`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    /// Position on the x axis.
    pub x: f64,
    /// The value.
    pub value: f64,
    /// Its interval, drawn as a band.
    pub ci95: Option<[f64; 2]>,
}

/// One line of [`plot_curves`].
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// Points, drawn in x order.
    pub points: Vec<CurvePoint>,
    /// Drawn dashed and grey-toned (a reference line, e.g. another data set's numbers).
    pub reference: bool,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Lines with interval bands on a log-scaled x axis when `log_x` (slice lengths: 1-30 s),
/// y in [0, 1] (F1), a legend in the lower left.
pub fn plot_curves(
    path: &Path,
    curves: &[Curve],
    x_desc: &str,
    y_desc: &str,
    title: &str,
) -> Result<()> {
    let xs: Vec<f64> = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.x))
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    if xs.is_empty() {
        return Err(Error::Empty("curve points"));
    }
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min) * 0.8;
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max) * 1.25;
    draw_png(path, (900, 600), |root| {
        let e = |x| plot_err(path, x);
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d((lo..hi).log_scale(), 0f64..1f64)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(e)?;
        let mut colour = 0usize;
        for c in curves {
            let mut pts = c.points.clone();
            pts.sort_by(|a, b| a.x.total_cmp(&b.x));
            let col = if c.reference {
                RGBColor(110, 110, 110)
            } else {
                colour += 1;
                PALETTE[(colour - 1) % PALETTE.len()]
            };
            let band: Vec<(f64, [f64; 2])> = pts
                .iter()
                .filter_map(|p| p.ci95.map(|ci| (p.x, ci)))
                .collect();
            if band.len() >= 2 {
                let mut poly: Vec<(f64, f64)> = band.iter().map(|(x, ci)| (*x, ci[1])).collect();
                poly.extend(band.iter().rev().map(|(x, ci)| (*x, ci[0])));
                chart
                    .draw_series(std::iter::once(Polygon::new(poly, col.mix(0.18).filled())))
                    .map_err(e)?;
            } else {
                for (x, ci) in &band {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(*x, ci[0]), (*x, ci[1])],
                            col.stroke_width(2),
                        )))
                        .map_err(e)?;
                }
            }
            let line: Vec<(f64, f64)> = pts.iter().map(|p| (p.x, p.value)).collect();
            let style = col.stroke_width(if c.reference { 1 } else { 2 });
            let series = if c.reference {
                chart
                    .draw_series(DashedLineSeries::new(line.clone(), 6, 4, style))
                    .map_err(e)?
            } else {
                chart
                    .draw_series(LineSeries::new(line.clone(), style))
                    .map_err(e)?
            };
            series.label(c.label.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
            });
            chart
                .draw_series(
                    line.iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, col.filled())),
                )
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        Ok(())
    })
}

/// One row of [`plot_differences`].
#[derive(Debug, Clone, PartialEq)]
pub struct DifferenceRow {
    /// Row label (a class name, or "all songs").
    pub label: String,
    /// The difference.
    pub value: f64,
    /// Its interval.
    pub ci95: [f64; 2],
}

/// A forest plot: one row per entry, its difference as a point with its interval as a bar,
/// a vertical line at 0.
pub fn plot_differences(
    path: &Path,
    rows: &[DifferenceRow],
    x_desc: &str,
    title: &str,
) -> Result<()> {
    if rows.is_empty() {
        return Err(Error::Empty("difference rows"));
    }
    let extent = rows
        .iter()
        .flat_map(|r| [r.value.abs(), r.ci95[0].abs(), r.ci95[1].abs()])
        .filter(|v| v.is_finite())
        .fold(0.05f64, f64::max)
        * 1.1;
    let n = rows.len();
    let label_width = rows.iter().map(|r| r.label.len()).max().unwrap_or(8) as u32 * 8 + 20;
    let height = (80 + 28 * n as u32).max(240);
    draw_png(path, (760 + label_width, height), |root| {
        let e = |x| plot_err(path, x);
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(label_width)
            .build_cartesian_2d(-extent..extent, (0..n).into_segmented())
            .map_err(e)?;
        let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_labels(n)
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(i) => n
                    .checked_sub(1 + *i)
                    .and_then(|k| labels.get(k))
                    .cloned()
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .disable_y_mesh()
            .draw()
            .map_err(e)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, SegmentValue::Exact(0)), (0.0, SegmentValue::Last)],
                BLACK.stroke_width(1),
            )))
            .map_err(e)?;
        for (k, r) in rows.iter().enumerate() {
            let y = SegmentValue::CenterOf(n - 1 - k);
            let col = if r.ci95[0] > 0.0 {
                PALETTE[2]
            } else if r.ci95[1] < 0.0 {
                PALETTE[1]
            } else {
                PALETTE[0]
            };
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(r.ci95[0], y.clone()), (r.ci95[1], y.clone())],
                    col.stroke_width(3),
                )))
                .map_err(e)?;
            chart
                .draw_series(std::iter::once(Circle::new((r.value, y), 5, col.filled())))
                .map_err(e)?;
        }
        Ok(())
    })
}
