//! SVG plots for evaluation reports: precision-recall curves, a lead-time histogram, and a
//! score timeline around an incident. Each function writes one file and returns nothing else;
//! text is drawn as SVG `<text>`, so series names can be searched in the file.

use std::path::Path;

use plotters::prelude::*;

use crate::{PrPoint, TrainError};

const SIZE: (u32, u32) = (900, 600);

const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn plot_error(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Plot {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Several named precision-recall curves on one chart (recall on x, precision on y).
pub fn pr_curves(
    path: &Path,
    title: &str,
    curves: &[(&str, &[PrPoint])],
) -> Result<(), TrainError> {
    let err = |e: &dyn std::fmt::Display| plot_error(path, e);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0_f64..1.0_f64, 0.0_f64..1.02_f64)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("recall")
        .y_desc("precision")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, points)) in curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        // Start at recall 0 with the first point's precision, as PR plots do.
        let line = points
            .first()
            .map(|p| (0.0, p.precision))
            .into_iter()
            .chain(points.iter().map(|p| (p.recall, p.precision)));
        chart
            .draw_series(LineSeries::new(line, colour.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// A histogram of lead times in minutes (positive: alerted before the incident).
pub fn lead_time_histogram(
    path: &Path,
    title: &str,
    lead_seconds: &[f64],
    bins: usize,
) -> Result<(), TrainError> {
    let err = |e: &dyn std::fmt::Display| plot_error(path, e);
    let minutes: Vec<f64> = lead_seconds
        .iter()
        .filter(|v| v.is_finite())
        .map(|s| s / 60.0)
        .collect();
    let bins = bins.max(1);
    let (mut lo, mut hi) = minutes
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u32; bins];
    for v in &minutes {
        let b = (((v - lo) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(lo..hi, 0.0_f64..f64::from(top) * 1.1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("lead time (minutes before the incident)")
        .y_desc("incidents")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, &c)| {
            let x0 = lo + i as f64 * width;
            Rectangle::new(
                [(x0, 0.0), (x0 + width, f64::from(c))],
                COLOURS[0].mix(0.8).filled(),
            )
        }))
        .map_err(|e| err(&e))?
        .label(format!("lead time ({} incidents)", minutes.len()))
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], COLOURS[0].filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// A score over time with the alert threshold and labelled spans shaded; x in minutes from
/// the first point.
pub fn score_timeline(
    path: &Path,
    title: &str,
    timestamps_ms: &[i64],
    scores: &[f64],
    threshold: f64,
    spans_ms: &[(i64, i64)],
) -> Result<(), TrainError> {
    let err = |e: &dyn std::fmt::Display| plot_error(path, e);
    if timestamps_ms.len() != scores.len() {
        return Err(TrainError::Input(format!(
            "{} timestamps for {} scores",
            timestamps_ms.len(),
            scores.len()
        )));
    }
    let t0 = timestamps_ms.first().copied().unwrap_or(0);
    let minutes = |t: i64| (t - t0) as f64 / 60_000.0;
    let x_hi = timestamps_ms.last().map_or(1.0, |&t| minutes(t)).max(1e-3);
    let finite = scores.iter().copied().filter(|s| s.is_finite());
    let (mut lo, mut hi) = finite
        .chain(std::iter::once(threshold).filter(|t| t.is_finite()))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let (lo, hi) = (lo - pad, hi + pad);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0_f64..x_hi, lo..hi)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("score")
        .draw()
        .map_err(|e| err(&e))?;
    let shade = COLOURS[3].mix(0.2);
    chart
        .draw_series(spans_ms.iter().map(|&(a, b)| {
            Rectangle::new(
                [(minutes(a).max(0.0), lo), (minutes(b).min(x_hi), hi)],
                shade.filled(),
            )
        }))
        .map_err(|e| err(&e))?
        .label("labelled incident")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], shade.filled()));
    chart
        .draw_series(LineSeries::new(
            timestamps_ms
                .iter()
                .zip(scores)
                .filter(|(_, s)| s.is_finite())
                .map(|(&t, &s)| (minutes(t), s)),
            COLOURS[0].stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label("score")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLOURS[0]));
    chart
        .draw_series(LineSeries::new(
            [(0.0, threshold), (x_hi, threshold)],
            COLOURS[1].stroke_width(1),
        ))
        .map_err(|e| err(&e))?
        .label("threshold")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLOURS[1]));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
