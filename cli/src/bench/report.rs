//! Turning repetitions into rows: medians, spreads, ratios; the terminal tables; and the files
//! results.json, results.csv and summary.md.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::harness::Test;
use super::sys::Machine;
use super::transports::{Family, Transport};
use super::{Case, Settings, Status};
use crate::CliError;

/// Round-trip figures: medians over repetitions (max: the largest seen), in ns.
#[derive(Clone, Debug, Serialize)]
pub struct Lat {
    pub p50_ns: f64,
    pub p90_ns: f64,
    pub p99_ns: f64,
    pub p999_ns: f64,
    pub max_ns: f64,
    /// Smallest and largest per-repetition p50.
    pub p50_min_ns: f64,
    pub p50_max_ns: f64,
    /// Round trips timed, all repetitions.
    pub samples: u64,
}

/// One-way figures: medians over repetitions.
#[derive(Clone, Debug, Serialize)]
pub struct Thr {
    pub msgs_per_s: f64,
    pub gb_per_s: f64,
    pub msgs_per_s_min: f64,
    pub msgs_per_s_max: f64,
    /// Messages received in the measured stretches, all repetitions.
    pub messages: u64,
}

/// One repetition, as recorded.
#[derive(Clone, Debug, Serialize)]
pub struct RepRecord {
    pub msgs: u64,
    pub elapsed_ns: u64,
    pub parent_vcsw: i64,
    pub peer_vcsw: i64,
    pub parent_ivcsw: i64,
    pub peer_ivcsw: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgs_per_s: Option<f64>,
}

/// One transport × test × size.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub transport: String,
    pub family: Family,
    pub test: Test,
    pub size: usize,
    /// "ok", "n/a" or "failed".
    pub status: String,
    pub reason: Option<String>,
    pub latency: Option<Lat>,
    pub throughput: Option<Thr>,
    /// Voluntary context switches of both processes per 1000 messages (one-way) or round
    /// trips, median over repetitions.
    pub vcsw_per_1k: Option<f64>,
    pub vcsw_parent_per_1k: Option<f64>,
    pub vcsw_peer_per_1k: Option<f64>,
    pub ivcsw_per_1k: Option<f64>,
    /// Latency: p50 ÷ pipe's p50 (lower is better). Throughput: msg/s ÷ pipe's (higher is
    /// better).
    pub ratio_to_pipe: Option<f64>,
    /// Latency: p50 ÷ floor-spin's 8 B p50. Throughput: msg/s ÷ floor-memcpy's at this size.
    pub ratio_to_floor: Option<f64>,
    pub reps: Vec<RepRecord>,
}

impl Row {
    fn ok(&self) -> bool {
        self.status == "ok"
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        })
}

/// Aggregates every case into a row, then fills in the ratios.
pub fn rows(cases: &[Case]) -> Vec<Row> {
    let mut rows: Vec<Row> = cases.iter().map(row).collect();
    let find = |rows: &[Row], name: &str, test: Test, size: usize| -> Option<Row> {
        rows.iter()
            .find(|r| r.transport == name && r.test == test && r.size == size && r.ok())
            .cloned()
    };
    let floor_rt = find(&rows, "floor-spin", Test::Latency, 8).and_then(|r| r.latency);
    let snapshot = rows.clone();
    for r in rows.iter_mut().filter(|r| r.ok()) {
        match r.test {
            Test::Latency => {
                let Some(l) = &r.latency else { continue };
                r.ratio_to_pipe = find(&snapshot, "pipe", Test::Latency, r.size)
                    .and_then(|p| p.latency)
                    .map(|p| l.p50_ns / p.p50_ns);
                r.ratio_to_floor = floor_rt.as_ref().map(|f| l.p50_ns / f.p50_ns);
            }
            Test::Throughput => {
                let Some(t) = &r.throughput else { continue };
                r.ratio_to_pipe = find(&snapshot, "pipe", Test::Throughput, r.size)
                    .and_then(|p| p.throughput)
                    .map(|p| t.msgs_per_s / p.msgs_per_s);
                r.ratio_to_floor = find(&snapshot, "floor-memcpy", Test::Throughput, r.size)
                    .and_then(|p| p.throughput)
                    .map(|p| t.msgs_per_s / p.msgs_per_s);
            }
        }
    }
    rows
}

fn row(c: &Case) -> Row {
    let (status, reason) = match &c.status {
        Status::Ok => ("ok", None),
        Status::NotApplicable(w) => ("n/a", Some(w.clone())),
        Status::Failed(w) => ("failed", Some(w.clone())),
    };
    let mut r = Row {
        transport: c.transport.name().to_owned(),
        family: c.transport.family(),
        test: c.job.test,
        size: c.job.size,
        status: status.to_owned(),
        reason,
        latency: None,
        throughput: None,
        vcsw_per_1k: None,
        vcsw_parent_per_1k: None,
        vcsw_peer_per_1k: None,
        ivcsw_per_1k: None,
        ratio_to_pipe: None,
        ratio_to_floor: None,
        reps: Vec::new(),
    };
    if c.status != Status::Ok || c.reps.is_empty() {
        return r;
    }
    // Messages (or round trips) that the switch counts are divided by.
    let counted = |rep: &super::Rep| -> f64 {
        match c.job.test {
            Test::Latency => rep.parent.msgs as f64,
            Test::Throughput if rep.peer.msgs > 0 => rep.peer.msgs as f64,
            Test::Throughput => rep.parent.msgs as f64,
        }
        .max(1.0)
    };
    let per_1k = |f: &dyn Fn(&super::Rep) -> i64| -> f64 {
        let mut v: Vec<f64> = c
            .reps
            .iter()
            .map(|rep| f(rep) as f64 * 1000.0 / counted(rep))
            .collect();
        median(&mut v)
    };
    r.vcsw_per_1k = Some(per_1k(&|x| x.parent.vcsw + x.peer.vcsw));
    r.vcsw_parent_per_1k = Some(per_1k(&|x| x.parent.vcsw));
    r.vcsw_peer_per_1k = Some(per_1k(&|x| x.peer.vcsw));
    r.ivcsw_per_1k = Some(per_1k(&|x| x.parent.ivcsw + x.peer.ivcsw));
    for rep in &c.reps {
        let h = rep.hist.as_ref();
        let side = if c.job.test == Test::Throughput && rep.peer.msgs > 0 {
            rep.peer
        } else {
            rep.parent
        };
        r.reps.push(RepRecord {
            msgs: side.msgs,
            elapsed_ns: side.elapsed_ns,
            parent_vcsw: rep.parent.vcsw,
            peer_vcsw: rep.peer.vcsw,
            parent_ivcsw: rep.parent.ivcsw,
            peer_ivcsw: rep.peer.ivcsw,
            p50_ns: h.map(|h| h.value_at_quantile(0.5)),
            p99_ns: h.map(|h| h.value_at_quantile(0.99)),
            max_ns: h.map(|h| h.max()),
            msgs_per_s: (c.job.test == Test::Throughput)
                .then(|| side.msgs as f64 / (side.elapsed_ns.max(1) as f64 / 1e9)),
        });
    }
    match c.job.test {
        Test::Latency => {
            let q = |p: f64| -> Vec<f64> {
                c.reps
                    .iter()
                    .filter_map(|x| x.hist.as_ref())
                    .map(|h| h.value_at_quantile(p) as f64)
                    .collect()
            };
            let mut p50 = q(0.5);
            let (lo, hi) = min_max(&p50);
            let max = c
                .reps
                .iter()
                .filter_map(|x| x.hist.as_ref())
                .map(|h| h.max() as f64)
                .fold(0.0, f64::max);
            r.latency = Some(Lat {
                p50_ns: median(&mut p50),
                p90_ns: median(&mut q(0.9)),
                p99_ns: median(&mut q(0.99)),
                p999_ns: median(&mut q(0.999)),
                max_ns: max,
                p50_min_ns: lo,
                p50_max_ns: hi,
                samples: c
                    .reps
                    .iter()
                    .filter_map(|x| x.hist.as_ref())
                    .map(|h| h.len())
                    .sum(),
            });
        }
        Test::Throughput => {
            let mut rates: Vec<f64> = r.reps.iter().filter_map(|x| x.msgs_per_s).collect();
            let (lo, hi) = min_max(&rates);
            let m = median(&mut rates);
            r.throughput = Some(Thr {
                msgs_per_s: m,
                gb_per_s: m * c.job.size as f64 / 1e9,
                msgs_per_s_min: lo,
                msgs_per_s_max: hi,
                messages: r.reps.iter().map(|x| x.msgs).sum(),
            });
        }
    }
    r
}

/// `8 B`, `64 B`, `1 KiB`, `64 KiB`, `1 MiB`, or bytes.
pub fn fmt_size(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

/// A duration in ns, µs or ms with three significant digits.
pub fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "-".into()
    } else if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e4 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// A rate in messages per second.
pub fn fmt_rate(r: f64) -> String {
    if !r.is_finite() {
        "-".into()
    } else if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(x) if x >= 100.0 => format!("{x:.0}×"),
        Some(x) if x >= 10.0 => format!("{x:.1}×"),
        Some(x) => format!("{x:.2}×"),
        None => "-".into(),
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

/// Both tables as text for the terminal.
pub fn terminal_tables(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nROUND TRIP (ping-pong; medians over repetitions; max = largest seen; \
         ÷pipe and ÷floor: p50 divided by pipe's p50 and by floor-spin's 8 B p50, lower is better)"
    );
    let _ = writeln!(
        s,
        "{:<17} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>21} {:>9} {:>8} {:>8}",
        "transport",
        "size",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "p50 spread",
        "vcsw/1k",
        "÷pipe",
        "÷floor"
    );
    for r in rows.iter().filter(|r| r.test == Test::Latency) {
        let _ = write!(s, "{:<17} {:>7} ", r.transport, fmt_size(r.size));
        match &r.latency {
            Some(l) if r.ok() => {
                let _ = writeln!(
                    s,
                    "{:>9} {:>9} {:>9} {:>9} {:>9} {:>21} {:>9} {:>8} {:>8}",
                    fmt_ns(l.p50_ns),
                    fmt_ns(l.p90_ns),
                    fmt_ns(l.p99_ns),
                    fmt_ns(l.p999_ns),
                    fmt_ns(l.max_ns),
                    format!("{}–{}", fmt_ns(l.p50_min_ns), fmt_ns(l.p50_max_ns)),
                    fmt_opt(r.vcsw_per_1k, 1),
                    fmt_ratio(r.ratio_to_pipe),
                    fmt_ratio(r.ratio_to_floor),
                );
            }
            _ => {
                let _ = writeln!(s, "{}", status_text(r));
            }
        }
    }
    let _ = writeln!(
        s,
        "\nONE-WAY THROUGHPUT (receiver-timed; medians over repetitions; ×pipe and ×memcpy: \
         msg/s divided by pipe's and by floor-memcpy's at the same size, higher is better)"
    );
    let _ = writeln!(
        s,
        "{:<17} {:>7} {:>11} {:>9} {:>23} {:>9} {:>8} {:>8}",
        "transport", "size", "msg/s", "GB/s", "msg/s spread", "vcsw/1k", "×pipe", "×memcpy"
    );
    for r in rows.iter().filter(|r| r.test == Test::Throughput) {
        let _ = write!(s, "{:<17} {:>7} ", r.transport, fmt_size(r.size));
        match &r.throughput {
            Some(t) if r.ok() => {
                let _ = writeln!(
                    s,
                    "{:>11} {:>9.3} {:>23} {:>9} {:>8} {:>8}",
                    fmt_rate(t.msgs_per_s),
                    t.gb_per_s,
                    format!(
                        "{}–{}",
                        fmt_rate(t.msgs_per_s_min),
                        fmt_rate(t.msgs_per_s_max)
                    ),
                    fmt_opt(r.vcsw_per_1k, 2),
                    fmt_ratio(r.ratio_to_pipe),
                    fmt_ratio(r.ratio_to_floor),
                );
            }
            _ => {
                let _ = writeln!(s, "{}", status_text(r));
            }
        }
    }
    s
}

fn status_text(r: &Row) -> String {
    match (r.status.as_str(), &r.reason) {
        ("failed", Some(w)) => format!("FAILED: {w}"),
        ("n/a", Some(w)) => format!("n/a: {w}"),
        (st, _) => st.to_owned(),
    }
}

#[derive(Serialize)]
struct TransportInfo {
    name: &'static str,
    family: Family,
    measures: &'static str,
}

#[derive(Serialize)]
struct Results<'a> {
    machine: &'a Machine,
    settings: &'a Settings,
    runtime_s: f64,
    transports: Vec<TransportInfo>,
    rows: &'a [Row],
    targets: &'a [Target],
}

/// Writes results.json, results.csv and summary.md.
pub fn write_all(
    dir: &Path,
    rows: &[Row],
    machine: &Machine,
    settings: &Settings,
    runtime: Duration,
    transports: &[&'static dyn Transport],
) -> Result<(), CliError> {
    let targets = targets(rows);
    let info: Vec<TransportInfo> = transports
        .iter()
        .map(|t| TransportInfo {
            name: t.name(),
            family: t.family(),
            measures: t.about(),
        })
        .collect();
    let results = Results {
        machine,
        settings,
        runtime_s: runtime.as_secs_f64(),
        transports: info,
        rows,
        targets: &targets,
    };
    let json = serde_json::to_string_pretty(&results)?;
    write(dir, "results.json", &json)?;
    write(dir, "results.csv", &csv(rows)?)?;
    let md = summary(rows, machine, settings, runtime, transports, &targets);
    write(dir, "summary.md", &md)?;
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), CliError> {
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()).into())
}

fn csv(rows: &[Row]) -> Result<String, CliError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "transport",
        "family",
        "test",
        "size_bytes",
        "status",
        "reason",
        "reps",
        "p50_ns",
        "p90_ns",
        "p99_ns",
        "p999_ns",
        "max_ns",
        "p50_min_ns",
        "p50_max_ns",
        "msgs_per_s",
        "msgs_per_s_min",
        "msgs_per_s_max",
        "gb_per_s",
        "vcsw_per_1k",
        "ivcsw_per_1k",
        "ratio_to_pipe",
        "ratio_to_floor",
    ])?;
    let f = |v: Option<f64>| v.map_or_else(String::new, |x| format!("{x}"));
    for r in rows {
        let l = r.latency.as_ref();
        let t = r.throughput.as_ref();
        w.write_record([
            r.transport.clone(),
            format!("{:?}", r.family).to_lowercase(),
            format!("{:?}", r.test).to_lowercase(),
            r.size.to_string(),
            r.status.clone(),
            r.reason.clone().unwrap_or_default(),
            r.reps.len().to_string(),
            f(l.map(|l| l.p50_ns)),
            f(l.map(|l| l.p90_ns)),
            f(l.map(|l| l.p99_ns)),
            f(l.map(|l| l.p999_ns)),
            f(l.map(|l| l.max_ns)),
            f(l.map(|l| l.p50_min_ns)),
            f(l.map(|l| l.p50_max_ns)),
            f(t.map(|t| t.msgs_per_s)),
            f(t.map(|t| t.msgs_per_s_min)),
            f(t.map(|t| t.msgs_per_s_max)),
            f(t.map(|t| t.gb_per_s)),
            f(r.vcsw_per_1k),
            f(r.ivcsw_per_1k),
            f(r.ratio_to_pipe),
            f(r.ratio_to_floor),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| format!("csv: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("csv: {e}").into())
}

/// One target of the issue, checked against this run.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub target: String,
    pub measured: String,
    /// "met", "missed" or "not measured".
    pub verdict: String,
}

fn row_of<'a>(rows: &'a [Row], t: &str, test: Test, size: usize) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.transport == t && r.test == test && r.size == size && r.ok())
}

fn lat(rows: &[Row], t: &str, size: usize) -> Option<f64> {
    rows.iter()
        .find(|r| r.transport == t && r.test == Test::Latency && r.size == size && r.ok())
        .and_then(|r| r.latency.as_ref().map(|l| l.p50_ns))
}

fn thr(rows: &[Row], t: &str, size: usize) -> Option<f64> {
    rows.iter()
        .find(|r| r.transport == t && r.test == Test::Throughput && r.size == size && r.ok())
        .and_then(|r| r.throughput.as_ref().map(|x| x.msgs_per_s))
}

fn verdict(ok: Option<bool>) -> String {
    match ok {
        Some(true) => "met".into(),
        Some(false) => "MISSED".into(),
        None => "not measured".into(),
    }
}

/// Checks the targets against the rows.
pub fn targets(rows: &[Row]) -> Vec<Target> {
    let mut out = Vec::new();
    let floor = lat(rows, "floor-spin", 8);
    for (t, size, bound) in [
        ("shmring-spin", 8, 1.3),
        ("shmring-adaptive", 8, 1.5),
        ("shmring-spin", 1024, 2.0),
        ("shmring-adaptive", 1024, 2.5),
    ] {
        let v = lat(rows, t, size);
        let ratio = v.zip(floor).map(|(v, f)| v / f);
        out.push(Target {
            target: format!(
                "round trip {t} {}: p50 ≤ {bound}× floor-spin",
                fmt_size(size)
            ),
            measured: match (v, ratio) {
                (Some(v), Some(r)) => format!(
                    "{} = {r:.2}× floor ({})",
                    fmt_ns(v),
                    fmt_ns(floor.unwrap_or(f64::NAN))
                ),
                _ => "-".into(),
            },
            verdict: verdict(ratio.map(|r| r <= bound)),
        });
    }
    for t in ["shmring-spin", "shmring-adaptive"] {
        for size in [8, 1024] {
            let v = lat(rows, t, size);
            let p = lat(rows, "pipe", size);
            let ratio = v.zip(p).map(|(v, p)| p / v);
            out.push(Target {
                target: format!("round trip {t} {}: ≥ 100× better than pipe", fmt_size(size)),
                measured: ratio.map_or("-".into(), |r| format!("pipe p50 ÷ this p50 = {r:.0}×")),
                verdict: verdict(ratio.map(|r| r >= 100.0)),
            });
        }
    }
    {
        // Met if every size's p50 is at most pipe's; "within noise" if it is at most the
        // largest p50 pipe itself showed over the repetitions.
        let mut parts = Vec::new();
        let mut verdict_all = Some("met");
        for size in [8, 64, 1024, 64 << 10] {
            let b = lat(rows, "shmring-block", size);
            let p = row_of(rows, "pipe", Test::Latency, size).and_then(|r| r.latency.clone());
            match (b, p) {
                (Some(b), Some(p)) => {
                    parts.push(format!(
                        "{}: {} vs {} ({}–{})",
                        fmt_size(size),
                        fmt_ns(b),
                        fmt_ns(p.p50_ns),
                        fmt_ns(p.p50_min_ns),
                        fmt_ns(p.p50_max_ns)
                    ));
                    let v = if b <= p.p50_ns {
                        "met"
                    } else if b <= p.p50_max_ns {
                        "within pipe's spread"
                    } else {
                        "MISSED"
                    };
                    verdict_all = verdict_all.map(|a| match (a, v) {
                        ("MISSED", _) | (_, "MISSED") => "MISSED",
                        ("met", "met") => "met",
                        _ => "within pipe's spread",
                    });
                }
                _ => verdict_all = None,
            }
        }
        out.push(Target {
            target: "round trip shmring-block (peer asleep): p50 no worse than pipe (pipe's p50 spread in brackets)".into(),
            measured: parts.join("; "),
            verdict: verdict_all.unwrap_or("not measured").into(),
        });
    }
    for (t, size, bound) in [
        ("shmring-spin", 64, 40e6),
        ("shmring-adaptive", 64, 40e6),
        ("shmring-batch", 64, 50e6),
        ("shmring-spin", 8, 60e6),
        ("shmring-adaptive", 8, 60e6),
        ("shmring-batch", 8, 150e6),
        ("shmring-many", 8, 150e6),
    ] {
        let v = thr(rows, t, size);
        out.push(Target {
            target: format!(
                "streaming {t} {}: ≥ {:.0} M msg/s",
                fmt_size(size),
                bound / 1e6
            ),
            measured: v.map_or("-".into(), |v| format!("{:.1} M msg/s", v / 1e6)),
            verdict: verdict(v.map(|v| v >= bound)),
        });
    }
    {
        let v = thr(rows, "shmring-batch", 64);
        let p = thr(rows, "pipe", 64);
        let r = v.zip(p).map(|(v, p)| v / p);
        out.push(Target {
            target: "streaming shmring-batch 64 B: ≥ 30× pipe".into(),
            measured: r.map_or("-".into(), |r| format!("{r:.1}× pipe")),
            verdict: verdict(r.map(|r| r >= 30.0)),
        });
    }
    {
        // SPSC at least as fast as this crate's MPMC ring at every size.
        let mut slower = Vec::new();
        let mut seen = false;
        for size in [8, 64, 1024, 64 << 10, 1 << 20] {
            if let (Some(a), Some(m)) = (
                thr(rows, "shmring-adaptive", size),
                thr(rows, "shmring-mpmc", size),
            ) {
                seen = true;
                if a < m {
                    slower.push(format!("{}: {:.2}× MPMC", fmt_size(size), a / m));
                }
            }
        }
        out.push(Target {
            target: "streaming shmring-adaptive ≥ shmring-mpmc at every size".into(),
            measured: if slower.is_empty() {
                "at least as fast at every size measured".into()
            } else {
                slower.join("; ")
            },
            verdict: verdict(seen.then_some(slower.is_empty())),
        });
        let v = row_of(rows, "shmring-adaptive", Test::Throughput, 64 << 10)
            .and_then(|r| r.throughput.as_ref())
            .map(|t| t.gb_per_s * 1e9);
        out.push(Target {
            target: "streaming shmring-adaptive 64 KiB (copy in and out): ≥ 20 GB/s".into(),
            measured: v.map_or("-".into(), |v| format!("{:.1} GB/s", v / 1e9)),
            verdict: verdict(v.map(|v| v >= 20e9)),
        });
    }
    for t in ["shmring-spin", "shmring-adaptive", "shmring-zerocopy"] {
        let v = thr(rows, t, 64 << 10);
        for (other, bound) in [("unix-stream", 6.0), ("pipe", 10.0)] {
            let o = thr(rows, other, 64 << 10);
            let r = v.zip(o).map(|(v, o)| v / o);
            out.push(Target {
                target: format!(
                    "streaming {t} 64 KiB: ≥ {bound}× {other}{}",
                    if t == "shmring-zerocopy" {
                        " (in place: only the check words are written and read)"
                    } else {
                        ""
                    }
                ),
                measured: r.map_or("-".into(), |r| format!("{r:.1}× {other}")),
                verdict: verdict(r.map(|r| r >= bound)),
            });
        }
    }
    for (label, small) in [
        ("messages ≤ 1 KiB", true),
        ("64 KiB and 1 MiB messages", false),
    ] {
        let mut worst: Option<(f64, String)> = None;
        for r in rows.iter().filter(|r| {
            r.ok()
                && r.test == Test::Throughput
                && (r.size <= 1024) == small
                && matches!(
                    r.transport.as_str(),
                    "shmring-spin"
                        | "shmring-adaptive"
                        | "shmring-batch"
                        | "shmring-many"
                        | "shmring-zerocopy"
                        | "shmring-mpmc"
                )
        }) {
            if let Some(v) = r.vcsw_per_1k
                && worst.as_ref().is_none_or(|(w, _)| v > *w)
            {
                worst = Some((v, format!("{} {}", r.transport, fmt_size(r.size))));
            }
        }
        out.push(Target {
            target: format!(
                "hot path, {label} (spin/adaptive/batch/zero-copy/MPMC streaming): < 1 voluntary context switch per 1000 messages"
            ),
            measured: worst
                .as_ref()
                .map_or("-".into(), |(v, w)| format!("worst {v:.2} per 1000 ({w})")),
            verdict: verdict(worst.map(|(v, _)| v < 1.0)),
        });
    }
    out.push(Target {
        target: "in-process: SPSC ≥ rtrb, MPMC ≥ crossbeam ArrayQueue".into(),
        measured: "criterion benches (cargo bench --bench spsc), not this command".into(),
        verdict: "not measured".into(),
    });
    out
}

fn summary(
    rows: &[Row],
    m: &Machine,
    s: &Settings,
    runtime: Duration,
    transports: &[&'static dyn Transport],
    targets: &[Target],
) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# shmring bench results\n");
    let _ = writeln!(
        o,
        "Generated by `{}` on {} ({:.0} s). Every message carried a sequence number that the \
         receiver checked; rows marked FAILED lost, duplicated or corrupted a message (or \
         could not run). Figures are medians over {} interleaved repetition(s) of {} s each \
         (after {} s of warm-up), with the spread (smallest–largest repetition).\n",
        s.command,
        m.started_utc,
        runtime.as_secs_f64(),
        s.reps,
        s.duration_s,
        s.warmup_s
    );
    let _ = writeln!(o, "## Machine\n");
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(
        o,
        "| CPU | {} ({}){} |",
        m.cpu_model,
        m.cpu_details,
        if m.virtualized {
            "; virtual machine (hypervisor flag)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        o,
        "| CPUs | {} online; this process allowed {:?} |",
        m.cpus_online, m.cpus_allowed
    );
    let _ = writeln!(
        o,
        "| kernel | {} (clock source {}) |",
        m.kernel, m.clocksource
    );
    let _ = writeln!(o, "| placement | {} |", m.placement);
    let _ = writeln!(
        o,
        "| load average (1/5/15 min) | {} at start, {} at end |",
        m.load_at_start, m.load_at_end
    );
    let _ = writeln!(
        o,
        "| other load during the run | other processes used {:.1}% of all CPU time; the \
         hypervisor stole {:.1}% (/proc/stat, less this process and its peers) |",
        m.others_cpu_percent, m.steal_percent
    );
    let _ = writeln!(
        o,
        "| limits | mqueue msgsize_max {} B, msg_max {}; pipe-max-size {} B; root: {} |",
        m.mq_msgsize_max, m.mq_msg_max, m.pipe_max_size, m.root
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "## What each row measures\n");
    let _ = writeln!(
        o,
        "The benchmark's own buffers (what a sender copies from, what a receiver copies \
         into) start on a 64-byte boundary. Where a payload lands inside a shmring ring is the \
         library's layout: records are 8-byte aligned and the payload follows an 8-byte record \
         header, so its place within a cache line changes from message to message \
         (`floor-memcpy+8` shows what memcpy costs 8 bytes past a line). Each message holds its sequence word at the start, its complement at the \
         end and a check word at every 4 KiB boundary; the receiver checks all of them. \
         Round trip: the parent sends, the peer checks and answers with a message of the same \
         size, the parent checks; one timestamp per round trip into an HDR histogram. \
         One-way: the parent sends as fast as it can; the peer checks every message and times \
         the stretch from the first measured message to the last. `vcsw/1k`: voluntary \
         context switches of both processes (getrusage, per thread) per 1000 messages or \
         round trips: anything above 0 means someone slept in the kernel.\n"
    );
    let _ = writeln!(o, "| transport | measures |\n|---|---|");
    for t in transports {
        let _ = writeln!(o, "| `{}` | {} |", t.name(), t.about());
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "## Round trip (ping-pong)\n");
    let _ = writeln!(
        o,
        "÷pipe: p50 divided by pipe's p50 at the same size; ÷floor: p50 divided by \
         floor-spin's 8 B p50 (lower is better for both).\n"
    );
    let _ = writeln!(
        o,
        "| transport | size | p50 | p90 | p99 | p99.9 | max | p50 spread | vcsw/1k | ÷pipe | ÷floor |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows.iter().filter(|r| r.test == Test::Latency) {
        match &r.latency {
            Some(l) if r.ok() => {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} | {}–{} | {} | {} | {} |",
                    r.transport,
                    fmt_size(r.size),
                    fmt_ns(l.p50_ns),
                    fmt_ns(l.p90_ns),
                    fmt_ns(l.p99_ns),
                    fmt_ns(l.p999_ns),
                    fmt_ns(l.max_ns),
                    fmt_ns(l.p50_min_ns),
                    fmt_ns(l.p50_max_ns),
                    fmt_opt(r.vcsw_per_1k, 1),
                    fmt_ratio(r.ratio_to_pipe),
                    fmt_ratio(r.ratio_to_floor)
                );
            }
            _ => {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} ||||||||| ",
                    r.transport,
                    fmt_size(r.size),
                    status_text(r)
                );
            }
        }
    }
    let _ = writeln!(o, "\n![round-trip percentiles](latency.svg)\n");
    let _ = writeln!(o, "## One-way throughput\n");
    let _ = writeln!(
        o,
        "×pipe: msg/s divided by pipe's at the same size; ×memcpy: divided by floor-memcpy's \
         (one in-process copy) at the same size (higher is better). GB/s counts payload bytes \
         delivered; the zero-copy row writes and checks only the check words in place, so its \
         GB/s is payload handed over, not bytes copied.\n"
    );
    let _ = writeln!(
        o,
        "| transport | size | msg/s | GB/s | msg/s spread | vcsw/1k | ×pipe | ×memcpy |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows.iter().filter(|r| r.test == Test::Throughput) {
        match &r.throughput {
            Some(t) if r.ok() => {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {:.3} | {}–{} | {} | {} | {} |",
                    r.transport,
                    fmt_size(r.size),
                    fmt_rate(t.msgs_per_s),
                    t.gb_per_s,
                    fmt_rate(t.msgs_per_s_min),
                    fmt_rate(t.msgs_per_s_max),
                    fmt_opt(r.vcsw_per_1k, 2),
                    fmt_ratio(r.ratio_to_pipe),
                    fmt_ratio(r.ratio_to_floor)
                );
            }
            _ => {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} |||||| ",
                    r.transport,
                    fmt_size(r.size),
                    status_text(r)
                );
            }
        }
    }
    let _ = writeln!(o, "\n![throughput by message size](throughput.svg)\n");
    let _ = writeln!(o, "## Targets\n");
    let _ = writeln!(o, "| target | measured | verdict |\n|---|---|---|");
    for t in targets {
        let _ = writeln!(o, "| {} | {} | {} |", t.target, t.measured, t.verdict);
    }
    let failed: Vec<&Row> = rows.iter().filter(|r| r.status == "failed").collect();
    if !failed.is_empty() {
        let _ = writeln!(o, "\n## FAILED rows\n");
        for r in failed {
            let _ = writeln!(
                o,
                "- {} {} {}: {}",
                r.transport,
                r.test.label(),
                fmt_size(r.size),
                r.reason.as_deref().unwrap_or("")
            );
        }
    }
    o
}
