//! The victims of the crash loop: children that use a ring at random, report every step
//! on their board slot, and run until they are killed.

use std::time::Duration;

use super::board::{
    AIM, ATTACH, BATCH, CLOSE, CLOSED, CLOSED_GENS, COMMIT, COMMITTED, COUNT, GEN, HOLD, IDLE,
    MAX_GENS, RECV, RESERVE, SEEN, SEND, Slot, VIOLATIONS, XorShift,
};
use super::common;
use super::{CHILD_LIFETIME, MAX_BATCH, decode, encode};
use shmring::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError, mpmc, spsc};

/// Waits to be killed (the phase stays what it was).
fn park() -> ! {
    std::thread::sleep(CHILD_LIFETIME);
    panic!("never killed");
}

/// Reports entering phase `p`; if the test aims a kill at it, waits until the test has
/// seen it (see `board::AIM`).
fn phase(slot: &Slot<'_>, p: u64) {
    slot.set(super::board::PHASE, p);
    if slot.get(AIM) == p + 1 {
        let t = std::time::Instant::now();
        while slot.get(SEEN) == 0 && t.elapsed() < Duration::from_secs(1) {
            std::thread::yield_now();
        }
        slot.set(AIM, 0);
    }
}

/// Sometimes pauses (up to a millisecond), so kills also land between calls and the peer's
/// ring runs full or empty.
fn maybe_idle(slot: &Slot<'_>, rng: &mut XorShift, percent: u64) {
    if rng.chance(percent) {
        phase(slot, IDLE);
        std::thread::sleep(Duration::from_micros(rng.below(1000)));
    }
}

/// Message `seq` of the SPSC stream.
pub(crate) fn spsc_msg(seq: u64, max_len: usize) -> Vec<u8> {
    let mut m = vec![0; common::msg_len(seq, max_len)];
    common::fill_msg(seq, &mut m);
    m
}

/// SPSC producer: sends messages 0, 1, ... in every way the API offers (`send`, `reserve`
/// and `commit`, batches, `try_send`, `send_timeout`), reporting each after it is published;
/// after `plan` messages it closes. Every send must succeed: the test's consumer never
/// leaves.
pub(crate) fn spsc_producer(name: &str, slot: Slot<'_>, rng: &mut XorShift, max_len: usize) {
    let plan: u64 = super::env("PLAN").parse().unwrap();
    phase(&slot, ATTACH);
    let mut tx = spsc::Producer::open(name).expect("open producer");
    let mut seq = 0;
    while seq < plan {
        let m = spsc_msg(seq, max_len);
        match rng.below(10) {
            0..=4 => {
                phase(&slot, SEND);
                tx.send(&m).expect("send");
                seq += 1;
            }
            5 | 6 => {
                phase(&slot, RESERVE);
                let mut g = tx.reserve(m.len()).expect("reserve");
                g[..m.len()].copy_from_slice(&m);
                phase(&slot, COMMIT);
                g.commit(m.len()).expect("commit");
                seq += 1;
            }
            7 => {
                phase(&slot, BATCH);
                let n = (1 + rng.below(MAX_BATCH)).min(plan - seq);
                let mut b = tx.batch();
                for s in seq..seq + n {
                    b.send(&spsc_msg(s, max_len)).expect("batch send");
                }
                b.publish();
                drop(b);
                seq += n;
            }
            8 => {
                phase(&slot, SEND);
                loop {
                    match tx.try_send(&m) {
                        Ok(()) => break,
                        Err(TrySendError::Full(())) => std::thread::yield_now(),
                        Err(e) => panic!("try_send: {e:?}"),
                    }
                }
                seq += 1;
            }
            _ => {
                phase(&slot, SEND);
                loop {
                    match tx.send_timeout(&m, Duration::from_millis(20)) {
                        Ok(()) => break,
                        Err(SendTimeoutError::Timeout(())) => {}
                        Err(e) => panic!("send_timeout: {e:?}"),
                    }
                }
                seq += 1;
            }
        }
        slot.set(COUNT, seq);
        maybe_idle(&slot, rng, 20);
    }
    phase(&slot, CLOSE);
    drop(tx);
    phase(&slot, CLOSED);
    park();
}

/// SPSC consumer: receives with `recv_timeout`, `try_recv` and `drain`, sometimes holding a
/// message for a while; checks every message (order and contents) and reports violations
/// and how many it released; after `plan` messages it closes.
pub(crate) fn spsc_consumer(name: &str, slot: Slot<'_>, rng: &mut XorShift, max_len: usize) {
    let plan: u64 = super::env("PLAN").parse().unwrap();
    phase(&slot, ATTACH);
    let mut rx = spsc::Consumer::open(name).expect("open consumer");
    let mut next = 0u64;
    let check = |seq: u64, got: &[u8]| {
        if got != spsc_msg(seq, max_len).as_slice() {
            eprintln!("spsc consumer: message {seq} differs");
            slot.add(VIOLATIONS, 1);
        }
    };
    while next < plan {
        match rng.below(10) {
            0..=5 => {
                phase(&slot, RECV);
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(m) => {
                        check(next, &m);
                        if rng.chance(20) {
                            phase(&slot, HOLD);
                            std::thread::sleep(Duration::from_micros(rng.below(1000)));
                        }
                        drop(m);
                        next += 1;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(e) => panic!("recv_timeout: {e:?}"),
                }
            }
            6 | 7 => {
                phase(&slot, RECV);
                match rx.try_recv() {
                    Ok(m) => {
                        check(next, &m);
                        drop(m);
                        next += 1;
                    }
                    Err(TryRecvError::Empty) => std::thread::yield_now(),
                    Err(e) => panic!("try_recv: {e:?}"),
                }
            }
            _ => {
                phase(&slot, RECV);
                let max = (1 + rng.below(8)).min(plan - next) as usize;
                let mut seq = next;
                match rx.drain(max, |m| {
                    check(seq, m);
                    seq += 1;
                }) {
                    Ok(n) => next += n as u64,
                    Err(TryRecvError::Empty) => std::thread::yield_now(),
                    Err(e) => panic!("drain: {e:?}"),
                }
            }
        }
        slot.set(COUNT, next);
        maybe_idle(&slot, rng, 10);
    }
    phase(&slot, CLOSE);
    drop(rx);
    phase(&slot, CLOSED);
    park();
}

/// MPMC sender: opens a sender, sends a random number of messages (`send`, `reserve` and
/// `commit`, `try_send`, `send_timeout`) as stream `uid = spawn << 8 | generation`, reporting
/// each after it is published, closes, and starts over with the next generation.
pub(crate) fn mpmc_sender(name: &str, slot: Slot<'_>, rng: &mut XorShift, spawn: u64) {
    for generation in 0..MAX_GENS as u64 {
        slot.set(GEN, generation);
        phase(&slot, ATTACH);
        let mut tx = mpmc::Sender::open(name).expect("open sender");
        let uid = spawn << 8 | generation;
        for seq in 0..1 + rng.below(40) {
            let m = encode(uid, seq);
            match rng.below(10) {
                0..=5 => {
                    phase(&slot, SEND);
                    tx.send(&m).expect("send");
                }
                6 | 7 => {
                    phase(&slot, RESERVE);
                    let mut g = tx.reserve(m.len()).expect("reserve");
                    g[..m.len()].copy_from_slice(&m);
                    phase(&slot, COMMIT);
                    g.commit(m.len()).expect("commit");
                }
                8 => {
                    phase(&slot, SEND);
                    loop {
                        match tx.try_send(&m) {
                            Ok(()) => break,
                            Err(TrySendError::Full(())) => std::thread::yield_now(),
                            Err(e) => panic!("try_send: {e:?}"),
                        }
                    }
                }
                _ => {
                    phase(&slot, SEND);
                    loop {
                        match tx.send_timeout(&m, Duration::from_millis(20)) {
                            Ok(()) => break,
                            Err(SendTimeoutError::Timeout(())) => {}
                            Err(e) => panic!("send_timeout: {e:?}"),
                        }
                    }
                }
            }
            slot.set(COMMITTED + generation as usize, seq + 1);
            maybe_idle(&slot, rng, 30);
        }
        phase(&slot, CLOSE);
        drop(tx);
        slot.set(CLOSED_GENS, generation + 1);
        phase(&slot, CLOSED);
        maybe_idle(&slot, rng, 50);
    }
    park();
}

/// MPMC receiver: opens a receiver, receives a random number of messages (sometimes
/// holding one for a while), logs each before releasing it and checks that every sender's
/// stream arrives in increasing order with the right contents, closes, and starts over.
pub(crate) fn mpmc_receiver(name: &str, slot: Slot<'_>, rng: &mut XorShift) {
    let mut last = std::collections::HashMap::<u64, u64>::new();
    for generation in 0..MAX_GENS as u64 {
        slot.set(GEN, generation);
        phase(&slot, ATTACH);
        let mut rx = mpmc::Receiver::open(name).expect("open receiver");
        for _ in 0..1 + rng.below(60) {
            phase(&slot, RECV);
            let m = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(e) => panic!("recv_timeout: {e:?}"),
            };
            let Some((uid, seq)) = decode(&m) else {
                eprintln!("mpmc receiver: bad message {:?}", &*m);
                slot.add(VIOLATIONS, 1);
                continue;
            };
            if last.insert(uid, seq).is_some_and(|prev| seq <= prev) {
                eprintln!("mpmc receiver: stream {uid:#x}: {seq} after a later one");
                slot.add(VIOLATIONS, 1);
            }
            if rng.chance(15) {
                phase(&slot, HOLD);
                std::thread::sleep(Duration::from_micros(rng.below(1000)));
            }
            if !slot.log(uid << 32 | seq) {
                // The log is full (not expected in the lifetime of a child): keep the
                // message until killed, so that it counts as lost with this receiver rather
                // than vanishing unlogged.
                eprintln!("mpmc receiver: log full");
                phase(&slot, HOLD);
                std::thread::sleep(CHILD_LIFETIME);
            }
            drop(m);
        }
        phase(&slot, CLOSE);
        drop(rx);
        slot.set(CLOSED_GENS, generation + 1);
        phase(&slot, CLOSED);
        maybe_idle(&slot, rng, 50);
    }
    park();
}
