//! SVG plots of the report (plotters): latency percentile curves on the
//! usual "nines" axis, latency on a log scale.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::stats::Point;

/// Rightmost position on the x axis: 99.999%; the maximum is drawn just past it.
const X_NINES: f64 = 5.0;
const X_MAX: f64 = 5.4;

/// Line colours, distinct in colour and in brightness (blue, vermilion,
/// green, orange, purple, grey).
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(213, 62, 79),
    RGBColor(44, 160, 44),
    RGBColor(230, 145, 0),
    RGBColor(118, 42, 131),
    RGBColor(90, 90, 90),
];

/// Position of a percentile on the x axis: `-log10(1 - p/100)`, so 90% is 1,
/// 99% is 2, 99.9% is 3; 100% (the maximum) goes at the right edge.
pub fn nines(pct: f64) -> f64 {
    if pct >= 100.0 {
        X_MAX
    } else {
        (-(1.0 - pct / 100.0).log10()).clamp(0.0, X_NINES)
    }
}

/// The label of an x position: `0%`, `90%`, `99%`, `99.9%`, ... and `max`.
pub fn nines_label(x: f64) -> String {
    if x > X_NINES + 0.2 {
        return "max".to_owned();
    }
    let n = x.round();
    if (x - n).abs() > 1e-6 || n < 0.0 {
        return String::new();
    }
    match n as u32 {
        0 => "0%".to_owned(),
        k => {
            let pct = 100.0 - 100.0 / 10f64.powi(k as i32);
            let s = format!("{pct:.5}");
            format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
        }
    }
}

/// One line of a plot.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// Legend.
    pub label: String,
    /// Curve points.
    pub points: &'a [Point],
}

/// Draws percentile curves (x: percentile, y: latency in µs, log scale) to an SVG file.
pub fn percentile_curves(path: &Path, title: &str, series: &[Series<'_>]) -> Result<()> {
    let values = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.us))
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return Err(anyhow!("nothing to plot for {title}"));
    }
    let (lo, hi) = (lo / 1.5, hi * 1.5);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..X_MAX + 0.1, (lo..hi).log_scale())
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_labels(12)
        .x_label_formatter(&|x| nines_label(*x))
        .y_label_formatter(&|y| crate::stats::fmt_us(*y))
        .x_desc("percentile")
        .y_desc("latency")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()].to_rgba();
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.us > 0.0)
            .map(|p| (nines(p.pct), p.us))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis_positions_and_labels() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(100.0), X_MAX);
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(5.0), "99.999%");
        assert_eq!(nines_label(1.5), "");
        assert_eq!(nines_label(X_MAX), "max");
    }

    #[test]
    fn curves_render_to_svg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        let pts: Vec<Point> = crate::stats::CURVE
            .iter()
            .map(|&pct| Point {
                pct,
                us: 10.0 + pct,
            })
            .collect();
        percentile_curves(
            &path,
            "test",
            &[Series {
                label: "a".into(),
                points: &pts,
            }],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
    }
}
