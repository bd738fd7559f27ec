//! SVG plots: round-trip percentiles per transport (one panel per message size) and
//! throughput by message size (messages/s and GB/s), all on log scales.

use std::path::Path;

use plotters::prelude::*;

use super::harness::Test;
use super::report::{Row, fmt_ns, fmt_rate, fmt_size};
use crate::CliError;

const FONT: &str = "sans-serif";
const PERCENTILES: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];

fn err(e: impl std::fmt::Display) -> CliError {
    format!("plot: {e}").into()
}

/// Distinct, readable colours; a transport keeps its colour in every panel and plot.
const COLOURS: [RGBColor; 18] = [
    RGBColor(0, 0, 0),
    RGBColor(110, 110, 110),
    RGBColor(228, 26, 28),
    RGBColor(55, 126, 184),
    RGBColor(77, 175, 74),
    RGBColor(152, 78, 163),
    RGBColor(255, 127, 0),
    RGBColor(166, 86, 40),
    RGBColor(247, 129, 191),
    RGBColor(0, 150, 150),
    RGBColor(180, 160, 0),
    RGBColor(31, 60, 120),
    RGBColor(140, 20, 60),
    RGBColor(0, 100, 0),
    RGBColor(100, 60, 180),
    RGBColor(200, 90, 90),
    RGBColor(60, 160, 220),
    RGBColor(120, 120, 40),
];

fn colour(names: &[String], name: &str) -> RGBColor {
    let i = names.iter().position(|n| n == name).unwrap_or(0);
    COLOURS[i % COLOURS.len()]
}

/// Draws a legend (a short line and the name per entry) into its own area, so it never
/// hides data.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    entries: &[(String, RGBColor)],
) -> Result<(), CliError> {
    for (i, (name, c)) in entries.iter().enumerate() {
        let y = 60 + 18 * i as i32;
        area.draw(&PathElement::new(vec![(4, y), (24, y)], c.stroke_width(3)))
            .map_err(err)?;
        area.draw(&Text::new(name.clone(), (30, y - 6), (FONT, 12)))
            .map_err(err)?;
    }
    Ok(())
}

fn names(rows: &[Row]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for r in rows {
        if !v.contains(&r.transport) {
            v.push(r.transport.clone());
        }
    }
    v
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    (lo.is_finite() && hi.is_finite()).then_some((lo / 1.5, hi * 1.5))
}

/// Round-trip percentiles, one panel per size.
pub fn latency(path: &Path, rows: &[Row]) -> Result<(), CliError> {
    let all = names(rows);
    let mut sizes: Vec<usize> = rows
        .iter()
        .filter(|r| r.test == Test::Latency && r.latency.is_some())
        .map(|r| r.size)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let root = SVGBackend::new(path, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            "shmring bench: round-trip latency percentiles (log scale)",
            (FONT, 22),
        )
        .map_err(err)?;
    if sizes.is_empty() {
        return root.present().map_err(err);
    }
    let cols = if sizes.len() > 1 { 2 } else { 1 };
    let panels = root.split_evenly((sizes.len().div_ceil(cols), cols));
    for (panel, &size) in panels.iter().zip(&sizes) {
        let w = panel.dim_in_pixel().0;
        let (area, key) = panel.split_horizontally(w * 76 / 100);
        let series: Vec<(&str, Vec<(f64, f64)>)> = rows
            .iter()
            .filter(|r| r.test == Test::Latency && r.size == size)
            .filter_map(|r| {
                let l = r.latency.as_ref()?;
                let v = [l.p50_ns, l.p90_ns, l.p99_ns, l.p999_ns, l.max_ns];
                Some((
                    r.transport.as_str(),
                    v.iter().enumerate().map(|(i, &y)| (i as f64, y)).collect(),
                ))
            })
            .collect();
        let Some((lo, hi)) = bounds(series.iter().flat_map(|(_, p)| p.iter().map(|p| p.1))) else {
            continue;
        };
        let mut chart = ChartBuilder::on(&area)
            .caption(format!("message size {}", fmt_size(size)), (FONT, 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(75)
            .build_cartesian_2d(-0.2f64..4.2f64, (lo..hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(5)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 0.01 && (0.0..5.0).contains(&i) {
                    PERCENTILES[i as usize].to_owned()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| fmt_ns(*y))
            .y_desc("round trip")
            .draw()
            .map_err(err)?;
        let mut entries = Vec::new();
        for (name, pts) in &series {
            let c = colour(&all, name);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?;
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(err)?;
            entries.push((name.to_string(), c));
        }
        legend(&key, &entries)?;
    }
    root.present().map_err(err)
}

/// Throughput by message size: msg/s and GB/s, log-log.
pub fn throughput(path: &Path, rows: &[Row]) -> Result<(), CliError> {
    let all = names(rows);
    let root = SVGBackend::new(path, (1400, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            "shmring bench: one-way throughput by message size (log scales)",
            (FONT, 22),
        )
        .map_err(err)?;
    let thr: Vec<&Row> = rows
        .iter()
        .filter(|r| r.test == Test::Throughput && r.throughput.is_some())
        .collect();
    let mut sizes: Vec<usize> = thr.iter().map(|r| r.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let (Some(&smallest), Some(&largest)) = (sizes.first(), sizes.last()) else {
        return root.present().map_err(err);
    };
    // x is log2(size) on a linear axis, so the ticks fall on the sizes measured.
    let lx = |s: usize| (s as f64).log2();
    let (xlo, xhi) = (lx(smallest) - 0.7, lx(largest) + 0.7);
    let (plots, key) = root.split_horizontally(root.dim_in_pixel().0 * 86 / 100);
    let panels = plots.split_evenly((1, 2));
    let mut entries = Vec::new();
    for (panel, gb) in panels.iter().zip([false, true]) {
        let value = |r: &Row| -> f64 {
            let t = r
                .throughput
                .as_ref()
                .map_or(f64::NAN, |t| if gb { t.gb_per_s } else { t.msgs_per_s });
            if t > 0.0 { t } else { f64::NAN }
        };
        let Some((lo, hi)) = bounds(thr.iter().map(|r| value(r))) else {
            continue;
        };
        let mut chart = ChartBuilder::on(panel)
            .caption(if gb { "GB/s (payload)" } else { "messages/s" }, (FONT, 18))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(75)
            .build_cartesian_2d(xlo..xhi, (lo..hi).log_scale())
            .map_err(err)?;
        let ticks = sizes.clone();
        chart
            .configure_mesh()
            .x_desc("message size (log scale)")
            .x_labels(((xhi - xlo).ceil() as usize + 1).max(2))
            .x_label_formatter(&|x| {
                ticks
                    .iter()
                    .find(|&&s| (lx(s) - x).abs() < 0.05)
                    .map_or_else(String::new, |&s| fmt_size(s))
            })
            .y_label_formatter(&|y| {
                if gb { format!("{y:.3}") } else { fmt_rate(*y) }
            })
            .draw()
            .map_err(err)?;
        for name in &all {
            let mut pts: Vec<(f64, f64)> = thr
                .iter()
                .filter(|r| &r.transport == name)
                .map(|r| (lx(r.size), value(r)))
                .filter(|p| p.1.is_finite())
                .collect();
            if pts.is_empty() {
                continue;
            }
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let c = colour(&all, name);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?;
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(err)?;
            if !gb {
                entries.push((name.clone(), c));
            }
        }
    }
    legend(&key, &entries)?;
    root.present().map_err(err)
}
