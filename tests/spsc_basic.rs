//! SPSC behaviour within one process: limits, wrap-around, grants, batches, timeouts and ends
//! of the stream, on heap rings and on shared-memory rings.

mod common;

use std::time::Duration;

use common::{RingName, check_msg, fill_msg, msg_len};
use shmring::{
    CommitError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError, spsc,
};

/// Every test runs on a heap ring, a named ring and a memfd ring.
fn rings(cfg: shmring::spsc::Config, mut f: impl FnMut(spsc::Producer, spsc::Consumer)) {
    let (tx, rx) = spsc::channel(&cfg).unwrap();
    f(tx, rx);
    let name = RingName::new("basic");
    let tx = spsc::Producer::create(name.as_str(), cfg).unwrap();
    let rx = spsc::Consumer::open(name.as_str()).unwrap();
    f(tx, rx);
    let (tx, fd) = spsc::Producer::create_anonymous(cfg).unwrap();
    let rx = spsc::Consumer::from_fd(fd).unwrap();
    f(tx, rx);
}

#[test]
fn too_large_messages_are_refused_with_both_sizes() {
    rings(
        shmring::spsc::Config::default()
            .capacity_bytes(256)
            .max_message_bytes(100),
        |mut tx, _rx| {
            assert_eq!(tx.max_message(), 100);
            let big = [0u8; 101];
            match tx.send(&big) {
                Err(
                    e @ SendError::TooLarge {
                        len: 101, max: 100, ..
                    },
                ) => {
                    let text = e.to_string();
                    assert!(text.contains("101") && text.contains("100"), "{text}");
                    e.into_inner();
                }
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                tx.try_send(&big),
                Err(TrySendError::TooLarge { .. })
            ));
            assert!(matches!(
                tx.send_timeout(&big, Duration::ZERO),
                Err(SendTimeoutError::TooLarge { .. })
            ));
            assert!(tx.reserve(101).is_err());
            assert!(tx.send(&big[..100]).is_ok());
        },
    );
}

#[test]
fn wrap_around_keeps_order_and_contents() {
    // A small ring and many sizes: padding records at the end of the region all the time.
    rings(
        shmring::spsc::Config::default().capacity_bytes(512),
        |mut tx, mut rx| {
            let max = tx.max_message();
            let mut scratch = Vec::new();
            let mut buf = vec![0u8; max];
            let (mut sent, mut received) = (0u64, 0u64);
            while received < 20_000 {
                // Fill as far as it goes, then drain part of it.
                loop {
                    let len = msg_len(sent, max);
                    fill_msg(sent, &mut buf[..len]);
                    match tx.try_send(&buf[..len]) {
                        Ok(()) => sent += 1,
                        Err(TrySendError::Full(_)) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                for _ in 0..(sent - received).div_ceil(2) {
                    let m = rx.try_recv().unwrap();
                    check_msg(received, max, &m, &mut scratch);
                    received += 1;
                }
                if sent == received {
                    // The consumer gives its space back lazily; finding the ring empty is
                    // one of the moments it does.
                    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
                }
            }
            while let Ok(m) = rx.try_recv() {
                check_msg(received, max, &m, &mut scratch);
                received += 1;
            }
            assert_eq!(sent, received);
        },
    );
}

#[test]
fn grants_publish_only_on_commit() {
    rings(
        shmring::spsc::Config::default().capacity_bytes(256),
        |mut tx, mut rx| {
            {
                let mut g = tx.reserve(10).unwrap();
                assert_eq!(g.len(), 10);
                g.copy_from_slice(b"0123456789");
            } // not committed: nothing published
            assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);

            let mut g = tx.reserve(10).unwrap();
            g[..4].copy_from_slice(b"abcd");
            assert_eq!(
                tx_commit_too_long(g),
                CommitError::TooLong {
                    len: 11,
                    granted: 10
                }
            );
            assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);

            let mut g = tx.try_reserve(10).unwrap();
            g[..4].copy_from_slice(b"abcd");
            g.commit(4).unwrap();
            assert_eq!(&*rx.try_recv().unwrap(), b"abcd");

            let g = tx.reserve(0).unwrap();
            assert!(g.is_empty());
            g.commit(0).unwrap();
            assert_eq!(rx.try_recv().unwrap().len(), 0);
        },
    );
}

fn tx_commit_too_long(g: spsc::Grant<'_>) -> CommitError {
    g.commit(11).unwrap_err()
}

#[test]
fn borrowed_messages_hold_their_space_until_dropped() {
    rings(
        shmring::spsc::Config::default().capacity_bytes(64),
        |mut tx, mut rx| {
            // Three 16-byte records fill the ring (which keeps 8 bytes free after the last
            // record for the terminator).
            tx.send(&[1; 8]).unwrap();
            tx.send(&[2; 8]).unwrap();
            tx.send(&[4; 8]).unwrap();
            let m = rx.recv().unwrap();
            assert_eq!(&*m, &[1; 8]);
            // Still borrowed: the producer cannot reuse the space.
            assert!(matches!(tx.try_send(&[3; 8]), Err(TrySendError::Full(_))));
            drop(m);
            tx.try_send(&[3; 8]).unwrap();
            assert_eq!(&*rx.recv().unwrap(), &[2; 8]);
            assert_eq!(&*rx.recv().unwrap(), &[4; 8]);
            assert_eq!(&*rx.recv().unwrap(), &[3; 8]);
        },
    );
}

#[test]
fn timeouts_expire_without_losing_messages() {
    rings(
        shmring::spsc::Config::default().capacity_bytes(64),
        |mut tx, mut rx| {
            assert_eq!(
                rx.recv_timeout(Duration::from_millis(20)).unwrap_err(),
                RecvTimeoutError::Timeout
            );
            // Three 16-byte records fill the 64-byte ring (8 bytes stay free for the
            // terminator).
            tx.send(&[1; 8]).unwrap();
            tx.send(&[2; 8]).unwrap();
            tx.send(&[4; 8]).unwrap();
            let msg = [3u8; 8];
            match tx.send_timeout(&msg, Duration::from_millis(20)) {
                Err(SendTimeoutError::Timeout(())) => {}
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                tx.reserve_timeout(8, Duration::from_millis(5)),
                Err(SendTimeoutError::Timeout(()))
            ));
            assert_eq!(&*rx.recv_timeout(Duration::from_secs(5)).unwrap(), &[1; 8]);
            tx.send_timeout(&msg, Duration::from_secs(5)).unwrap();
            assert_eq!(&*rx.recv().unwrap(), &[2; 8]);
            assert_eq!(&*rx.recv().unwrap(), &[4; 8]);
            assert_eq!(&*rx.recv().unwrap(), &[3; 8]);
            assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
        },
    );
}

#[test]
fn closing_either_end_behaves_like_a_pipe() {
    rings(
        shmring::spsc::Config::default().capacity_bytes(256),
        |mut tx, mut rx| {
            tx.send(b"a").unwrap();
            tx.send(b"b").unwrap();
            tx.close();
            assert!(rx.is_disconnected());
            let all: Vec<Vec<u8>> = rx.iter().collect::<Result<_, _>>().unwrap();
            assert_eq!(all, [b"a".to_vec(), b"b".to_vec()]);
            assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Disconnected);
        },
    );
    rings(
        shmring::spsc::Config::default().capacity_bytes(256),
        |mut tx, rx| {
            assert_eq!(tx.reserve(8).unwrap().len(), 8); // a grant dropped uncommitted
            drop(rx);
            assert!(tx.is_disconnected());
            match tx.try_send(b"late") {
                Err(TrySendError::Disconnected(())) => {}
                other => panic!("{other:?}"),
            }
            assert!(tx.send(b"late").unwrap_err().is_disconnected());
            assert!(tx.reserve(1).is_err());
        },
    );
    // A grant committed after the consumer left is refused, not silently lost.
    let (mut tx, rx) = spsc::channel(&shmring::spsc::Config::default()).unwrap();
    let g = tx.reserve(4).unwrap();
    drop(rx);
    assert_eq!(g.commit(4).unwrap_err(), CommitError::Disconnected);
}

#[test]
fn blocking_calls_wake_across_threads() {
    for strategy in [
        shmring::WaitStrategy::Block,
        shmring::WaitStrategy::Adaptive,
        shmring::WaitStrategy::Spin,
    ] {
        let cfg = shmring::spsc::Config::default()
            .capacity_bytes(64)
            .wait_strategy(strategy);
        rings(cfg, |mut tx, mut rx| {
            let t = std::thread::spawn(move || {
                let mut buf = [0u8; 24];
                for seq in 0..5_000u64 {
                    let len = msg_len(seq, 24);
                    fill_msg(seq, &mut buf[..len]);
                    tx.send(&buf[..len]).unwrap();
                }
            });
            let mut scratch = Vec::new();
            let mut seq = 0;
            while let Ok(m) = rx.recv() {
                check_msg(seq, 24, &m, &mut scratch);
                seq += 1;
            }
            assert_eq!(seq, 5_000);
            t.join().unwrap();
        });
    }
}
