//! SIGKILL at random points: children using SPSC and MPMC rings are killed by pid at random
//! delays, or a random few microseconds after they report entering a phase, or once they
//! sleep in the futex (`crash_loop/kill.rs`), so that kills land everywhere: before `main`,
//! mid-attach (open), inside `send`, `reserve` and `commit`, in a batch, asleep in the
//! futex, mid-close, holding a received message, idle. The survivors must notice within a
//! second (every wait is bounded), and no message may be lost, duplicated or reordered
//! beyond what the crate documents:
//!
//! - SPSC (a fresh ring per round; the test holds the other end): when the producer is
//!   killed, every message it reported published arrives, in order, exactly once, then end
//!   of stream within a second of the kill; when the consumer is killed, it saw a prefix of
//!   the stream in order, and the blocked producer gets `Disconnected` within a second.
//! - MPMC (one ring for the whole run, three sender and three receiver children, each killed
//!   and replaced, each opening and closing handles over and over; the test sends and
//!   receives too): no message is received twice, each sender's messages arrive in order at
//!   every receiver, the ring never stalls for a second, and the only messages missing are
//!   those the documentation allows: taken by a receiver that died before releasing them
//!   (at most one per receiver killed while receiving), or never published by a sender
//!   killed mid-send. After the last sender is gone, end of stream within a second.
//!
//! `SHMRING_CRASH_ROUNDS` sets the rounds per test (one kill each, plus six at the end of
//! the MPMC test; 500 gives over 1,000 kills), `SHMRING_CRASH_SEED` the seed (printed).
//! Children report through a board in shared memory (`crash_loop/board.rs`) that outlives
//! them; they are this test binary started again (`crash_child`), killed by their pid.

#[path = "crash_loop/board.rs"]
mod board;
#[path = "crash_loop/children.rs"]
mod children;
mod common;
#[path = "crash_loop/kill.rs"]
mod kill;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use board::{
    ATTACH, BATCH, Board, CLOSE, CLOSED_GENS, COMMIT, COMMITTED, COUNT, GEN, HOLD, PHASE, RECV,
    RESERVE, SEND, XorShift,
};
use common::RingName;
use common::procs::{self, Started};
use kill::{Aim, Pinned, Tally, allowed_cpus, reap_killed, sigkill};
use shmring::{RecvTimeoutError, SendTimeoutError, mpmc, spsc};

const ENTRY: &str = "crash_child";
const ROUNDS_VAR: &str = "SHMRING_CRASH_ROUNDS";
const SEED_VAR: &str = "SHMRING_CRASH_SEED";
/// Rounds per test unless `SHMRING_CRASH_ROUNDS` says otherwise.
const DEFAULT_ROUNDS: u64 = 100;
const DEFAULT_SEED: u64 = 0x5EED_C0DE_2026;
/// A dead or gone peer must be noticed within this; the rings must never stall this long.
const NOTICE: Duration = Duration::from_secs(1);
/// Bound of the survivors' timed calls; they check the clock in between.
const TICK: Duration = Duration::from_millis(50);
/// How long a child lives at most if nobody kills it.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
/// Most messages an SPSC producer publishes at once (a batch).
const MAX_BATCH: u64 = 8;
/// MPMC children of each side alive at any time.
const MPMC_SIDE: usize = 3;
/// Bytes of an MPMC message: stream, sequence number, check word.
const MSG: usize = 24;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

/// Rounds and seed, from the environment or the defaults; printed.
fn params(test: &str) -> (u64, u64) {
    let rounds = std::env::var(ROUNDS_VAR).map_or(DEFAULT_ROUNDS, |v| v.parse().unwrap());
    let seed = std::env::var(SEED_VAR).map_or(DEFAULT_SEED, |v| {
        let v = v.trim_start_matches("0x");
        u64::from_str_radix(v, 16).expect("hexadecimal seed")
    });
    println!("{test}: {rounds} rounds, seed {seed:#x} ({SEED_VAR}={seed:x} to repeat)");
    (rounds, seed)
}

/// MPMC message of stream `uid`, number `seq`.
fn encode(uid: u64, seq: u64) -> [u8; MSG] {
    let mut m = [0; MSG];
    m[..8].copy_from_slice(&uid.to_le_bytes());
    m[8..16].copy_from_slice(&seq.to_le_bytes());
    m[16..].copy_from_slice(&common::mix(uid << 32 ^ seq).to_le_bytes());
    m
}

/// The stream and sequence number of an MPMC message, if it is well formed.
fn decode(m: &[u8]) -> Option<(u64, u64)> {
    let word = |i: usize| u64::from_le_bytes(m[i..i + 8].try_into().unwrap());
    (m.len() == MSG && word(16) == common::mix(word(0) << 32 ^ word(8))).then(|| (word(0), word(8)))
}

// ---------------------------------------------------------------------------------------
// SPSC

#[derive(Default)]
struct SpscTally {
    kills: Tally,
    producer_rounds: u64,
    consumer_rounds: u64,
    one_cpu_rounds: u64,
    messages: u64,
    /// Messages published by a killed producer after its last report (arrived all the same).
    unreported: u64,
    never_attached: u64,
    closed_before_kill: u64,
    slowest_notice: Duration,
}

/// How a survivor's loop ended.
enum End {
    /// End of stream / broken pipe, at this moment.
    Noticed(Instant),
    /// The victim died before it attached: nothing to notice.
    NeverAttached,
}

/// Whether the victim's end of the ring was ever claimed (`inspect` lists claimed entries).
fn attached_ever(name: &RingName, role: &str) -> bool {
    let info = shmring::inspect(name.as_str()).expect("inspect");
    info.endpoints.iter().any(|e| e.role == role)
}

/// Phases an SPSC producer / consumer victim may be killed in on purpose.
const PRODUCER_PHASES: [u64; 6] = [ATTACH, SEND, RESERVE, COMMIT, BATCH, CLOSE];
const CONSUMER_PHASES: [u64; 4] = [ATTACH, RECV, HOLD, CLOSE];

/// One SPSC round: a fresh ring, one victim (producer two times in three), killed at a
/// random moment.
fn spsc_round(round: u64, rng: &mut XorShift, board: &Board, cpus: &[usize], t: &mut SpscTally) {
    let producer_dies = rng.below(3) != 0;
    let capacity = [64usize, 256, 4096][rng.below(3) as usize];
    let max_len = spsc::max_message_for(capacity).min(200);
    let phases: &[u64] = if producer_dies {
        &PRODUCER_PHASES
    } else {
        &CONSUMER_PHASES
    };
    let aim = Aim::pick(rng, Instant::now(), phases);
    // Some victims close after a few messages, so kills also land mid-close and after.
    let plan = if rng.chance(20) || matches!(aim, Aim::Phase { phase: CLOSE, .. }) {
        1 + rng.below(64)
    } else {
        u64::MAX
    };
    let slot = board.slot(0);
    slot.reset();
    let name = RingName::new(&format!("crash-spsc{round}"));
    let mut env = vec![
        ("RING", name.0.clone()),
        ("BOARD", board.name().to_string()),
        ("SLOT", "0".to_string()),
        ("SEED", rng.next_u64().to_string()),
        ("MAX_LEN", max_len.to_string()),
        ("PLAN", plan.to_string()),
    ];
    // A quarter of the rounds run both processes on one CPU.
    let shared_cpu = rng.chance(25);
    let _pinned = shared_cpu.then(|| {
        let cpu = cpus[rng.below(cpus.len() as u64) as usize];
        env.push(("CPU", cpu.to_string()));
        t.one_cpu_rounds += 1;
        Pinned::to(cpu)
    });
    let config = spsc::Config::default().capacity_bytes(capacity);
    let (victim, role) = if producer_dies {
        t.producer_rounds += 1;
        ("producer", "spsc_producer")
    } else {
        t.consumer_rounds += 1;
        ("consumer", "spsc_consumer")
    };
    let mut rx = producer_dies.then(|| spsc::Consumer::create(name.as_str(), config).unwrap());
    let mut tx = (!producer_dies).then(|| spsc::Producer::create(name.as_str(), config).unwrap());
    // The survivor's pauses depend on how many messages it handles: their own numbers, so
    // that the rounds' parameters follow from the seed whatever the timing.
    let mut pauses = XorShift::new(rng.next_u64());
    let mut child = procs::start(ENTRY, &[], role, &env);
    let pid = child.pid();
    let what = format!("round {round} ({victim} killed, {aim:?})");

    let (killed, futex, end, received, sent) = std::thread::scope(|s| {
        let killer = s.spawn(move || {
            aim.wait(pid, slot, shared_cpu);
            sigkill(pid, slot, aim.looks())
        });
        let mut kill: Option<(Instant, bool)> = None;
        let mut killer = Some(killer);
        let (mut received, mut sent) = (0u64, 0u64);
        let mut scratch = Vec::new();
        let end = loop {
            if kill.is_none() && killer.as_ref().is_some_and(|k| k.is_finished()) {
                kill = Some(killer.take().unwrap().join().unwrap());
            }
            if matches!(aim, Aim::Futex) && kill.is_none() {
                // Leave the ring full (empty) until the victim sleeps on it and is killed.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let result = if let Some(rx) = rx.as_mut() {
                match rx.recv_timeout(TICK) {
                    Ok(m) => {
                        common::check_msg(received, max_len, &m, &mut scratch);
                        received += 1;
                        Ok(())
                    }
                    Err(RecvTimeoutError::Timeout) => Err(false),
                    Err(RecvTimeoutError::Disconnected) => Err(true),
                    Err(e) => panic!("{what}: {e:?}"),
                }
            } else {
                let tx = tx.as_mut().unwrap();
                let m = children::spsc_msg(sent, max_len);
                match tx.send_timeout(&m, TICK) {
                    Ok(()) => {
                        sent += 1;
                        Ok(())
                    }
                    Err(SendTimeoutError::Timeout(())) => Err(false),
                    Err(SendTimeoutError::Disconnected(())) => Err(true),
                    Err(e) => panic!("{what}: {e:?}"),
                }
            };
            match result {
                // Now and then the survivor pauses, so the ring runs full (or empty) and
                // the victim sleeps in the futex.
                Ok(()) if pauses.chance(2) => {
                    std::thread::sleep(Duration::from_micros(pauses.below(3_000)));
                }
                Ok(()) => {}
                Err(true) => break End::Noticed(Instant::now()),
                Err(false) => {
                    if let Some((at, _)) = kill {
                        reap_killed(&mut child, &what);
                        if !attached_ever(&name, victim) {
                            break End::NeverAttached;
                        }
                        assert!(
                            at.elapsed() < NOTICE,
                            "{what}: not noticed within {NOTICE:?}"
                        );
                    }
                }
            }
        };
        let (killed, futex) = kill.unwrap_or_else(|| killer.take().unwrap().join().unwrap());
        (killed, futex, end, received, sent)
    });
    reap_killed(&mut child, &what);
    let phase = slot.get(PHASE);
    t.kills.add(phase, futex);
    let survivor_disconnected = match (&rx, &tx) {
        (Some(rx), _) => rx.is_disconnected(),
        (_, Some(tx)) => tx.is_disconnected(),
        _ => unreachable!(),
    };
    match end {
        End::NeverAttached => {
            t.never_attached += 1;
            assert!(
                !survivor_disconnected,
                "{what}: a peer that never came is not gone"
            );
            assert_eq!((received, slot.get(COUNT)), (0, 0), "{what}");
        }
        End::Noticed(at) if at < killed => {
            // The victim closed normally before it was killed.
            t.closed_before_kill += 1;
            assert!(
                phase >= CLOSE,
                "{what}: disconnected while the victim was in phase {phase}"
            );
        }
        End::Noticed(at) => {
            let took = at - killed;
            assert!(took < NOTICE, "{what}: noticed after {took:?}");
            t.slowest_notice = t.slowest_notice.max(took);
        }
    }
    if producer_dies {
        // Everything reported published arrived (checked in order, byte for byte, as it
        // came); beyond that, at most what was being published at the kill.
        let reported = slot.get(COUNT);
        assert!(
            reported <= received && received <= reported + MAX_BATCH,
            "{what}: producer reported {reported} published, consumer received {received}"
        );
        t.unreported += received - reported;
        t.messages += received;
    } else {
        let got = slot.get(COUNT);
        assert!(
            got <= sent,
            "{what}: consumer released {got} of {sent} sent"
        );
        t.messages += got;
    }
    assert_eq!(
        slot.get(board::VIOLATIONS),
        0,
        "{what}: the victim saw a bad message"
    );
}

#[test]
fn spsc_sigkill_at_random_points() {
    let started = Instant::now();
    let (rounds, seed) = params("spsc");
    let mut rng = XorShift::new(seed ^ 0x5350_5343);
    let board = Board::create("crash-spsc", 1);
    let cpus = allowed_cpus();
    let mut t = SpscTally::default();
    for round in 0..rounds {
        spsc_round(round, &mut rng, &board, &cpus, &mut t);
    }
    assert_eq!(t.kills.kills, rounds);
    println!(
        "spsc: {rounds} rounds ({} producers and {} consumers killed, {} on one CPU) in {:?}; \
         {}",
        t.producer_rounds,
        t.consumer_rounds,
        t.one_cpu_rounds,
        started.elapsed(),
        t.kills.report()
    );
    println!(
        "spsc: {} messages; lost 0, duplicated 0, out of order 0; {} published after the \
         producer's last report (delivered); {} victims died before attaching, {} closed \
         before the kill; slowest notice {:?}",
        t.messages, t.unreported, t.never_attached, t.closed_before_kill, t.slowest_notice
    );
}

// ---------------------------------------------------------------------------------------
// MPMC

/// One sender's stream (one handle generation of one child, or the test's own sender).
#[derive(Default)]
struct Stream {
    /// Messages its sender reported published.
    committed: u64,
    /// Its sender closed it normally (`committed` is then exact).
    closed: bool,
    /// Its sender was harvested (reported `committed`).
    known: bool,
    /// The sender's phase when it was killed, if it was killed with this stream open.
    killed_in: Option<u64>,
    /// Which sequence numbers arrived.
    got: Vec<u64>,
}

/// What every receiver got, and who sent what.
#[derive(Default)]
struct Ledger {
    streams: HashMap<u64, Stream>,
    received: u64,
    duplicates: u64,
}

impl Ledger {
    fn receive(&mut self, uid: u64, seq: u64) {
        let got = &mut self.streams.entry(uid).or_default().got;
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if got.len() <= word {
            got.resize(word + 1, 0);
        }
        if got[word] & bit != 0 {
            self.duplicates += 1;
            eprintln!("stream {uid:#x}: message {seq} received twice");
        } else {
            got[word] |= bit;
            self.received += 1;
        }
    }
}

/// Phases an MPMC sender victim may be killed in on purpose (receivers: those of an SPSC
/// consumer).
const SENDER_PHASES: [u64; 5] = [ATTACH, SEND, RESERVE, COMMIT, CLOSE];

/// A child of the MPMC test.
struct Kid {
    child: Started,
    spawn: u64,
    born: Instant,
}

/// Starts the child of board slot `i` (senders first, then receivers).
fn spawn_kid(i: usize, spawn: u64, board: &Board, ring: &RingName, rng: &mut XorShift) -> Kid {
    board.slot(i).reset();
    let role = if i < MPMC_SIDE {
        "mpmc_sender"
    } else {
        "mpmc_receiver"
    };
    let env = [
        ("RING", ring.0.clone()),
        ("BOARD", board.name().to_string()),
        ("SLOT", i.to_string()),
        ("SEED", rng.next_u64().to_string()),
        ("SPAWN", spawn.to_string()),
    ];
    Kid {
        child: procs::start(ENTRY, &[], role, &env),
        spawn,
        born: Instant::now(),
    }
}

#[derive(Default)]
struct MpmcTally {
    kills: Tally,
    sender_kills: u64,
    receiver_kills: u64,
    /// Receivers killed while they may have held an unlogged message.
    receivers_killed_receiving: u64,
    violations: u64,
}

/// Kills the child of slot `i` (`look`: see [`sigkill`]), reaps it and books what it
/// reported.
fn kill_and_harvest(
    i: usize,
    kid: &mut Kid,
    look: bool,
    board: &Board,
    ledger: &mut Ledger,
    t: &mut MpmcTally,
) {
    let slot = board.slot(i);
    let (_, futex) = sigkill(kid.child.pid(), slot, look);
    reap_killed(&mut kid.child, &format!("MPMC child {}", kid.spawn));
    let phase = slot.get(PHASE);
    t.kills.add(phase, futex);
    t.violations += slot.get(board::VIOLATIONS);
    if i < MPMC_SIDE {
        t.sender_kills += 1;
        let last = slot.get(GEN);
        let closed = slot.get(CLOSED_GENS);
        for generation in 0..=last {
            let s = ledger
                .streams
                .entry(kid.spawn << 8 | generation)
                .or_default();
            s.committed = slot.get(COMMITTED + generation as usize);
            s.closed = generation < closed;
            s.known = true;
            s.killed_in = (!s.closed).then_some(phase);
        }
    } else {
        t.receiver_kills += 1;
        t.receivers_killed_receiving += u64::from(phase == board::RECV || phase == board::HOLD);
        for id in slot.logged() {
            ledger.receive(id >> 32, id & 0xFFFF_FFFF);
        }
    }
}

/// The test's own sender (stream 0): sends until `stop`, never stalled for `NOTICE`, then
/// closes. Returns how many it sent, the longest wait for a send, and when it closed.
fn parent_sender(mut tx: mpmc::Sender, stop: &AtomicBool) -> (u64, Duration, Instant) {
    let (mut seq, mut longest, mut last) = (0, Duration::ZERO, Instant::now());
    while !stop.load(Ordering::Relaxed) {
        match tx.send_timeout(&encode(0, seq), TICK) {
            Ok(()) => {
                seq += 1;
                longest = longest.max(last.elapsed());
                last = Instant::now();
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(SendTimeoutError::Timeout(())) => {}
            Err(e) => panic!("the test's sender: {e:?}"),
        }
        assert!(
            last.elapsed() < NOTICE,
            "the test's sender stalled for {NOTICE:?}"
        );
    }
    let closed = Instant::now();
    drop(tx);
    (seq, longest, closed)
}

/// The test's own receiver: receives until end of stream, checking each stream's order,
/// never stalled for `NOTICE` while the test's sender runs. Returns what it got, the
/// longest wait, and when end of stream came.
fn parent_receiver(mut rx: mpmc::Receiver, stop: &AtomicBool) -> (Ledger, Duration, Instant) {
    let mut ledger = Ledger::default();
    let mut last_seq = HashMap::<u64, u64>::new();
    let (mut longest, mut last) = (Duration::ZERO, Instant::now());
    loop {
        match rx.recv_timeout(TICK) {
            Ok(m) => {
                let (uid, seq) = decode(&m).unwrap_or_else(|| panic!("bad message {:?}", &*m));
                drop(m);
                let prev = last_seq.insert(uid, seq);
                assert!(
                    prev.is_none_or(|p| p < seq),
                    "stream {uid:#x}: {seq} after {prev:?}"
                );
                ledger.receive(uid, seq);
                if !stop.load(Ordering::Relaxed) {
                    longest = longest.max(last.elapsed());
                }
                last = Instant::now();
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return (ledger, longest, Instant::now()),
            Err(e) => panic!("the test's receiver: {e:?}"),
        }
        let stalled = last.elapsed();
        assert!(
            stalled < NOTICE || stop.load(Ordering::Relaxed),
            "the test's receiver stalled for {stalled:?}"
        );
        assert!(stalled < NOTICE * 10, "no end of stream");
    }
}

#[test]
fn mpmc_sigkill_at_random_points() {
    let started = Instant::now();
    let (rounds, seed) = params("mpmc");
    let mut rng = XorShift::new(seed ^ 0x4D50_4D43);
    let board = Board::create("crash-mpmc", 2 * MPMC_SIDE);
    let ring = RingName::new("crash-mpmc");
    let config = mpmc::Config::default().slots(8).max_message_bytes(48);
    // The test's receiver and sender keep both sides open while children come and go.
    let rx = mpmc::Receiver::create(ring.as_str(), config).unwrap();
    let tx = mpmc::Sender::open(ring.as_str()).unwrap();
    let mut ledger = Ledger::default();
    let mut t = MpmcTally::default();
    let mut spawns = 0u64;
    let mut rounds_done = 0u64;
    let mut kids: Vec<Kid> = (0..2 * MPMC_SIDE)
        .map(|i| {
            spawns += 1;
            spawn_kid(i, spawns, &board, &ring, &mut rng)
        })
        .collect();
    let stop = AtomicBool::new(false);
    let (sent, send_wait, mine, recv_wait, senders_gone, end_of_stream) = std::thread::scope(|s| {
        let sender = s.spawn(|| parent_sender(tx, &stop));
        let receiver = s.spawn(|| parent_receiver(rx, &stop));
        for _ in 0..rounds {
            rounds_done += 1;
            // A quarter of the kills hit the newest child early in its life (starting,
            // attaching); the others a random child at a random moment or in a phase.
            let newest = (0..kids.len()).max_by_key(|&i| kids[i].born).unwrap();
            let (i, aim) = if rng.chance(25) {
                let at = kids[newest].born + Duration::from_micros(rng.below(8_000));
                (newest, Aim::At(at))
            } else {
                let i = rng.below(kids.len() as u64) as usize;
                let phases: &[u64] = if i < MPMC_SIDE {
                    &SENDER_PHASES
                } else {
                    &CONSUMER_PHASES
                };
                (i, Aim::pick(&mut rng, Instant::now(), phases))
            };
            aim.wait(kids[i].child.pid(), board.slot(i), false);
            kill_and_harvest(i, &mut kids[i], aim.looks(), &board, &mut ledger, &mut t);
            spawns += 1;
            kids[i] = spawn_kid(i, spawns, &board, &ring, &mut rng);
            if sender.is_finished() || receiver.is_finished() {
                break;
            }
        }
        // The end: every child killed wherever it is, then the test's sender closes.
        for (i, kid) in kids.iter_mut().enumerate() {
            kill_and_harvest(i, kid, true, &board, &mut ledger, &mut t);
        }
        stop.store(true, Ordering::Relaxed);
        let (sent, send_wait, senders_gone) = sender
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let (mine, recv_wait, end) = receiver
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (sent, send_wait, mine, recv_wait, senders_gone, end)
    });
    let took = end_of_stream - senders_gone;
    assert!(
        took < NOTICE,
        "end of stream {took:?} after the last sender"
    );

    // Put everything together: the test's own receipts and stream.
    for (uid, s) in mine.streams {
        for (w, bits) in s.got.iter().enumerate() {
            for b in 0..64 {
                if bits & (1 << b) != 0 {
                    ledger.receive(uid, w as u64 * 64 + b);
                }
            }
        }
    }
    let own = ledger.streams.entry(0).or_default();
    (own.committed, own.closed, own.known) = (sent, true, true);

    let (mut lost, mut unreported, mut unpublished) = (0, 0, 0);
    for (uid, s) in &ledger.streams {
        assert!(
            s.known,
            "stream {uid:#x}: messages from a sender never started"
        );
        let received = |q: u64| {
            s.got
                .get((q / 64) as usize)
                .is_some_and(|w| w & (1 << (q % 64)) != 0)
        };
        let highest = (0..s.got.len() as u64 * 64).rev().find(|&q| received(q));
        // Nothing beyond what was published: the reported count, plus the message being
        // sent when a sender was killed.
        let limit = s.committed + u64::from(!s.closed);
        assert!(
            highest.is_none_or(|q| q < limit),
            "stream {uid:#x}: message {highest:?} received, {} reported",
            s.committed
        );
        lost += (0..s.committed).filter(|&q| !received(q)).count() as u64;
        if let Some(phase) = s.killed_in {
            if received(s.committed) {
                unreported += 1;
            } else if (board::SEND..=board::COMMIT).contains(&phase) {
                unpublished += 1;
            }
        }
    }
    assert_eq!(ledger.duplicates, 0, "messages received twice");
    assert_eq!(
        t.violations, 0,
        "receivers saw messages out of order or garbled"
    );
    assert!(
        lost <= t.receivers_killed_receiving,
        "{lost} reported messages never arrived; only {} receivers died while receiving",
        t.receivers_killed_receiving
    );
    assert_eq!(rounds_done, rounds);
    assert_eq!(t.kills.kills, rounds + 2 * MPMC_SIDE as u64);
    println!(
        "mpmc: {rounds} rounds, {} children started, {} senders and {} receivers killed, \
         in {:?}; {}",
        spawns,
        t.sender_kills,
        t.receiver_kills,
        started.elapsed(),
        t.kills.report()
    );
    println!(
        "mpmc: {} streams, {} messages received, duplicates {}, out of order 0; lost with a \
         receiver that died holding them: {lost} (of {} receivers killed while receiving); \
         never published by a sender killed mid-send: {unpublished}; published after the \
         sender's last report: {unreported}; the test's sender sent {sent} (longest wait \
         {send_wait:?}), its receiver's longest wait {recv_wait:?}; end of stream {took:?} \
         after the last sender",
        ledger.streams.len(),
        ledger.received,
        ledger.duplicates,
        t.receivers_killed_receiving
    );
}

// ---------------------------------------------------------------------------------------
// Children

/// Dispatcher run in child processes; does nothing unless started by `procs::start`.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn crash_child() {
    let Some(role) = procs::role() else {
        return;
    };
    let board = Board::open(&env("BOARD"));
    let slot = board.slot(env("SLOT").parse().unwrap());
    slot.set(
        board::TID,
        rustix::thread::gettid().as_raw_nonzero().get() as u64,
    );
    if let Ok(cpu) = std::env::var("CPU") {
        assert!(common::pin_to_cpu(cpu.parse().unwrap()), "pin to CPU {cpu}");
    }
    let mut rng = XorShift::new(env("SEED").parse().unwrap());
    let ring = env("RING");
    let max_len = || env("MAX_LEN").parse().unwrap();
    let spawn = || env("SPAWN").parse().unwrap();
    match role.as_str() {
        "spsc_producer" => children::spsc_producer(&ring, slot, &mut rng, max_len()),
        "spsc_consumer" => children::spsc_consumer(&ring, slot, &mut rng, max_len()),
        "mpmc_sender" => children::mpmc_sender(&ring, slot, &mut rng, spawn()),
        "mpmc_receiver" => children::mpmc_receiver(&ring, slot, &mut rng),
        other => panic!("unknown role {other}"),
    }
}
