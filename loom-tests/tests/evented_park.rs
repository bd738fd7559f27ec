//! No lost wake-up for an end parked on its readiness fd: the announce / re-check / ring
//! handshake of `sync::doorbell`, on the public `Readiness` of a heap ring.
//!
//! A parked end runs the loop of the `evented` module docs: `try_recv` (or `try_send`); on
//! empty (full), `arm()` and, if it just armed, look again; otherwise wait for the readiness fd
//! and `clear()` it. Under loom the readiness fd is a flag per subscriber (a loom `Mutex` and
//! `Condvar`), set by the doorbell; waiting on it is waiting for the flag, without a timeout.
//! If a ring is lost, the parked end waits for ever and loom reports a deadlock. Each model
//! checks, across all executions, that the end really waited on its fd.

#![cfg(loom)]

use loom::thread;
use loom_tests::{Tally, config, model};
use shmring::{TryRecvError, TrySendError, WaitStrategy, spsc};

const M1: &[u8] = &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18];
// `M1` (a 16-byte record) and `M2` (an 8-byte one) fill the 32-byte ring, which keeps 8 bytes
// free after its last record; `M3` (an 8-byte record) fits once `M1` is released.
const M2: &[u8] = &[];
const M3: &[u8] = &[];

/// Receives one message the way an event loop does; counts the waits on the fd in `waited`.
fn recv_parked(
    rx: &mut spsc::Consumer,
    ready: &mut shmring::evented::Readiness,
    waited: &Tally,
) -> Result<Vec<u8>, TryRecvError> {
    loop {
        match rx.try_recv() {
            Ok(m) => {
                ready.disarm();
                return Ok(m.to_vec());
            }
            Err(TryRecvError::Empty) => {
                if ready.arm() {
                    continue;
                }
                waited.hit();
                ready.wait(None);
                ready.clear();
            }
            Err(e) => {
                ready.disarm();
                return Err(e);
            }
        }
    }
}

/// The consumer parks on an empty ring; the producer's send must ring it awake.
#[test]
fn consumer_parked_on_readiness_is_woken_by_send() {
    let waited = Tally::new();
    let counter = waited.clone();
    model("consumer_parked_on_readiness_is_woken_by_send", move || {
        let (mut tx, mut rx) =
            spsc::channel(&config(WaitStrategy::Block)).expect("a valid configuration");
        let mut ready = rx.readiness().expect("a readiness fd");
        let producer = thread::spawn(move || {
            tx.send(M1).unwrap();
            tx
        });
        assert_eq!(recv_parked(&mut rx, &mut ready, &counter).unwrap(), M1);
        // The producer stays open until here: closing cannot stand in for the lost ring.
        drop(producer.join().unwrap());
    });
    assert!(waited.count() > 0, "the consumer never waited on its fd");
}

/// The producer parks on a full ring; the consumer's release must ring it awake.
#[test]
fn producer_parked_on_readiness_is_woken_by_release() {
    let waited = Tally::new();
    let counter = waited.clone();
    model(
        "producer_parked_on_readiness_is_woken_by_release",
        move || {
            let (mut tx, mut rx) =
                spsc::channel(&config(WaitStrategy::Block)).expect("a valid configuration");
            tx.send(M1).unwrap();
            tx.send(M2).unwrap();
            let mut ready = tx.readiness().expect("a readiness fd");
            let consumer = thread::spawn(move || {
                assert_eq!(&*rx.recv().unwrap(), M1);
                rx
            });
            loop {
                match tx.try_send(M3) {
                    Ok(()) => break,
                    Err(TrySendError::Full(())) => {
                        if ready.arm() {
                            continue;
                        }
                        counter.hit();
                        ready.wait(None);
                        ready.clear();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            ready.disarm();
            drop(consumer.join().unwrap());
        },
    );
    assert!(waited.count() > 0, "the producer never waited on its fd");
}

/// The consumer parks on an empty ring; the producer closes without sending: closing must
/// ring it awake too, and it then sees the end of the stream.
#[test]
fn consumer_parked_on_readiness_is_woken_by_close() {
    let waited = Tally::new();
    let counter = waited.clone();
    model(
        "consumer_parked_on_readiness_is_woken_by_close",
        move || {
            let (tx, mut rx) =
                spsc::channel(&config(WaitStrategy::Block)).expect("a valid configuration");
            let mut ready = rx.readiness().expect("a readiness fd");
            let producer = thread::spawn(move || drop(tx));
            assert_eq!(
                recv_parked(&mut rx, &mut ready, &counter),
                Err(TryRecvError::Disconnected)
            );
            producer.join().unwrap();
        },
    );
    assert!(waited.count() > 0, "the consumer never waited on its fd");
}
