//! Batched ends: `Producer::batch` writes several records and publishes them with one index
//! store; `Consumer::drain` reads several and releases them with one index store.

#![cfg(loom)]

use loom::thread;
use loom_tests::{config, model};
use shmring::{RecvError, TryRecvError, WaitStrategy, spsc};

const A: &[u8] = &[];
const B: &[u8] = &[0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7];
const C: &[u8] = &[0xc0, 0xc1, 0xc2, 0xc3];

/// Three messages through one batch in a ring that holds two (`A` takes an 8-byte record, `B`
/// a 16-byte one at 8..24, and 8 bytes stay free for the terminator; `C` then goes to 0..16,
/// with its terminator at 16, over `B`'s payload): the third `Batch::send` finds
/// the ring full, so it must publish `A` and `B` before it waits (otherwise the consumer
/// could never make room and both would sleep forever). The consumer takes what is there with
/// `drain` and sleeps in `recv` when nothing is; it must see `A`, `B`, `C` exactly once, in
/// order, then end of stream.
#[test]
fn batch_publish_and_drain_release() {
    model("batch_publish_and_drain_release", || {
        let (mut tx, mut rx) =
            spsc::channel(&config(WaitStrategy::Block)).expect("a valid configuration");
        let producer = thread::spawn(move || {
            let mut batch = tx.batch();
            for m in [A, B, C] {
                batch.send(m).unwrap();
            }
            // Dropping the batch publishes `C`; dropping `tx` then closes the ring.
        });
        let mut got: Vec<Vec<u8>> = Vec::new();
        while got.len() < 3 {
            match rx.drain(3, |m| got.push(m.to_vec())) {
                Ok(n) => assert!(n > 0),
                Err(TryRecvError::Empty) => got.push(rx.recv().unwrap().to_vec()),
                Err(e) => panic!("unexpected {e:?} after {} messages", got.len()),
            }
        }
        assert_eq!(got, [A, B, C]);
        assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
        producer.join().unwrap();
    });
}
