//! The victim of the storm: creates a round's ring, attaches both ends, and sends and
//! receives on it from two threads, with timeouts, until told to stop; counts what every
//! call returned, times it, and catches panics.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shmring::{
    CommitError, Corruption, OpenError, RecvTimeoutError, SendTimeoutError, TryRecvError,
    TrySendError, WaitStrategy, mpmc, spsc,
};

use super::{MARK, Rng, plan};

/// How far past its timeout a victim call may return before it counts as hung (generous:
/// the machine is shared; a call that walks a forged index runs for years, not seconds).
const HANG_MARGIN: Duration = Duration::from_secs(1);
/// Timeouts of the victim's calls.
const TIMEOUTS_MS: [u64; 5] = [0, 0, 1, 2, 5];

/// What one victim thread saw.
#[derive(Default)]
struct Tally {
    /// Outcomes by kind: "ok", the idle ones ("Timeout", "Full", "Empty") and the typed
    /// failures ("Corrupted", "Disconnected", "open:<variant>", ...).
    counts: BTreeMap<&'static str, u64>,
    /// Calls that returned more than `HANG_MARGIN` after their timeout.
    slow: Vec<String>,
    /// Longest time any call took beyond its timeout, and which call it was.
    worst: Duration,
    worst_op: &'static str,
    panics: u64,
    /// Whether the last call found the handle broken or disconnected (then the thread
    /// slows down instead of spinning on immediate errors).
    stalled: bool,
}

impl Tally {
    fn note(&mut self, kind: &'static str) {
        *self.counts.entry(kind).or_default() += 1;
        self.stalled = matches!(kind, "Corrupted" | "Disconnected");
    }

    /// Runs a call with `timeout`, timing it.
    fn timed<T>(&mut self, op: &'static str, timeout: Duration, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let r = f();
        let took = start.elapsed();
        let over = took.saturating_sub(timeout);
        if over >= self.worst {
            self.worst = over;
            self.worst_op = op;
        }
        if over > HANG_MARGIN {
            self.slow
                .push(format!("{op} took {took:?} with a timeout of {timeout:?}"));
        }
        r
    }

    fn merge(&mut self, other: Tally) {
        for (k, v) in other.counts {
            *self.counts.entry(k).or_default() += v;
        }
        self.slow.extend(other.slow);
        if other.worst >= self.worst {
            self.worst = other.worst;
            self.worst_op = other.worst_op;
        }
        self.panics += other.panics;
    }
}

/// A corruption report must name what was wrong.
fn corrupted(c: &Corruption) -> &'static str {
    assert!(!c.what.is_empty() && !c.to_string().is_empty());
    // No write to shared memory can make a handle take itself for a forked child's copy.
    assert!(!c.is_inherited(), "{c}");
    "Corrupted"
}

fn send_timeout_kind(e: &SendTimeoutError) -> &'static str {
    assert!(!e.to_string().is_empty());
    match e {
        SendTimeoutError::Timeout(()) => "Timeout",
        SendTimeoutError::Disconnected(()) => "Disconnected",
        // The victim's messages are within the maximum, which no peer can change.
        SendTimeoutError::TooLarge { .. } => panic!("a message within the maximum was refused"),
        SendTimeoutError::Corrupted { what, .. } => corrupted(what),
    }
}

fn try_send_kind(e: &TrySendError) -> &'static str {
    assert!(!e.to_string().is_empty());
    match e {
        TrySendError::Full(()) => "Full",
        TrySendError::Disconnected(()) => "Disconnected",
        // The victim's messages are within the maximum, which no peer can change.
        TrySendError::TooLarge { .. } => panic!("a message within the maximum was refused"),
        TrySendError::Corrupted { what, .. } => corrupted(what),
    }
}

fn recv_timeout_kind(e: &RecvTimeoutError) -> &'static str {
    match e {
        RecvTimeoutError::Timeout => "Timeout",
        RecvTimeoutError::Disconnected => "Disconnected",
        RecvTimeoutError::Corrupted(c) => corrupted(c),
    }
}

fn try_recv_kind(e: &TryRecvError) -> &'static str {
    match e {
        TryRecvError::Empty => "Empty",
        TryRecvError::Disconnected => "Disconnected",
        TryRecvError::Corrupted(c) => corrupted(c),
    }
}

fn commit_kind(e: &CommitError) -> &'static str {
    match e {
        CommitError::TooLong { .. } => "CommitTooLong",
        CommitError::Disconnected => "Disconnected",
        CommitError::Corrupted(c) => corrupted(c),
    }
}

fn open_kind(e: &OpenError) -> &'static str {
    assert!(!e.to_string().is_empty());
    match e {
        OpenError::Corrupted(c) => {
            corrupted(c);
            "open:Corrupted"
        }
        OpenError::RegistryFull { .. } => "open:RegistryFull",
        OpenError::EndpointClosed(_) => "open:EndpointClosed",
        OpenError::Poisoned => "open:Poisoned",
        _ => "open:other",
    }
}

/// Reads every byte of a received message (a length out of range would fault here).
fn touch(m: &[u8]) -> u64 {
    m.iter().map(|&b| u64::from(b)).sum()
}

fn pick_timeout(rng: &mut Rng) -> Duration {
    Duration::from_millis(rng.pick(&TIMEOUTS_MS))
}

fn pick_strategy(rng: &mut Rng) -> WaitStrategy {
    rng.pick(&[
        WaitStrategy::Adaptive,
        WaitStrategy::Block,
        WaitStrategy::Spin,
    ])
}

/// Runs `body` until `stop`, counting a panic instead of unwinding further.
fn worker(stop: &AtomicBool, rng: Rng, body: impl FnOnce(&AtomicBool, Rng, &mut Tally)) -> Tally {
    let mut t = Tally::default();
    if std::panic::catch_unwind(AssertUnwindSafe(|| body(stop, rng, &mut t))).is_err() {
        t.panics += 1;
    }
    t
}

/// Pauses a thread whose handle only reports errors now, until `stop`.
fn pace(t: &Tally) {
    if t.stalled {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn spsc_producer(mut tx: spsc::Producer, stop: &AtomicBool, mut rng: Rng, t: &mut Tally) {
    let max = tx.max_message();
    let buf: Vec<u8> = (0..max).map(|i| i as u8).collect();
    while !stop.load(Ordering::Relaxed) {
        let timeout = pick_timeout(&mut rng);
        let len = rng.below(max as u64 + 1) as usize;
        match rng.below(8) {
            0 | 1 => {
                let r = t.timed("spsc.send_timeout", timeout, || {
                    tx.send_timeout(&buf[..len], timeout)
                });
                t.note(r.as_ref().map_or_else(send_timeout_kind, |_| "ok"));
            }
            2 => {
                let r = t.timed("spsc.try_send", Duration::ZERO, || tx.try_send(&buf[..len]));
                t.note(r.as_ref().map_or_else(try_send_kind, |_| "ok"));
            }
            3 => {
                let r = t.timed("spsc.reserve_timeout", timeout, || {
                    tx.reserve_timeout(len, timeout)
                });
                match r {
                    Ok(mut g) => {
                        g.fill(0xA5);
                        assert!(!format!("{g:?}").is_empty());
                        // Sometimes one byte too many: refused with a typed error.
                        let n = if rng.chance(10) { len + 1 } else { len };
                        t.note(g.commit(n).as_ref().map_or_else(commit_kind, |_| "ok"));
                    }
                    Err(e) => t.note(send_timeout_kind(&e)),
                }
            }
            4 => match t.timed("spsc.try_reserve", Duration::ZERO, || tx.try_reserve(len)) {
                Ok(g) => {
                    drop(g);
                    t.note("ok");
                }
                Err(e) => t.note(try_send_kind(&e)),
            },
            5 => {
                let mut batch = tx.batch();
                for _ in 0..rng.below(4) + 1 {
                    let r = batch.try_send(&buf[..len]);
                    t.note(r.as_ref().map_or_else(try_send_kind, |_| "ok"));
                    assert!(!format!("{batch:?}").is_empty());
                }
                if rng.chance(50) {
                    batch.publish();
                }
            }
            6 => {
                let used = tx.used_bytes();
                assert!(used <= tx.capacity(), "{used} > {}", tx.capacity());
                let _ = (tx.is_empty(), tx.is_disconnected(), tx.wait_stats());
                assert!(!format!("{tx:?}").is_empty());
            }
            _ => tx.set_wait_strategy(pick_strategy(&mut rng)),
        }
        pace(t);
    }
    t.timed("spsc.producer_drop", Duration::ZERO, || drop(tx));
}

fn spsc_consumer(mut rx: spsc::Consumer, stop: &AtomicBool, mut rng: Rng, t: &mut Tally) {
    let mut sum = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let timeout = pick_timeout(&mut rng);
        match rng.below(7) {
            0..=2 => {
                let r = t.timed("spsc.recv_timeout", timeout, || {
                    rx.recv_timeout(timeout).map(|m| touch(&m))
                });
                match r {
                    Ok(s) => {
                        sum = sum.wrapping_add(s);
                        t.note("ok");
                    }
                    Err(e) => t.note(recv_timeout_kind(&e)),
                }
            }
            3 => {
                let r = t.timed("spsc.try_recv", Duration::ZERO, || {
                    rx.try_recv().map(|m| touch(&m))
                });
                t.note(r.as_ref().map_or_else(try_recv_kind, |_| "ok"));
            }
            4 => {
                let max = rng.below(64) as usize + 1;
                let r = t.timed("spsc.drain", Duration::ZERO, || {
                    rx.drain(max, |m| sum = sum.wrapping_add(touch(m)))
                });
                match r {
                    Ok(n) => {
                        assert!(n <= max);
                        t.note("ok");
                    }
                    Err(e) => t.note(try_recv_kind(&e)),
                }
            }
            5 => {
                let k = rng.below(8) as usize + 1;
                let got: Vec<Result<Vec<u8>, Corruption>> =
                    t.timed("spsc.try_iter", Duration::ZERO, || {
                        rx.try_iter().take(k).collect()
                    });
                for g in &got {
                    t.note(g.as_ref().map_or_else(corrupted, |_| "ok"));
                }
            }
            _ => {
                assert!(rx.used_bytes() <= rx.capacity());
                let _ = (rx.is_empty(), rx.is_disconnected(), rx.wait_stats());
                assert!(!format!("{rx:?}").is_empty());
                if rng.chance(20) {
                    rx.set_wait_strategy(pick_strategy(&mut rng));
                }
            }
        }
        pace(t);
    }
    std::hint::black_box(sum);
    t.timed("spsc.consumer_drop", Duration::ZERO, || drop(rx));
}

fn mpmc_sender(mut tx: mpmc::Sender, stop: &AtomicBool, mut rng: Rng, t: &mut Tally) {
    let max = tx.max_message();
    let buf: Vec<u8> = (0..max).map(|i| i as u8).collect();
    while !stop.load(Ordering::Relaxed) {
        let timeout = pick_timeout(&mut rng);
        let len = rng.below(max as u64 + 1) as usize;
        match rng.below(8) {
            0 | 1 => {
                let r = t.timed("mpmc.send_timeout", timeout, || {
                    tx.send_timeout(&buf[..len], timeout)
                });
                t.note(r.as_ref().map_or_else(send_timeout_kind, |_| "ok"));
            }
            2 => {
                let r = t.timed("mpmc.try_send", Duration::ZERO, || tx.try_send(&buf[..len]));
                t.note(r.as_ref().map_or_else(try_send_kind, |_| "ok"));
            }
            3 => {
                let r = t.timed("mpmc.reserve_timeout", timeout, || {
                    tx.reserve_timeout(len, timeout)
                });
                match r {
                    Ok(mut g) => {
                        g.fill(0x5A);
                        assert!(!format!("{g:?}").is_empty());
                        if rng.chance(20) {
                            drop(g);
                            t.note("ok");
                        } else {
                            let n = if rng.chance(10) { len + 1 } else { len };
                            t.note(g.commit(n).as_ref().map_or_else(commit_kind, |_| "ok"));
                        }
                    }
                    Err(e) => t.note(send_timeout_kind(&e)),
                }
            }
            4 => {
                // A second endpoint of this side: attaches (side word, registry), sends once,
                // closes (side word again).
                match t.timed("mpmc.sender_try_clone", Duration::ZERO, || tx.try_clone()) {
                    Ok(mut other) => {
                        let r = t.timed("mpmc.clone_try_send", Duration::ZERO, || {
                            other.try_send(&buf[..len])
                        });
                        t.note(r.as_ref().map_or_else(try_send_kind, |_| "ok"));
                        t.timed("mpmc.clone_drop", Duration::ZERO, || drop(other));
                    }
                    Err(e) => t.note(open_kind(&e)),
                }
            }
            5 => {
                assert!(tx.len() <= tx.capacity());
                let _ = (tx.is_empty(), tx.is_disconnected(), tx.wait_stats());
                assert!(!format!("{tx:?}").is_empty());
            }
            6 => match t.timed("mpmc.try_reserve", Duration::ZERO, || tx.try_reserve(len)) {
                Ok(g) => {
                    let _ = g.commit(0);
                    t.note("ok");
                }
                Err(e) => t.note(try_send_kind(&e)),
            },
            _ => tx.set_wait_strategy(pick_strategy(&mut rng)),
        }
        pace(t);
    }
    t.timed("mpmc.sender_drop", Duration::ZERO, || drop(tx));
}

fn mpmc_receiver(mut rx: mpmc::Receiver, stop: &AtomicBool, mut rng: Rng, t: &mut Tally) {
    let mut sum = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let timeout = pick_timeout(&mut rng);
        match rng.below(7) {
            0..=2 => {
                let r = t.timed("mpmc.recv_timeout", timeout, || {
                    rx.recv_timeout(timeout).map(|m| touch(&m))
                });
                match r {
                    Ok(s) => {
                        sum = sum.wrapping_add(s);
                        t.note("ok");
                    }
                    Err(e) => t.note(recv_timeout_kind(&e)),
                }
            }
            3 => {
                let r = t.timed("mpmc.try_recv", Duration::ZERO, || {
                    rx.try_recv().map(|m| touch(&m))
                });
                t.note(r.as_ref().map_or_else(try_recv_kind, |_| "ok"));
            }
            4 => {
                let k = rng.below(8) as usize + 1;
                let got: Vec<Result<Vec<u8>, Corruption>> =
                    t.timed("mpmc.try_iter", Duration::ZERO, || {
                        rx.try_iter().take(k).collect()
                    });
                for g in &got {
                    t.note(g.as_ref().map_or_else(corrupted, |_| "ok"));
                }
            }
            5 => match t.timed("mpmc.receiver_try_clone", Duration::ZERO, || rx.try_clone()) {
                Ok(mut other) => {
                    let r = t.timed("mpmc.clone_try_recv", Duration::ZERO, || {
                        other.try_recv().map(|m| touch(&m))
                    });
                    t.note(r.as_ref().map_or_else(try_recv_kind, |_| "ok"));
                    t.timed("mpmc.clone_drop", Duration::ZERO, || drop(other));
                }
                Err(e) => t.note(open_kind(&e)),
            },
            _ => {
                assert!(rx.len() <= rx.capacity());
                let _ = (rx.is_empty(), rx.is_disconnected(), rx.wait_stats());
                assert!(!format!("{rx:?}").is_empty());
                if rng.chance(20) {
                    rx.set_wait_strategy(pick_strategy(&mut rng));
                }
            }
        }
        pace(t);
    }
    std::hint::black_box(sum);
    t.timed("mpmc.receiver_drop", Duration::ZERO, || drop(rx));
}

/// Panic messages of this victim process, for the `DONE` line.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// One round in the victim: creates the ring, attaches both ends, answers `READY`, runs the
/// two threads until `STOP` (or the end of stdin), and returns the `DONE` line.
fn victim_round(
    seed: u64,
    round: u64,
    name: &str,
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
) -> String {
    let p = plan(seed, round);
    let stop = AtomicBool::new(false);
    let mut rng = Rng::new(seed ^ round ^ 0x00C0_FFEE);
    let (a, b) = (Rng::new(rng.next()), Rng::new(rng.next()));
    let mut tally = Tally::default();
    let wait_for_stop = |lines: &mut dyn Iterator<Item = std::io::Result<String>>| {
        // At the end of stdin (this process's parent went away) stop as well.
        if let Some(Ok(l)) = lines.next() {
            assert_eq!(l, format!("STOP {round}"), "protocol");
        }
        stop.store(true, Ordering::Relaxed);
    };
    let (ta, tb) = if p.mpmc {
        let cfg = mpmc::Config::default()
            .slots(p.slots)
            .max_message_bytes(p.max_message)
            .endpoints(p.endpoints)
            .wait_strategy(p.strategy);
        let tx = mpmc::Sender::create(name, cfg).expect("create MPMC ring");
        let rx = mpmc::Receiver::open(name).expect("open MPMC receiver");
        println!("{MARK}READY {round}");
        std::thread::scope(|s| {
            let ha = s.spawn(|| worker(&stop, a, |st, r, t| mpmc_sender(tx, st, r, t)));
            let hb = s.spawn(|| worker(&stop, b, |st, r, t| mpmc_receiver(rx, st, r, t)));
            wait_for_stop(lines);
            (ha.join().unwrap(), hb.join().unwrap())
        })
    } else {
        let cfg = spsc::Config::default()
            .capacity_bytes(p.capacity)
            .wait_strategy(p.strategy);
        let tx = spsc::Producer::create(name, cfg).expect("create SPSC ring");
        let rx = spsc::Consumer::open(name).expect("open SPSC consumer");
        println!("{MARK}READY {round}");
        std::thread::scope(|s| {
            let ha = s.spawn(|| worker(&stop, a, |st, r, t| spsc_producer(tx, st, r, t)));
            let hb = s.spawn(|| worker(&stop, b, |st, r, t| spsc_consumer(rx, st, r, t)));
            wait_for_stop(lines);
            (ha.join().unwrap(), hb.join().unwrap())
        })
    };
    tally.merge(ta);
    tally.merge(tb);
    let mut line = format!("DONE {round}");
    for (k, v) in &tally.counts {
        line.push_str(&format!(" {k}={v}"));
    }
    line.push_str(&format!(
        " panics={} slow={} worst_us={} worst_op={}",
        tally.panics,
        tally.slow.len(),
        tally.worst.as_micros(),
        tally.worst_op
    ));
    let mut notes: Vec<String> =
        std::mem::take(&mut *PANICS.lock().unwrap_or_else(|e| e.into_inner()));
    notes.extend(tally.slow);
    if !notes.is_empty() {
        line.push_str(" | ");
        line.push_str(&notes.join("; ").replace('\n', " "));
    }
    line
}

/// Runs the rounds this process's parent hands it over stdin, until `EXIT`.
pub fn serve(seed: u64) {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("victim panic: {info}");
        let mut p = PANICS.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() < 4 {
            p.push(format!("panic: {info}"));
        }
    }));
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    while let Some(Ok(cmd)) = lines.next() {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            ["ROUND", round, name] => {
                let round: u64 = round.parse().expect("round");
                let done = victim_round(seed, round, name, &mut lines);
                println!("{MARK}{done}");
            }
            ["EXIT"] => return,
            other => panic!("unknown command {other:?}"),
        }
    }
}
