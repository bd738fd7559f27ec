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

/// A stable colour per transport name, the same in every panel and plot.
fn colour(names: &[String], name: &str) -> RGBColor {
    let i = names.iter().position(|n| n == name).unwrap_or(0);
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
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
    for (area, &size) in panels.iter().zip(&sizes) {
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
        let mut chart = ChartBuilder::on(area)
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
        for (name, pts) in &series {
            let c = colour(&all, name);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 11))
            .draw()
            .map_err(err)?;
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
    let panels = root.split_evenly((1, 2));
    let thr: Vec<&Row> = rows
        .iter()
        .filter(|r| r.test == Test::Throughput && r.throughput.is_some())
        .collect();
    let Some((xlo, xhi)) = bounds(thr.iter().map(|r| r.size as f64)) else {
        return root.present().map_err(err);
    };
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
            .build_cartesian_2d((xlo..xhi).log_scale(), (lo..hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("message size")
            .x_label_formatter(&|x| fmt_size(x.round() as usize))
            .y_label_formatter(&|y| {
                if gb { format!("{y:.3}") } else { fmt_rate(*y) }
            })
            .draw()
            .map_err(err)?;
        for name in &all {
            let mut pts: Vec<(f64, f64)> = thr
                .iter()
                .filter(|r| &r.transport == name)
                .map(|r| (r.size as f64, value(r)))
                .filter(|p| p.1.is_finite())
                .collect();
            if pts.is_empty() {
                continue;
            }
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let c = colour(&all, name);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(if gb {
                SeriesLabelPosition::UpperLeft
            } else {
                SeriesLabelPosition::LowerLeft
            })
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 11))
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}
