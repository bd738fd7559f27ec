//! No lost wake-up: a side asleep on the futex is always woken by the other side's progress.
//!
//! Both handles use `WaitStrategy::Block`, so a side that cannot make progress announces
//! itself and sleeps at once. The side that would wake it stays open until the end of the
//! model (its handle is handed back through `join`), so closing cannot stand in for a missing
//! wake-up: if a wake-up is lost, every thread ends up asleep and loom reports a deadlock.
//! Each model also checks, across all executions, that the sleeping path was really taken.

#![cfg(loom)]

use loom::thread;
use loom_tests::{Tally, config, model};
use shmring::{WaitStrategy, spsc};

const M1: &[u8] = &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18];
const M2: &[u8] = &[];
const M3: &[u8] = &[0x31, 0x32, 0x33, 0x34, 0x35];

/// The consumer finds the ring empty and sleeps; each of two sends must wake it.
#[test]
fn consumer_asleep_on_empty_ring_is_woken_by_send() {
    // Executions in which the consumer went to sleep at least once.
    let slept = Tally::new();
    let counter = slept.clone();
    model(
        "consumer_asleep_on_empty_ring_is_woken_by_send",
        move || {
            let (mut tx, mut rx) =
                spsc::channel(&config(WaitStrategy::Block)).expect("a valid configuration");
            let producer = thread::spawn(move || {
                tx.send(M1).unwrap();
                tx.send(M2).unwrap();
                tx
            });
            assert_eq!(&*rx.recv().unwrap(), M1);
            assert_eq!(&*rx.recv().unwrap(), M2);
            if rx.wait_stats().sleeps > 0 {
                counter.hit();
            }
            let tx = producer.join().unwrap();
            drop(tx);
        },
    );
    assert!(slept.count() > 0, "the consumer never slept");
}

/// The ring starts full (a 16-byte and an 8-byte record, and the 8 bytes kept free for the
/// terminator); the producer sleeps until the consumer
/// releases a record, and that release must wake it.
#[test]
fn producer_asleep_on_full_ring_is_woken_by_release() {
    let slept = Tally::new();
    let counter = slept.clone();
    model(
        "producer_asleep_on_full_ring_is_woken_by_release",
        move || {
            let (mut tx, mut rx) =
                spsc::channel(&config(WaitStrategy::Block)).expect("a valid configuration");
            tx.send(M1).unwrap();
            tx.send(M2).unwrap();
            let consumer = thread::spawn(move || {
                for want in [M1, M2, M3] {
                    assert_eq!(&*rx.recv().unwrap(), want);
                }
                rx
            });
            tx.send(M3).unwrap();
            if tx.wait_stats().sleeps > 0 {
                counter.hit();
            }
            let rx = consumer.join().unwrap();
            drop(rx);
        },
    );
    assert!(slept.count() > 0, "the producer never slept");
}

/// The ring is filled (so it is within a quarter of full, and the producer asks for room to be
/// handed over at once); the consumer receives one record, less than a quarter of the ring,
/// drops it and stops reading, keeping its end open. The producer, blocked on the full ring
/// (asleep, or about to be), must get that record's room: a consumer that released room only
/// once per quarter ring would leave it asleep for good (loom reports the deadlock).
#[test]
fn producer_blocked_on_full_ring_gets_one_released_record() {
    let slept = Tally::new();
    let counter = slept.clone();
    model(
        "producer_blocked_on_full_ring_gets_one_released_record",
        move || {
            // 128 bytes: seven 16-byte records and the terminator; a quarter is two records.
            let cfg = config(WaitStrategy::Block)
                .capacity_bytes(128)
                .max_message_bytes(8);
            let (mut tx, mut rx) = spsc::channel(&cfg).expect("a valid configuration");
            for i in 0..7u8 {
                tx.send(&[i; 8]).unwrap();
            }
            assert!(tx.try_send(&[7; 8]).is_err(), "the ring should be full");
            let consumer = thread::spawn(move || {
                assert_eq!(&*rx.recv().unwrap(), &[0; 8]);
                // Stops reading; the handle stays open until the model ends.
                rx
            });
            tx.send(&[7; 8]).unwrap();
            if tx.wait_stats().sleeps > 0 {
                counter.hit();
            }
            let mut rx = consumer.join().unwrap();
            for i in 1..8u8 {
                assert_eq!(&*rx.recv().unwrap(), &[i; 8]);
            }
        },
    );
    assert!(slept.count() > 0, "the producer never slept");
}
