//! The measurement loops, written once for every transport: a transport only supplies a
//! [`Link`] (how one message of a given size is sent and received at each end).
//!
//! - Round trip (ping-pong): the parent sends a message, the peer checks it and sends one of
//!   the same size and sequence word back, the parent checks that. One timestamp per round
//!   trip goes into an HDR histogram.
//! - One-way throughput: the parent sends as fast as the link takes messages; the peer checks
//!   every message and times the measured stretch from the `MARK` message to the `END` one.
//!
//! Both start with a warm-up; context switches are counted over the measured stretch only.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::payload::{END, MARK, SEQ_MASK, SeqCheck};
use super::sys::Switches;

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Test {
    /// Round-trip latency (ping-pong).
    Latency,
    /// One-way streaming throughput.
    Throughput,
}

impl Test {
    /// Short name.
    pub fn label(self) -> &'static str {
        match self {
            Test::Latency => "round trip",
            Test::Throughput => "one-way",
        }
    }
}

/// One measurement: a test at a message size, for a warm-up and a measured duration.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Job {
    /// What is measured.
    pub test: Test,
    /// Message size in bytes.
    pub size: usize,
    /// Warm-up time (ns).
    pub warmup_ns: u64,
    /// Measured time (ns).
    pub duration_ns: u64,
}

impl Job {
    /// The warm-up.
    pub fn warmup(&self) -> Duration {
        Duration::from_nanos(self.warmup_ns)
    }
    /// The measured stretch.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.duration_ns)
    }
    /// How long anything in this job may take before it is considered stuck.
    pub fn limit(&self) -> Duration {
        self.warmup() + self.duration() + Duration::from_secs(20)
    }
}

/// What one side measured.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct SideReport {
    /// Messages (one-way) or round trips in the measured stretch.
    pub msgs: u64,
    /// Length of the measured stretch (ns).
    pub elapsed_ns: u64,
    /// Voluntary context switches in the measured stretch.
    pub vcsw: i64,
    /// Involuntary context switches in the measured stretch.
    pub ivcsw: i64,
}

/// One process's end of a channel, as the loops use it. Errors are messages for the report.
pub trait Link {
    /// Sends one `size`-byte message carrying `word` (see `payload::stamp`).
    fn send(&mut self, word: u64, size: usize) -> Result<(), String>;

    /// Receives one message, checks its length and check words, returns its sequence word.
    fn recv(&mut self, size: usize) -> Result<u64, String>;

    /// Sends the `n` messages `first..first + n` (a transport with batched publish sends
    /// them as one batch).
    fn send_burst(&mut self, first: u64, n: u64, size: usize) -> Result<(), String> {
        for w in first..first + n {
            self.send(w, size)?;
        }
        Ok(())
    }

    /// Receives at least one message, handing each sequence word to `f` until it returns
    /// `true` (stop). Returns whether `f` asked to stop.
    fn recv_some<F: FnMut(u64) -> Result<bool, String>>(
        &mut self,
        size: usize,
        f: &mut F,
    ) -> Result<bool, String> {
        let w = self.recv(size)?;
        f(w)
    }
}

/// How many messages the sender writes between two looks at the clock.
pub fn burst_for(size: usize) -> u64 {
    (4096 / size.max(1)).clamp(1, 64) as u64
}

fn expect_echo(got: u64, sent: u64) -> Result<(), String> {
    if got == sent {
        Ok(())
    } else {
        Err(format!(
            "round trip {}: sent sequence word {sent:#x}, got back {got:#x}",
            sent & SEQ_MASK
        ))
    }
}

/// A histogram of nanoseconds from 1 ns to 100 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// The parent's side of a round-trip test.
pub fn ping<L: Link>(l: &mut L, job: &Job) -> Result<(SideReport, Histogram<u64>), String> {
    let size = job.size;
    let mut seq = 0u64;
    let warm_end = Instant::now() + job.warmup();
    loop {
        l.send(seq, size)?;
        expect_echo(l.recv(size)?, seq)?;
        seq += 1;
        if Instant::now() >= warm_end {
            break;
        }
    }
    let mut hist = new_histogram();
    let sw0 = Switches::now();
    let t0 = Instant::now();
    let end = t0 + job.duration();
    let mut prev = t0;
    let mut word = seq | MARK;
    let mut n = 0u64;
    loop {
        l.send(word, size)?;
        expect_echo(l.recv(size)?, word)?;
        let now = Instant::now();
        hist.saturating_record((now - prev).as_nanos() as u64);
        prev = now;
        n += 1;
        seq += 1;
        word = seq;
        if now >= end {
            break;
        }
    }
    let sw = Switches::now().since(sw0);
    l.send(seq | END, size)?;
    Ok((
        SideReport {
            msgs: n,
            elapsed_ns: (prev - t0).as_nanos() as u64,
            vcsw: sw.voluntary,
            ivcsw: sw.involuntary,
        },
        hist,
    ))
}

/// The peer's side of a round-trip test: echo until `END`.
pub fn pong<L: Link>(l: &mut L, job: &Job) -> Result<SideReport, String> {
    let size = job.size;
    let mut check = SeqCheck::default();
    let mut mark: Option<(u64, Instant, Switches)> = None;
    loop {
        let w = l.recv(size)?;
        check.check(w)?;
        if w & END != 0 {
            let sw1 = Switches::now();
            let t1 = Instant::now();
            let (m, t0, sw0) = mark.ok_or("END arrived before MARK")?;
            let sw = sw1.since(sw0);
            return Ok(SideReport {
                msgs: (w & SEQ_MASK) - m,
                elapsed_ns: (t1 - t0).as_nanos() as u64,
                vcsw: sw.voluntary,
                ivcsw: sw.involuntary,
            });
        }
        l.send(w, size)?;
        if w & MARK != 0 {
            // Taken after the reply, so the first measured round trip does not pay for it.
            mark = Some((w & SEQ_MASK, Instant::now(), Switches::now()));
        }
    }
}

/// The parent's side of a throughput test: send for the warm-up, `MARK`, send for the
/// duration, `END`.
pub fn stream<L: Link>(l: &mut L, job: &Job) -> Result<SideReport, String> {
    let size = job.size;
    let burst = burst_for(size);
    let mut seq = 0u64;
    let warm_end = Instant::now() + job.warmup();
    loop {
        l.send_burst(seq, burst, size)?;
        seq += burst;
        if Instant::now() >= warm_end {
            break;
        }
    }
    let sw0 = Switches::now();
    let t0 = Instant::now();
    let end = t0 + job.duration();
    let first = seq;
    l.send(seq | MARK, size)?;
    seq += 1;
    loop {
        l.send_burst(seq, burst, size)?;
        seq += burst;
        if Instant::now() >= end {
            break;
        }
    }
    l.send(seq | END, size)?;
    let t1 = Instant::now();
    let sw = Switches::now().since(sw0);
    Ok(SideReport {
        msgs: seq - first,
        elapsed_ns: (t1 - t0).as_nanos() as u64,
        vcsw: sw.voluntary,
        ivcsw: sw.involuntary,
    })
}

/// The peer's side of a throughput test: receive and check everything, time `MARK`..`END`.
pub fn sink<L: Link>(l: &mut L, job: &Job) -> Result<SideReport, String> {
    let size = job.size;
    let mut check = SeqCheck::default();
    let mut mark: Option<(u64, Instant, Switches)> = None;
    let mut report = None;
    let mut on_msg = |w: u64| -> Result<bool, String> {
        check.check(w)?;
        if w & MARK != 0 {
            mark = Some((w & SEQ_MASK, Instant::now(), Switches::now()));
        }
        if w & END != 0 {
            let t1 = Instant::now();
            let sw1 = Switches::now();
            let (m, t0, sw0) = mark.ok_or("END arrived before MARK")?;
            let sw = sw1.since(sw0);
            report = Some(SideReport {
                msgs: (w & SEQ_MASK) - m,
                elapsed_ns: (t1 - t0).as_nanos() as u64,
                vcsw: sw.voluntary,
                ivcsw: sw.involuntary,
            });
            return Ok(true);
        }
        Ok(false)
    };
    while !l.recv_some(size, &mut on_msg)? {}
    report.ok_or_else(|| "stream ended without END".to_owned())
}

/// What the parent's side of a job produced.
pub struct ParentResult {
    /// Its counts.
    pub side: SideReport,
    /// Round-trip times (latency tests).
    pub hist: Option<Histogram<u64>>,
}

/// Runs the parent's side of `job` over `l`.
pub fn drive<L: Link>(l: &mut L, job: &Job) -> Result<ParentResult, String> {
    match job.test {
        Test::Latency => ping(l, job).map(|(side, h)| ParentResult {
            side,
            hist: Some(h),
        }),
        Test::Throughput => stream(l, job).map(|side| ParentResult { side, hist: None }),
    }
}

/// Runs the peer's side of `job` over `l`.
pub fn serve<L: Link>(l: &mut L, job: &Job) -> Result<SideReport, String> {
    match job.test {
        Test::Latency => pong(l, job),
        Test::Throughput => sink(l, job),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::bench::payload::{stamp, verify};

    #[derive(Clone, Copy, PartialEq)]
    enum Fault {
        None,
        Lose,
        Duplicate,
        Corrupt,
    }

    /// An in-memory link that can damage its 5th message.
    struct QueueLink {
        q: VecDeque<Vec<u8>>,
        sent: u64,
        fault: Fault,
    }

    impl Link for QueueLink {
        fn send(&mut self, word: u64, size: usize) -> Result<(), String> {
            let mut m = vec![0u8; size];
            stamp(&mut m, word);
            self.sent += 1;
            if self.sent == 5 {
                match self.fault {
                    Fault::None => {}
                    Fault::Lose => return Ok(()),
                    Fault::Duplicate => self.q.push_back(m.clone()),
                    Fault::Corrupt => m[size - 1] ^= 0x10,
                }
            }
            self.q.push_back(m);
            Ok(())
        }

        fn recv(&mut self, size: usize) -> Result<u64, String> {
            let m = self.q.pop_front().ok_or("queue empty")?;
            verify(&m, size)
        }
    }

    fn run(fault: Fault) -> Result<SideReport, String> {
        let job = Job {
            test: Test::Throughput,
            size: 64,
            warmup_ns: 100_000,
            duration_ns: 100_000,
        };
        let mut l = QueueLink {
            q: VecDeque::new(),
            sent: 0,
            fault,
        };
        stream(&mut l, &job)?;
        sink(&mut l, &job)
    }

    #[test]
    fn every_fault_fails_the_run() {
        let ok = run(Fault::None).expect("an undamaged stream verifies");
        assert!(ok.msgs > 0);
        let lost = run(Fault::Lose).unwrap_err();
        assert!(lost.contains("lost"), "{lost}");
        let dup = run(Fault::Duplicate).unwrap_err();
        assert!(dup.contains("duplicated"), "{dup}");
        let bad = run(Fault::Corrupt).unwrap_err();
        assert!(bad.contains("corrupted"), "{bad}");
    }
}
