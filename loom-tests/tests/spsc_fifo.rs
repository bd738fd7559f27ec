//! FIFO order and intact payloads across wrap-around, with padding records.
//!
//! In the 32-byte ring an empty message takes an 8-byte record and a 1..=8-byte message a
//! 16-byte record, so a mix of both puts records at offsets that are not multiples of 16 and
//! forces a padding record when the ring wraps.

#![cfg(loom)]

use loom::thread;
use loom_tests::{CAPACITY, config, model};
use shmring::{RecvError, WaitStrategy, spsc};

/// Sends `msgs` from a second thread and receives them on this one, checking each payload and
/// the order, then end of stream once the producer is gone.
fn send_all_receive_in_order(capacity: usize, msgs: &'static [&'static [u8]]) {
    let config = config(WaitStrategy::Adaptive).capacity_bytes(capacity);
    let (mut tx, mut rx) = spsc::channel(&config).expect("a valid configuration");
    let producer = thread::spawn(move || {
        for m in msgs {
            tx.send(m).unwrap();
        }
    });
    for want in msgs {
        let got = rx.recv().unwrap();
        assert_eq!(&*got, *want, "messages arrive intact and in order");
    }
    assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
    producer.join().unwrap();
}

/// Layout (32 bytes): `A` (empty) at 0..8, `B` at 8..24, the terminator at 24, then `C` does
/// not fit in 24..32, so the producer writes a padding record there and puts `C` at 0..16
/// (and its terminator at 16), over the bytes of both `A` and `B`: it may do so only once the
/// consumer has released both.
#[test]
fn wrap_with_padding_after_two_releases() {
    const A: &[u8] = b"";
    const B: &[u8] = &[0xb0, 0xb1, 0xb2, 0xb3, 0xb4];
    const C: &[u8] = &[0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7];
    model("wrap_with_padding_after_two_releases", || {
        send_all_receive_in_order(CAPACITY, &[A, B, C]);
    });
}

/// Layout (64 bytes): `B` at 0..32, `A` at 32..56, the terminator at 56, then padding at
/// 56..64 and `C` at 0..16 with its terminator at 16. The producer may write `C` (and the
/// padding behind the consumer's position) as soon as `B` is released, while the consumer is
/// still reading `A`.
#[test]
fn wrap_with_padding_while_reading() {
    const B: &[u8] = &[0xb0; 24];
    const A: &[u8] = &[0xa0; 16];
    const C: &[u8] = &[0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7];
    model("wrap_with_padding_while_reading", || {
        send_all_receive_in_order(64, &[B, A, C]);
    });
}
