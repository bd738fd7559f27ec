//! `shmring bench`: every transport between two real processes, side by side in one run.
//!
//! The parent process creates the channel, starts a peer (this executable again, with the
//! hidden `__bench-peer` subcommand and the job as JSON), waits until the peer has attached,
//! and then runs its side of the job while the peer runs the other. Both are pinned to
//! different CPUs when the machine allows it. Repetitions are interleaved (every job once,
//! then every job again, …) and the reports give medians and the spread over repetitions.

mod harness;
mod payload;
mod plot;
mod report;
mod sys;
mod transports;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::CliError;
use crate::args::parse_bytes;
use harness::{Job, SideReport, Test};
use transports::{Ctx, Transport, Unavailable};

/// Message sizes of the round-trip test.
const LATENCY_SIZES: [usize; 4] = [8, 64, 1 << 10, 64 << 10];
/// Message sizes of the throughput test.
const THROUGHPUT_SIZES: [usize; 5] = [8, 64, 1 << 10, 64 << 10, 1 << 20];

/// Options of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Only these transports (comma-separated or repeated; see --list).
    #[arg(long, value_delimiter = ',')]
    transport: Vec<String>,
    /// Only these message sizes (comma-separated; suffixes K, M), e.g. --size 8,64K.
    #[arg(long, value_delimiter = ',', value_parser = parse_bytes)]
    size: Vec<usize>,
    /// Only this test.
    #[arg(long, value_enum)]
    test: Option<TestArg>,
    /// CI smoke run: every transport and size once, briefly (well under a minute).
    #[arg(long)]
    quick: bool,
    /// Measured seconds per job and repetition [default: 0.2; quick: 0.02].
    #[arg(long)]
    duration: Option<f64>,
    /// Warm-up seconds per job and repetition [default: 0.05; quick: 0.005].
    #[arg(long)]
    warmup: Option<f64>,
    /// Repetitions, interleaved [default: 5; quick: 1].
    #[arg(long)]
    reps: Option<u32>,
    /// Directory for results.json, results.csv, summary.md and the SVG plots.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Do not pin the two processes to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// List the transports and what each measures, then exit.
    #[arg(long)]
    list: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum TestArg {
    /// Round-trip latency (ping-pong).
    Latency,
    /// One-way throughput.
    Throughput,
}

/// What the peer process is asked to do.
#[derive(Debug, Serialize, Deserialize)]
struct PeerSpec {
    transport: String,
    job: Job,
    args: Value,
    cpu: Option<usize>,
}

/// One repetition of one job.
#[derive(Clone, Debug)]
pub struct Rep {
    /// The parent's counts.
    pub parent: SideReport,
    /// The peer's counts (zero for in-process jobs).
    pub peer: SideReport,
    /// Round-trip times.
    pub hist: Option<Histogram<u64>>,
}

/// How a job ended up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "status", content = "reason")]
pub enum Status {
    /// Measured.
    Ok,
    /// Cannot run here; why.
    #[serde(rename = "n/a")]
    NotApplicable(String),
    /// Failed (verification or set-up); why.
    Failed(String),
}

/// One job across repetitions.
pub struct Case {
    /// The transport.
    pub transport: &'static dyn Transport,
    /// The job.
    pub job: Job,
    /// Its status so far.
    pub status: Status,
    /// Its repetitions.
    pub reps: Vec<Rep>,
}

/// Settings of a run, recorded with the results.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Repetitions.
    pub reps: u32,
    /// Measured seconds per job and repetition.
    pub duration_s: f64,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Quick mode.
    pub quick: bool,
    /// The command line.
    pub command: String,
    /// CPU of the parent, if pinned.
    pub parent_cpu: Option<usize>,
    /// CPU of the peer, if pinned.
    pub peer_cpu: Option<usize>,
}

fn list() {
    println!("transports (name: what is measured):");
    for t in transports::registry() {
        println!("  {:<17} {}", t.name(), t.about());
    }
}

pub fn run(a: BenchArgs) -> Result<ExitCode, CliError> {
    if a.list {
        list();
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    let secs = |v: Option<f64>, default: f64, quick: f64, what: &str| -> Result<f64, CliError> {
        let v = v.unwrap_or(if a.quick { quick } else { default });
        if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
            return Err(format!("--{what} must be a number of seconds in (0, 3600]").into());
        }
        Ok(v)
    };
    let duration = secs(a.duration, 0.2, 0.02, "duration")?;
    let warmup = secs(a.warmup, 0.05, 0.005, "warmup")?;
    let reps = a.reps.unwrap_or(if a.quick { 1 } else { 5 });
    if reps == 0 {
        return Err("--reps must be at least 1".into());
    }
    let chosen: Vec<&'static dyn Transport> = if a.transport.is_empty() {
        transports::registry().to_vec()
    } else {
        let mut v = Vec::new();
        for name in &a.transport {
            match transports::find(name.trim()) {
                Some(t) => v.push(t),
                None => {
                    list();
                    return Err(format!("unknown transport {name:?}").into());
                }
            }
        }
        v
    };
    if let Some(&bad) = a.size.iter().find(|&&s| !(8..=64 << 20).contains(&s)) {
        return Err(format!("message size {bad} is outside 8 B ..= 64 MiB").into());
    }
    let sizes_for = |test: Test| -> Vec<usize> {
        let defaults: &[usize] = match test {
            Test::Latency => &LATENCY_SIZES,
            Test::Throughput => &THROUGHPUT_SIZES,
        };
        if a.size.is_empty() {
            defaults.to_vec()
        } else {
            a.size
                .iter()
                .copied()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        }
    };
    let tests: Vec<Test> = match a.test {
        None => vec![Test::Latency, Test::Throughput],
        Some(TestArg::Latency) => vec![Test::Latency],
        Some(TestArg::Throughput) => vec![Test::Throughput],
    };
    let mut cases = Vec::new();
    for &test in &tests {
        for size in sizes_for(test) {
            for &t in &chosen {
                let job = Job {
                    test,
                    size,
                    warmup_ns: (warmup * 1e9) as u64,
                    duration_ns: (duration * 1e9) as u64,
                };
                let status = match t.not_applicable(test, size) {
                    Some(why) => Status::NotApplicable(why),
                    None => Status::Ok,
                };
                cases.push(Case {
                    transport: t,
                    job,
                    status,
                    reps: Vec::new(),
                });
            }
        }
    }

    // Placement: the parent on the first allowed CPU, the peer on the second.
    let cpus = sys::allowed_cpus();
    let (parent_cpu, peer_cpu, placement) = if a.no_pin {
        (None, None, "not pinned (--no-pin)".to_owned())
    } else if cpus.len() < 2 {
        (
            None,
            None,
            format!(
                "not pinned: this process may use only {} CPU(s) ({cpus:?}); both processes share it",
                cpus.len()
            ),
        )
    } else {
        match sys::pin_to(cpus[0]) {
            Ok(()) => (
                Some(cpus[0]),
                Some(cpus[1]),
                format!(
                    "parent pinned to CPU {}, peer to CPU {} (sched_setaffinity)",
                    cpus[0], cpus[1]
                ),
            ),
            Err(e) => (None, None, format!("not pinned: {e}")),
        }
    };
    eprintln!("shmring bench: {placement}");
    let mut machine = sys::Machine::gather(placement, cpus.clone());
    let cpu_at_start = sys::CpuSnapshot::now();
    eprintln!(
        "shmring bench: load average {} on {} CPU(s); {} jobs × {reps} repetition(s), {duration} s each",
        machine.load_at_start,
        machine.cpus_online,
        cases.iter().filter(|c| c.status == Status::Ok).count()
    );

    let runnable = cases.iter().filter(|c| c.status == Status::Ok).count() as u64;
    let bar = ProgressBar::new(runnable * u64::from(reps));
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let ctx = Ctx::new();
    for rep in 0..reps {
        for case in cases.iter_mut() {
            if case.status != Status::Ok {
                continue;
            }
            bar.set_message(format!(
                "rep {}/{reps} {} {} {}",
                rep + 1,
                case.transport.name(),
                case.job.test.label(),
                report::fmt_size(case.job.size)
            ));
            match run_case(case.transport, &case.job, &ctx, peer_cpu) {
                Ok(r) => case.reps.push(r),
                Err(Unavailable::NotApplicable(why)) => {
                    case.status = Status::NotApplicable(why);
                    // Its later repetitions will not run.
                    bar.inc(u64::from(reps - rep - 1));
                }
                Err(Unavailable::Failed(why)) => {
                    bar.println(format!(
                        "FAILED: {} {} {}: {why}",
                        case.transport.name(),
                        case.job.test.label(),
                        report::fmt_size(case.job.size)
                    ));
                    case.status = Status::Failed(why);
                    bar.inc(u64::from(reps - rep - 1));
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    machine.load_at_end = sys::loadavg();
    (machine.others_cpu_percent, machine.steal_percent) =
        sys::CpuSnapshot::now().others_since(&cpu_at_start, machine.cpus_online);

    let settings = Settings {
        reps,
        duration_s: duration,
        warmup_s: warmup,
        quick: a.quick,
        command: std::iter::once("shmring".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        parent_cpu,
        peer_cpu,
    };
    let runtime = started.elapsed();
    let rows = report::rows(&cases);
    print!("{}", report::terminal_tables(&rows));
    std::fs::create_dir_all(&a.out)
        .map_err(|e| format!("cannot create {}: {e}", a.out.display()))?;
    report::write_all(
        &a.out,
        &rows,
        &machine,
        &settings,
        runtime,
        chosen.as_slice(),
    )?;
    plot::latency(&a.out.join("latency.svg"), &rows)?;
    plot::throughput(&a.out.join("throughput.svg"), &rows)?;
    let failed = rows.iter().filter(|r| r.status == "failed").count();
    let measured = rows.iter().filter(|r| r.status == "ok").count();
    let na = rows.len() - failed - measured;
    eprintln!(
        "shmring bench: {measured} rows measured and every message verified, {na} n/a, {failed} FAILED; \
         {:.1} s; other processes used {:.0}% of the CPUs meanwhile (steal {:.1}%); results in {}",
        runtime.as_secs_f64(),
        machine.others_cpu_percent,
        machine.steal_percent,
        a.out.display()
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Lines from the peer's standard output, read on a thread so the parent can time out.
fn line_reader(out: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    rx
}

/// Kills the child if it is still running when `limit` passes, unless cancelled first.
/// Joined before the child is reaped, so the pid it may signal is still our child's.
fn watchdog(pid: u32, limit: Duration) -> (mpsc::Sender<()>, std::thread::JoinHandle<bool>) {
    let (tx, rx) = mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: `pid` is our unreaped child (the caller joins this thread before
                // waiting for it), so the number cannot belong to another process.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            return true;
        }
        false
    });
    (tx, h)
}

/// Waits for the child to exit, killing it if it has not within `grace`.
fn reap(child: &mut Child, grace: Duration) -> String {
    let end = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return if st.success() {
                    err
                } else {
                    format!("{} [peer exit: {st}]", err.trim())
                };
            }
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(1)),
            _ => {
                // Our own child, not yet reaped.
                let _ = child.kill();
                let _ = child.wait();
                return "peer killed after the job's time limit".into();
            }
        }
    }
}

/// Runs one repetition of one job.
fn run_case(
    t: &'static dyn Transport,
    job: &Job,
    ctx: &Ctx,
    peer_cpu: Option<usize>,
) -> Result<Rep, Unavailable> {
    if let Some(r) = t.in_process(job) {
        let r = r?;
        return Ok(Rep {
            parent: r.side,
            peer: SideReport::default(),
            hist: r.hist,
        });
    }
    let setup = t.prepare(ctx, job)?;
    let spec = PeerSpec {
        transport: t.name().to_owned(),
        job: *job,
        args: setup.args,
        cpu: peer_cpu,
    };
    let spec = serde_json::to_string(&spec).map_err(|e| format!("peer spec: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let mut child = Command::new(exe)
        .arg("__bench-peer")
        .arg(spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the peer process: {e}"))?;
    // The peer has its own copies now.
    drop(setup.pass);
    let mut end = setup.end;
    let (cancel, dog) = watchdog(child.id(), job.limit() + Duration::from_secs(10));
    let lines = match child.stdout.take() {
        Some(out) => line_reader(out),
        None => return Err(Unavailable::Failed("peer has no stdout".into())),
    };
    let finish =
        |child: &mut Child, cancel: mpsc::Sender<()>, dog: std::thread::JoinHandle<bool>| {
            let _ = cancel.send(());
            let killed = dog.join().unwrap_or(false);
            let stderr = reap(child, Duration::from_secs(5));
            (killed, stderr)
        };
    match lines.recv_timeout(Duration::from_secs(15)) {
        Ok(l) if l == "READY" => {}
        Ok(l) => {
            let (_, stderr) = finish(&mut child, cancel, dog);
            return Err(peer_failure(&l, &stderr));
        }
        Err(_) => {
            let (_, stderr) = finish(&mut child, cancel, dog);
            return Err(Unavailable::Failed(format!(
                "peer did not get ready: {}",
                stderr.trim()
            )));
        }
    }
    let mine = end.run(job);
    // Give the peer time to finish its side; after a parent error it usually fails fast too.
    let wait = if mine.is_ok() {
        job.limit()
    } else {
        Duration::from_secs(2)
    };
    let theirs = lines.recv_timeout(wait);
    drop(end);
    let (killed, stderr) = finish(&mut child, cancel, dog);
    let peer = match theirs {
        Ok(l) => match l.strip_prefix("RESULT ") {
            Some(json) => serde_json::from_str::<SideReport>(json)
                .map_err(|e| format!("peer result unreadable: {e}")),
            None => Err(peer_message(&l, &stderr)),
        },
        Err(_) if killed => Err("peer killed after the job's time limit".into()),
        Err(_) => Err(format!("peer sent no result: {}", stderr.trim())),
    };
    match (mine, peer) {
        (Ok(p), Ok(q)) => Ok(Rep {
            parent: p.side,
            peer: q,
            hist: p.hist,
        }),
        (Err(e), Ok(_)) => Err(Unavailable::Failed(format!("parent: {e}"))),
        (Ok(_), Err(e)) => Err(Unavailable::Failed(format!("peer: {e}"))),
        (Err(e), Err(f)) => Err(Unavailable::Failed(format!("peer: {f}; parent: {e}"))),
    }
}

fn peer_message(line: &str, stderr: &str) -> String {
    let msg = line.strip_prefix("ERROR ").unwrap_or(line);
    if stderr.trim().is_empty() {
        msg.to_owned()
    } else {
        format!("{msg} ({})", stderr.trim())
    }
}

fn peer_failure(line: &str, stderr: &str) -> Unavailable {
    match line.strip_prefix("N/A ") {
        Some(why) => Unavailable::NotApplicable(why.to_owned()),
        None => Unavailable::Failed(format!("peer: {}", peer_message(line, stderr))),
    }
}

/// Entry point of the peer process.
pub fn peer_main(spec: &str) -> ExitCode {
    let say = |s: &str| {
        let mut out = std::io::stdout().lock();
        // If the parent is gone there is nobody to tell.
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    };
    let spec: PeerSpec = match serde_json::from_str(spec) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("ERROR bad peer spec: {e}"));
            return ExitCode::FAILURE;
        }
    };
    if let Some(cpu) = spec.cpu
        && let Err(e) = sys::pin_to(cpu)
    {
        say(&format!("ERROR {e}"));
        return ExitCode::FAILURE;
    }
    let Some(t) = transports::find(&spec.transport) else {
        say(&format!("ERROR unknown transport {:?}", spec.transport));
        return ExitCode::FAILURE;
    };
    let mut ready = || say("READY");
    match t.peer(&spec.job, &spec.args, &mut ready) {
        Ok(r) => {
            let json = serde_json::to_string(&r).unwrap_or_default();
            say(&format!("RESULT {json}"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(&format!("ERROR {e}"));
            ExitCode::FAILURE
        }
    }
}
