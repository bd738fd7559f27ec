//! Ends of the stream while the other side sleeps, as with a pipe: a consumer blocked in
//! `recv` drains what is left and then sees end of stream when the producer goes; a producer
//! blocked in `send` on a full ring gets `Disconnected` with its message handed back when the
//! consumer goes.

#![cfg(loom)]

use loom::thread;
use loom_tests::{Tally, config, model};
use shmring::{RecvError, SendError, TryRecvError, WaitStrategy, spsc};

const M1: &[u8] = &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16];
// `M1` takes a 16-byte record and `M2` an 8-byte one: together they fill the 32-byte ring
// (8 bytes stay free for the terminator). `M3` (8 bytes) fits once `M1` is released.
const M2: &[u8] = &[];
const M3: &[u8] = &[];

/// The producer sends `M1` and closes while the consumer may be asleep in `recv`: the
/// consumer gets `M1`, then `Disconnected`, and stays disconnected.
#[test]
fn producer_closes_while_consumer_sleeps() {
    let slept = Tally::new();
    let counter = slept.clone();
    model("producer_closes_while_consumer_sleeps", move || {
        let (mut tx, mut rx) =
            spsc::channel(&config(WaitStrategy::Block)).expect("a valid configuration");
        let producer = thread::spawn(move || {
            tx.send(M1).unwrap();
            tx.close();
        });
        assert_eq!(
            &*rx.recv().unwrap(),
            M1,
            "what was sent before closing is drained"
        );
        assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
        assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Disconnected);
        assert!(rx.is_disconnected());
        if rx.wait_stats().sleeps > 0 {
            counter.hit();
        }
        producer.join().unwrap();
    });
    assert!(slept.count() > 0, "the consumer never slept");
}

/// The consumer polls (`try_recv`, never sleeping) while the producer sends `M1` and `M2`
/// and closes: whenever the consumer sees the close, it has already received both messages,
/// or receives them before `Disconnected`. (The close flag's Release store after the last
/// publish is what makes the final tail visible to a consumer that sees the flag.)
#[test]
fn consumer_polling_sees_close_after_last_message() {
    model("consumer_polling_sees_close_after_last_message", || {
        let (mut tx, mut rx) =
            spsc::channel(&config(WaitStrategy::Spin)).expect("a valid configuration");
        let producer = thread::spawn(move || {
            tx.send(M1).unwrap();
            tx.send(M2).unwrap();
            tx.close();
        });
        let mut got = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(m) => got.push(m.to_vec()),
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(TryRecvError::Disconnected) => break,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(got, [M1, M2], "end of stream only after the last message");
        producer.join().unwrap();
    });
}

/// The ring is full and the producer may be asleep in `send(M3)` when the consumer is
/// dropped: the send fails with `Disconnected` and hands `M3` back.
#[test]
fn consumer_closes_while_producer_sleeps() {
    let slept = Tally::new();
    let counter = slept.clone();
    model("consumer_closes_while_producer_sleeps", move || {
        let (mut tx, rx) =
            spsc::channel(&config(WaitStrategy::Block)).expect("a valid configuration");
        tx.send(M1).unwrap();
        tx.send(M2).unwrap();
        let consumer = thread::spawn(move || drop(rx));
        match tx.send(M3) {
            Err(SendError::Disconnected(())) => {}
            other => panic!("expected Disconnected, got {other:?}"),
        }
        assert!(tx.is_disconnected());
        if tx.wait_stats().sleeps > 0 {
            counter.hit();
        }
        consumer.join().unwrap();
    });
    assert!(slept.count() > 0, "the producer never slept");
}

/// The consumer takes `M1` (making room) and closes while the producer sends `M3` and `M4`:
/// `M3` may land before the close is seen or be refused; `M4` is always refused (the ring is
/// full again, or the close was seen), and every refused message is handed back.
#[test]
fn consumer_closes_after_making_room() {
    const M4: &[u8] = &[0x41];
    model("consumer_closes_after_making_room", || {
        let (mut tx, mut rx) =
            spsc::channel(&config(WaitStrategy::Block)).expect("a valid configuration");
        tx.send(M1).unwrap();
        tx.send(M2).unwrap();
        let consumer = thread::spawn(move || {
            assert_eq!(&*rx.recv().unwrap(), M1);
            rx.close();
        });
        let third = tx.send(M3);
        if let Err(e) = &third {
            assert!(matches!(e, SendError::Disconnected(())));
        }
        // Either M3 filled the ring again or the consumer was already seen gone: M4 cannot
        // be delivered, and the producer must not sleep forever waiting for room.
        match tx.send(M4) {
            Err(SendError::Disconnected(())) => {}
            other => panic!("expected Disconnected, got {other:?}"),
        }
        consumer.join().unwrap();
    });
}
