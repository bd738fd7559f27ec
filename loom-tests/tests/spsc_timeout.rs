//! Timeouts lose nothing: a receive that times out leaves the message to a later receive,
//! and a send that times out hands its message back, which a later send then delivers;
//! either way every message is received exactly once, in order.
//!
//! Under loom a finite timeout expires during the first timed sleep, so these models explore
//! exactly the races between a timeout and the other side's progress. Each model checks,
//! across all executions, that both outcomes (in time and timed out) occurred.

#![cfg(loom)]

use std::time::Duration;

use loom::thread;
use loom_tests::{Tally, config, model};
use shmring::{RecvError, RecvTimeoutError, SendTimeoutError, WaitStrategy, spsc};

const M1: &[u8] = &[0x11, 0x12, 0x13, 0x14];
const M2: &[u8] = &[];
const M3: &[u8] = &[0x31, 0x32];
const TIMEOUT: Duration = Duration::from_millis(10);

/// Outcomes seen across all executions of a model.
#[derive(Clone, Default)]
struct Outcomes {
    in_time: Tally,
    timed_out: Tally,
}

impl Outcomes {
    fn assert_both_seen(&self) {
        assert!(self.in_time.count() > 0, "never completed in time");
        assert!(self.timed_out.count() > 0, "never timed out");
    }
}

/// The consumer waits with a timeout while the producer sends `M1` and closes. A timeout
/// must not consume `M1`: the next `recv` gets it, and nothing after it but end of stream.
#[test]
fn recv_timeout_loses_nothing() {
    let seen = Outcomes::default();
    let record = seen.clone();
    model("recv_timeout_loses_nothing", move || {
        let (mut tx, mut rx) =
            spsc::channel(&config(WaitStrategy::Block)).expect("a valid configuration");
        let producer = thread::spawn(move || {
            tx.send(M1).unwrap();
        });
        let first = rx.recv_timeout(TIMEOUT).map(|m| m.to_vec());
        match first {
            Ok(got) => {
                record.in_time.hit();
                assert_eq!(got, M1);
            }
            Err(RecvTimeoutError::Timeout) => {
                record.timed_out.hit();
                assert_eq!(
                    &*rx.recv().unwrap(),
                    M1,
                    "a timed-out receive left M1 in place"
                );
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert_eq!(
            rx.recv().unwrap_err(),
            RecvError::Disconnected,
            "M1 came exactly once"
        );
        producer.join().unwrap();
    });
    seen.assert_both_seen();
}

/// The ring starts full; the producer tries `M3` with a timeout while the consumer drains.
/// A timed-out send hands `M3` back untouched and publishes nothing; sending it again
/// delivers it once, after `M1` and `M2`.
#[test]
fn send_timeout_loses_nothing() {
    let seen = Outcomes::default();
    let record = seen.clone();
    model("send_timeout_loses_nothing", move || {
        let (mut tx, mut rx) =
            spsc::channel(&config(WaitStrategy::Block)).expect("a valid configuration");
        tx.send(M1).unwrap();
        tx.send(M2).unwrap();
        let consumer = thread::spawn(move || {
            for want in [M1, M2, M3] {
                assert_eq!(&*rx.recv().unwrap(), want);
            }
            assert_eq!(
                rx.recv().unwrap_err(),
                RecvError::Disconnected,
                "M3 came exactly once"
            );
        });
        match tx.send_timeout(M3, TIMEOUT) {
            Ok(()) => {
                record.in_time.hit();
            }
            Err(SendTimeoutError::Timeout(())) => {
                record.timed_out.hit();
                // Nothing was sent: the caller still holds the message and sends it again.
                tx.send(M3).unwrap();
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
        drop(tx);
        consumer.join().unwrap();
    });
    seen.assert_both_seen();
}
