//! A storm of hostile writes. A victim process (this test binary again, role `victim`)
//! sends and receives on a named SPSC or MPMC ring, with timeouts, from two threads, while
//! this process scribbles over the ring's memory through its own mapping of
//! `/dev/shm/<name>`: header fields, endpoint-table words, the control block's indices,
//! flags, side words and futex words, records and slot sequence/length words, claim
//! records, random words anywhere, and words rewritten in a tight loop.
//!
//! Per round the victim must come back within its timeouts plus a margin, alive (no signal),
//! without a panic, and every failure it saw must be one of the library's typed errors. The
//! rounds of a batch run in one victim process (one spawn per batch, not per round), driven
//! over its stdin: `ROUND <i> <name>` (create the ring, attach both ends, answer `READY`),
//! `STOP <i>` (finish the calls in flight, close, answer `DONE` with the counts), `EXIT`.
//!
//! `SHMRING_HOSTILE_ROUNDS` sets the number of rounds (CI default 1000, about 10 s; 10,000
//! or more for the full storm), `SHMRING_HOSTILE_SEED` the seed (printed; every round's
//! plan and corruptions derive from it and the round number, so a failing round can be
//! replayed with `SHMRING_HOSTILE_FIRST=<round> SHMRING_HOSTILE_ROUNDS=1`).

mod common;
#[path = "hostile/scribble.rs"]
mod scribble;
#[path = "hostile/victim.rs"]
mod victim;

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{ChildStdin, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{ChildProc, RingName, child_command, mix};
use shmring::WaitStrategy;

const ENTRY: &str = "hostile_child";
const ROUNDS_VAR: &str = "SHMRING_HOSTILE_ROUNDS";
const SEED_VAR: &str = "SHMRING_HOSTILE_SEED";
const FIRST_VAR: &str = "SHMRING_HOSTILE_FIRST";
/// Rounds of a plain `cargo test` run.
const CI_ROUNDS: u64 = 1000;
/// Rounds per victim process.
const BATCH: u64 = 50;
const DEFAULT_SEED: u64 = 0x5EED_0F57_0A3C;
/// Prefix of the victim's protocol lines on its stdout (the test harness prints there too).
const MARK: &str = "HOSTILE ";
/// How long this process waits for the victim's answer before the round counts as hung.
const ROUND_LIMIT: Duration = Duration::from_secs(10);

// ---- a small deterministic PRNG (xorshift64) ----

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// What a round runs on; the victim and this process both derive it from seed and round.
#[derive(Clone, Copy, Debug)]
struct Plan {
    mpmc: bool,
    /// SPSC capacity in bytes.
    capacity: usize,
    /// MPMC slots, largest message, registry entries.
    slots: usize,
    max_message: usize,
    endpoints: usize,
    strategy: WaitStrategy,
}

fn plan(seed: u64, round: u64) -> Plan {
    let mut rng = Rng::new(seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    Plan {
        mpmc: rng.chance(50),
        capacity: rng.pick(&[64, 256, 4096, 65536]),
        slots: rng.pick(&[2, 4, 16, 256]),
        max_message: rng.pick(&[48, 112, 240]),
        endpoints: rng.pick(&[4, 8, 64]),
        strategy: rng.pick(&[
            WaitStrategy::Adaptive,
            WaitStrategy::Adaptive,
            WaitStrategy::Block,
            WaitStrategy::Spin,
        ]),
    }
}

/// The victim process: runs the rounds this process's parent hands it over stdin.
#[test]
#[ignore = "runs only as a child process of hostile_storm"]
fn hostile_child() {
    let Ok(role) = std::env::var(common::ROLE_VAR) else {
        return;
    };
    assert_eq!(role, "victim");
    victim::serve(common::env(SEED_VAR).parse().expect("seed"));
}

// ---- the storm ----

/// Everything the storm counted.
#[derive(Default)]
struct Totals {
    rounds: u64,
    clean: u64,
    /// Victim outcomes by kind, summed over rounds.
    outcomes: BTreeMap<String, u64>,
    corruptions: BTreeMap<&'static str, u64>,
    panics: u64,
    signals: u64,
    hangs: u64,
    worst_us: u64,
    worst_op: String,
    failures: Vec<String>,
}

/// Outcomes that are not failures: successes, nothing to do in time, and the victim's own
/// deliberate misuse (a commit one byte longer than its grant).
const EXPECTED: [&str; 5] = ["ok", "Timeout", "Full", "Empty", "CommitTooLong"];

impl Totals {
    fn add_done(&mut self, round: u64, line: &str, applied: &[&'static str]) {
        let (fields, note) = line.split_once(" | ").unwrap_or((line, ""));
        let mut clean = true;
        for kv in fields.split_whitespace().skip(2) {
            let (k, v) = kv.split_once('=').expect("key=value");
            if k == "worst_op" {
                continue;
            }
            let v: u64 = v.parse().expect("count");
            match k {
                "panics" => self.panics += v,
                "slow" => self.hangs += v,
                "worst_us" if v >= self.worst_us => {
                    self.worst_us = v;
                    self.worst_op = fields
                        .split_once("worst_op=")
                        .map_or("", |(_, op)| op.split_whitespace().next().unwrap_or(""))
                        .to_owned();
                }
                "worst_us" => {}
                _ => {
                    clean &= EXPECTED.contains(&k);
                    *self.outcomes.entry(k.to_owned()).or_default() += v;
                }
            }
            if matches!(k, "panics" | "slow") && v > 0 {
                self.failures
                    .push(format!("round {round} after {applied:?}: {k}={v}: {note}"));
            }
        }
        self.rounds += 1;
        self.clean += u64::from(clean);
    }

    fn lost(&mut self, round: u64, applied: &[&'static str], what: String) {
        self.rounds += 1;
        self.failures
            .push(format!("round {round} after {applied:?}: {what}"));
    }
}

/// Reads the victim's protocol lines into a channel (ends at its end of output).
fn forward_lines(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(i) = line.find(MARK) {
                if tx.send(line[i + MARK.len()..].to_owned()).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

/// Keeps the last lines of the victim's stderr, for failure reports.
fn keep_tail(err: impl std::io::Read + Send + 'static) -> Arc<Mutex<VecDeque<String>>> {
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let keep = Arc::clone(&tail);
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            let mut t = keep.lock().unwrap();
            if t.len() == 20 {
                t.pop_front();
            }
            t.push_back(line);
        }
    });
    tail
}

/// Waits for the victim to exit on its own, up to `ROUND_LIMIT`.
fn wait_exit(child: &mut ChildProc) -> Option<ExitStatus> {
    let start = Instant::now();
    let c = child.0.as_mut()?;
    loop {
        if let Ok(Some(status)) = c.try_wait() {
            return Some(status);
        }
        if start.elapsed() > ROUND_LIMIT {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How a victim that stopped answering ended.
fn ending(child: &mut ChildProc, totals: &mut Totals) -> String {
    match wait_exit(child) {
        Some(status) if status.signal().is_some() => {
            totals.signals += 1;
            format!("victim killed by signal {:?}", status.signal())
        }
        Some(status) => {
            totals.panics += 1;
            format!("victim exited with {status}")
        }
        None => {
            totals.hangs += 1;
            child.kill();
            "victim hung (killed)".to_owned()
        }
    }
}

fn send(stdin: &mut ChildStdin, line: &str) -> bool {
    writeln!(stdin, "{line}")
        .and_then(|()| stdin.flush())
        .is_ok()
}

/// Runs rounds `first..first + count` in one victim process.
fn run_batch(seed: u64, first: u64, count: u64, totals: &mut Totals) {
    let mut cmd = child_command(ENTRY, "victim", &[(SEED_VAR, seed.to_string())]);
    cmd.stdin(Stdio::piped());
    let mut child = ChildProc(Some(cmd.spawn().expect("spawn the victim")));
    let victim = child.pid();
    let proc = child.0.as_mut().unwrap();
    let mut stdin = proc.stdin.take().unwrap();
    let lines = forward_lines(proc.stdout.take().unwrap());
    let stderr = keep_tail(proc.stderr.take().unwrap());
    let stderr_tail = || {
        stderr
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    };
    for round in first..first + count {
        let name = RingName::new("hostile");
        let mut applied = Vec::new();
        let expect =
            |lines: &mpsc::Receiver<String>, what: String| match lines.recv_timeout(ROUND_LIMIT) {
                Ok(l) if l.starts_with(&what) => Ok(l),
                Ok(l) => Err(format!("victim said {l:?}, expected {what:?}")),
                Err(mpsc::RecvTimeoutError::Timeout) => Err("timeout".to_owned()),
                Err(mpsc::RecvTimeoutError::Disconnected) => Err("end of output".to_owned()),
            };
        let mut answer = Err("stdin closed".to_owned());
        if send(&mut stdin, &format!("ROUND {round} {}", name.0)) {
            answer = expect(&lines, format!("READY {round}"));
        }
        if answer.is_ok() {
            applied = scribble::scribble(&name, seed, round, victim);
            answer = if send(&mut stdin, &format!("STOP {round}")) {
                expect(&lines, format!("DONE {round}"))
            } else {
                Err("stdin closed".to_owned())
            };
        }
        for a in &applied {
            *totals.corruptions.entry(a).or_default() += 1;
        }
        match answer {
            Ok(done) => totals.add_done(round, &done, &applied),
            Err(e) => {
                let how = ending(&mut child, totals);
                totals.lost(
                    round,
                    &applied,
                    format!("{e}; {how}; stderr:\n{}", stderr_tail()),
                );
                // The rest of this batch is lost with its victim.
                return;
            }
        }
    }
    send(&mut stdin, "EXIT");
    drop(stdin);
    match wait_exit(&mut child) {
        Some(status) if status.success() => {}
        Some(status) => {
            if status.signal().is_some() {
                totals.signals += 1;
            } else {
                totals.panics += 1;
            }
            let end = first + count;
            totals.failures.push(format!(
                "victim of rounds {first}..{end} ended with {status}; stderr:\n{}",
                stderr_tail()
            ));
        }
        None => {
            totals.hangs += 1;
            child.kill();
            totals.failures.push("victim did not exit".to_owned());
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

#[test]
fn hostile_storm() {
    let rounds = env_u64(ROUNDS_VAR).unwrap_or(CI_ROUNDS);
    let seed = env_u64(SEED_VAR).unwrap_or(DEFAULT_SEED);
    let first = env_u64(FIRST_VAR).unwrap_or(0);
    println!(
        "hostile storm: seed={seed:#x} rounds {first}..{} in batches of {BATCH} \
         ({SEED_VAR}, {ROUNDS_VAR}, {FIRST_VAR} to replay)",
        first + rounds
    );
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut round = first;
    while round < first + rounds {
        let n = BATCH.min(first + rounds - round);
        run_batch(seed, round, n, &mut totals);
        round += n;
    }
    let typed: Vec<String> = totals
        .outcomes
        .iter()
        .filter(|(k, _)| !EXPECTED.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let expected: Vec<String> = EXPECTED
        .iter()
        .map(|k| format!("{k}={}", totals.outcomes.get(*k).copied().unwrap_or(0)))
        .collect();
    let applied: Vec<String> = totals
        .corruptions
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "hostile storm: {} rounds in {:.1} s: clean={} (no typed error), with typed errors={}\n  \
         typed errors by kind: {}\n  other outcomes: {}\n  corruptions applied: {}\n  \
         panics={} signals={} hangs={} (worst call: {} returned {} ms past its timeout)",
        totals.rounds,
        started.elapsed().as_secs_f64(),
        totals.clean,
        totals.rounds - totals.clean,
        typed.join(" "),
        expected.join(" "),
        applied.join(" "),
        totals.panics,
        totals.signals,
        totals.hangs,
        totals.worst_op,
        totals.worst_us / 1000,
    );
    assert!(
        totals.failures.is_empty(),
        "seed {seed:#x}:\n{}",
        totals.failures.join("\n")
    );
    assert_eq!(
        (totals.panics, totals.signals, totals.hangs),
        (0, 0, 0),
        "seed {seed:#x}"
    );
    assert_eq!(totals.rounds, rounds);
    // The storm did reach the ring: some rounds saw corruption reported.
    assert!(totals.outcomes.get("Corrupted").copied().unwrap_or(0) > 0 || rounds < 50);
}
