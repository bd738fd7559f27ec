//! MPMC exactly-once delivery: several senders racing for `tail`, several receivers racing
//! for `head`, across wrap-around of a 2-slot ring.
//!
//! Every model checks that each message sent is received exactly once, intact, and that the
//! messages of one sender reach each receiver in the order they were sent; then end of stream
//! once every sender is gone. A payload read that is not ordered after its write by the
//! slot's `seq` is reported by loom as a race on the data cells.
//!
//! Where the protocol allows it, the main thread plays two parties (a sender and the
//! receiver, or the sender and a receiver), so most models have two threads. The one model
//! with three threads has a single operation per spawned thread and a preemption bound capped
//! at 2.
//!
//! The last two models are about laps: an endpoint that sees `tail` (or `head`) at a
//! position sees the slot's sequence word of the lap behind it, never of an older lap, which
//! would read as corruption. A sender at `tail == t` expects the slot free for `t`, or still
//! busy with the previous lap (`t - slots`: claimed, or published and not yet received); a
//! receiver at `head == h` expects the message of `h`, or the slot still busy with the
//! previous lap. What rules out an older value is the chain of Acquire loads and AcqRel
//! compare-exchanges on the index: whoever claimed the previous lap saw its slot's `seq`
//! before it moved the index on, so whoever sees the moved index sees that `seq` too. In these
//! models one thread moves the index two laps on while the other, synchronised with none of
//! it, makes one call, whose view of the slot comes from the index alone. A 2-slot ring needs
//! four claims for a sender's older lap to exist (the slots start free for the first lap),
//! two for a receiver's.

#![cfg(loom)]

use loom::thread;
use loom_tests::{Tally, model, model_bounded, mpmc_config};
use shmring::{RecvError, TryRecvError, TrySendError, WaitStrategy, mpmc};

const A1: &[u8] = &[0xa1, 0xa1, 0xa1];
const B1: &[u8] = &[0xb1, 0xb1, 0xb1, 0xb1, 0xb1];
const B2: &[u8] = &[0xb2, 0xb2];
const M1: &[u8] = &[0x11, 0x11, 0x11, 0x11];
const M2: &[u8] = &[0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22];
const M3: &[u8] = &[0x33];
const LAP: [&[u8]; 4] = [&[0xc0; 3], &[0xc1; 5], &[0xc2; 2], &[0xc3; 7]];
const LATE: &[u8] = &[0xdd; 4];

/// Receives until end of stream, copying every message.
fn drain(rx: &mut mpmc::Receiver) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        match rx.recv() {
            Ok(m) => got.push(m.to_vec()),
            Err(RecvError::Disconnected) => return got,
            Err(e) => panic!("recv failed: {e}"),
        }
    }
}

/// Asserts that `got` (what all receivers received) holds every message of `sent` (one list
/// per sender) exactly once.
fn assert_exactly_once(got: &[Vec<u8>], sent: &[&[&[u8]]]) {
    let mut want: Vec<&[u8]> = sent.iter().flat_map(|s| s.iter().copied()).collect();
    let mut have: Vec<&[u8]> = got.iter().map(Vec::as_slice).collect();
    want.sort();
    have.sort();
    assert_eq!(have, want, "every message is received exactly once");
}

/// Asserts that the messages of each sender appear in `got` (what one receiver received, in
/// order) in the order they were sent.
fn assert_in_order(got: &[Vec<u8>], sent: &[&[&[u8]]]) {
    for msgs in sent {
        let seen: Vec<&[u8]> = got
            .iter()
            .map(Vec::as_slice)
            .filter(|g| msgs.contains(g))
            .collect();
        let expected: Vec<&[u8]> = msgs.iter().copied().filter(|m| seen.contains(m)).collect();
        assert_eq!(seen, expected, "one sender's messages arrive in its order");
    }
}

/// Two senders, one receiver, three messages through two slots. Sender `B` (spawned) sends
/// `B1` then `B2`; the main thread sends `A1` through a clone and is also the receiver.
/// `A1` races with both of `B`'s messages for `tail`; when the main thread claims a slot
/// and is preempted before publishing it, `B` can publish the other slot and find the ring
/// full behind the unpublished one (the slot of position 0 still reads `seq == 0` when
/// `tail` is 2), which it must treat as full, not as a corrupted sequence.
///
/// The main thread never blocks on a full ring (it is the only receiver): if `B` filled both
/// slots first, it takes one message before sending.
#[test]
fn two_senders_one_receiver() {
    // Executions in which the main thread found the ring full (B filled it first).
    let full = Tally::new();
    let counter = full.clone();
    model("two_senders_one_receiver", move || {
        let (mut tx_a, mut rx) =
            mpmc::channel(&mpmc_config(WaitStrategy::Block)).expect("a valid configuration");
        let mut tx_b = tx_a.try_clone().unwrap();
        let sender_b = thread::spawn(move || {
            tx_b.send(B1).unwrap();
            tx_b.send(B2).unwrap();
        });
        let mut got = Vec::new();
        match tx_a.try_send(A1) {
            Ok(()) => {}
            Err(TrySendError::Full(())) => {
                counter.hit();
                got.push(rx.recv().unwrap().to_vec());
                tx_a.send(A1).unwrap();
            }
            Err(e) => panic!("try_send failed: {e}"),
        }
        drop(tx_a);
        got.extend(drain(&mut rx));
        sender_b.join().unwrap();
        assert_exactly_once(&got, &[&[A1], &[B1, B2]]);
        assert_in_order(&got, &[&[A1], &[B1, B2]]);
    });
    assert!(
        full.count() > 0,
        "the ring was never full for the main thread"
    );
}

/// Two senders on their own threads, one message each, and the main thread receiving both:
/// the senders race for the same position while the receiver may already wait for it. The
/// senders hand their handles back, so no close is involved. Three threads: the preemption
/// bound is capped at 2.
#[test]
fn two_senders_race_one_receiver() {
    model_bounded("two_senders_race_one_receiver", Some(2), || {
        let (tx_a, mut rx) =
            mpmc::channel(&mpmc_config(WaitStrategy::Block)).expect("a valid configuration");
        let tx_b = tx_a.try_clone().unwrap();
        let senders: Vec<_> = [(tx_a, A1), (tx_b, B1)]
            .into_iter()
            .map(|(mut tx, msg)| {
                thread::spawn(move || {
                    tx.send(msg).unwrap();
                    tx
                })
            })
            .collect();
        let got: Vec<Vec<u8>> = (0..2).map(|_| rx.recv().unwrap().to_vec()).collect();
        assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
        for s in senders {
            drop(s.join().unwrap());
        }
        assert_exactly_once(&got, &[&[A1], &[B1]]);
    });
}

/// One sender, two receivers, three messages through two slots (the third reuses the slot
/// of the first). The main thread sends `M1`, `M2`, takes one message with a second receiver
/// if there is one, sends `M3`, closes, and drains; receiver `R2` (spawned) receives until end
/// of stream throughout. While the main thread holds position 0, `R2` can take position 1 and
/// find position 2's slot still held (`seq == 1` with `head` at 2): empty, not corrupted.
/// Each message reaches exactly one receiver, and each receiver sees them in send order.
/// The main thread does many steps, so the preemption bound is capped at 2 (at 3 the model
/// takes ten times longer).
#[test]
fn one_sender_two_receivers_wrap() {
    // Executions in which each receiver got at least one message.
    let shared = Tally::new();
    let counter = shared.clone();
    model_bounded("one_sender_two_receivers_wrap", Some(2), move || {
        let (mut tx, mut rx1) =
            mpmc::channel(&mpmc_config(WaitStrategy::Block)).expect("a valid configuration");
        let mut rx2 = rx1.try_clone().unwrap();
        let receiver_2 = thread::spawn(move || drain(&mut rx2));
        tx.send(M1).unwrap();
        tx.send(M2).unwrap();
        let mut mine = Vec::new();
        match rx1.try_recv() {
            Ok(m) => mine.push(m.to_vec()),
            // R2 claimed both messages.
            Err(TryRecvError::Empty) => {}
            Err(e) => panic!("try_recv failed: {e}"),
        }
        tx.send(M3).unwrap();
        drop(tx);
        mine.extend(drain(&mut rx1));
        let theirs = receiver_2.join().unwrap();
        if !mine.is_empty() && !theirs.is_empty() {
            counter.hit();
        }
        assert_in_order(&mine, &[&[M1, M2, M3]]);
        assert_in_order(&theirs, &[&[M1, M2, M3]]);
        let all: Vec<Vec<u8>> = mine.into_iter().chain(theirs).collect();
        assert_exactly_once(&all, &[&[M1, M2, M3]]);
    });
    assert!(shared.count() > 0, "one receiver always took every message");
}

/// The main thread sends four messages through the two slots, receiving one whenever the
/// ring is full (so `tail` reaches 4 and slot 0 has been through two laps), then closes and
/// drains. The spawned sender makes one `try_reserve` (which goes straight to the claim
/// loop) at any point, committing `LATE` if it gets a slot: at `tail == 4` it must find the
/// ring full (or, once a message was received, free), never a slot of an older lap. Every
/// message arrives once, the main thread's in order. Catches `mpmc_relaxed_tail_load` and
/// `mpmc_relaxed_claim_tail`.
///
/// Bound capped at 1: the spawned sender's one call may come between any two of the main
/// thread's dozen, which at 3 takes 578,000 executions (26 s); the case it is about needs no
/// preemption at all (the spawned sender runs when the main thread waits for it to close),
/// and the races of two senders are the models above.
#[test]
fn sender_sees_the_lap_behind_tail() {
    model_bounded("sender_sees_the_lap_behind_tail", Some(1), || {
        let (mut tx, mut rx) =
            mpmc::channel(&mpmc_config(WaitStrategy::Block)).expect("a valid configuration");
        let mut tx_b = tx.try_clone().unwrap();
        let other = thread::spawn(move || {
            let sent = match tx_b.try_reserve(LATE.len()) {
                Ok(mut g) => {
                    g.copy_from_slice(LATE);
                    g.commit(LATE.len()).unwrap();
                    true
                }
                Err(TrySendError::Full(())) => false,
                Err(e) => panic!("try_reserve failed: {e}"),
            };
            drop(tx_b);
            sent
        });
        let mut got = Vec::new();
        for m in LAP {
            loop {
                match tx.try_send(m) {
                    Ok(()) => break,
                    Err(TrySendError::Full(())) => got.push(rx.recv().unwrap().to_vec()),
                    Err(e) => panic!("try_send failed: {e}"),
                }
            }
        }
        drop(tx);
        got.extend(drain(&mut rx));
        let late: &[&[u8]] = if other.join().unwrap() { &[LATE] } else { &[] };
        assert_exactly_once(&got, &[&LAP[..], late]);
        assert_in_order(&got, &[&LAP[..]]);
    });
}

/// The main thread sends two messages and takes them with `try_recv` before it closes (so
/// `head` reaches 2 and slot 0 has been through a lap), then drains. The spawned receiver
/// makes one `try_recv` at any point: at `head == 2` it must find the ring empty or at end
/// of stream, never a slot of an older lap. Each message arrives once. Catches
/// `mpmc_relaxed_claim_head`.
///
/// The main thread closes only after its receives: closing fences (`fence(SeqCst)`), and
/// loom, like C11, passes what a thread did before a fence on through any later store of
/// it, `Relaxed` or not, which would order the slots' sequence words before `head`.
#[test]
fn receiver_sees_the_lap_behind_head() {
    model("receiver_sees_the_lap_behind_head", || {
        let (mut tx, mut rx) =
            mpmc::channel(&mpmc_config(WaitStrategy::Block)).expect("a valid configuration");
        let mut rx_b = rx.try_clone().unwrap();
        let other = thread::spawn(move || match rx_b.try_recv().map(|m| m.to_vec()) {
            Ok(m) => Some(m),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
            Err(e) => panic!("try_recv failed: {e}"),
        });
        tx.send(LAP[0]).unwrap();
        tx.send(LAP[1]).unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            match rx.try_recv().map(|m| m.to_vec()) {
                Ok(m) => got.push(m),
                Err(TryRecvError::Empty) => {}
                Err(e) => panic!("try_recv failed: {e}"),
            }
        }
        drop(tx);
        got.extend(drain(&mut rx));
        got.extend(other.join().unwrap());
        assert_exactly_once(&got, &[&LAP[..2]]);
    });
}

/// A grant dropped at position 0 leaves a skip mark there. The spawned receiver makes one
/// `try_recv`: it takes the skipped position, releases it and looks at `head` again, at any
/// point while the main thread sends and takes `LAP[0]`..`LAP[2]` one by one (taking the
/// skip itself if it comes first), moving `head` a lap and a half on. Whatever `head` that
/// second look reads, the spawned receiver must find the ring empty, a message or end of
/// stream, never a slot of an older lap. Each message arrives once. Catches
/// `mpmc_relaxed_skip_head`.
#[test]
fn receiver_sees_the_lap_behind_head_after_a_skip() {
    model_bounded(
        "receiver_sees_the_lap_behind_head_after_a_skip",
        Some(2),
        || {
            let (mut tx, mut rx) =
                mpmc::channel(&mpmc_config(WaitStrategy::Block)).expect("a valid configuration");
            let mut rx_b = rx.try_clone().unwrap();
            drop(tx.reserve(8).unwrap());
            let other = thread::spawn(move || match rx_b.try_recv().map(|m| m.to_vec()) {
                Ok(m) => Some(m),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
                Err(e) => panic!("try_recv failed: {e}"),
            });
            let mut got = Vec::new();
            for msg in &LAP[..3] {
                tx.send(msg).unwrap();
                match rx.try_recv().map(|m| m.to_vec()) {
                    Ok(m) => got.push(m),
                    Err(TryRecvError::Empty) => {}
                    Err(e) => panic!("try_recv failed: {e}"),
                }
            }
            drop(tx);
            got.extend(drain(&mut rx));
            got.extend(other.join().unwrap());
            assert_exactly_once(&got, &[&LAP[..3]]);
        },
    );
}
