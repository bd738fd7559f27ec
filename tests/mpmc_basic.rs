//! MPMC rings inside one process: heap and shared-memory rings between threads, the error
//! cases, the registry limit, abandoned slots, and corrupted shared memory.

mod common;

use common::RingName;
use std::collections::HashMap;
use std::time::Duration;

use shmring::{
    CommitError, OpenError, RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError,
    mpmc, spsc,
};

fn encode(sender: u32, seq: u32) -> [u8; 8] {
    let mut m = [0u8; 8];
    m[..4].copy_from_slice(&sender.to_le_bytes());
    m[4..].copy_from_slice(&seq.to_le_bytes());
    m
}

fn decode(m: &[u8]) -> (u32, u32) {
    (
        u32::from_le_bytes(m[..4].try_into().unwrap()),
        u32::from_le_bytes(m[4..8].try_into().unwrap()),
    )
}

/// Senders and receivers on threads; every message exactly once, per-sender order kept.
fn threads_exactly_once(tx: mpmc::Sender, rx: mpmc::Receiver, senders: u32, per: u32) {
    let receivers = 3;
    let rx_threads: Vec<_> = (0..receivers)
        .map(|_| {
            let mut rx = rx.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut last: HashMap<u32, u32> = HashMap::new();
                let mut got = Vec::new();
                while let Ok(m) = rx.recv() {
                    let (s, q) = decode(&m);
                    if let Some(p) = last.insert(s, q) {
                        assert!(q > p, "sender {s}: {q} after {p}");
                    }
                    got.push((s, q));
                }
                got
            })
        })
        .collect();
    drop(rx);
    let tx_threads: Vec<_> = (0..senders)
        .map(|s| {
            let mut tx = tx.try_clone().unwrap();
            std::thread::spawn(move || {
                for q in 0..per {
                    if q % 2 == 0 {
                        tx.send(&encode(s, q)).unwrap();
                    } else {
                        let mut g = tx.reserve(8).unwrap();
                        g.copy_from_slice(&encode(s, q));
                        g.commit(8).unwrap();
                    }
                }
            })
        })
        .collect();
    drop(tx);
    for t in tx_threads {
        t.join().unwrap();
    }
    let mut all: Vec<(u32, u32)> = rx_threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_unstable();
    let want: Vec<(u32, u32)> = (0..senders)
        .flat_map(|s| (0..per).map(move |q| (s, q)))
        .collect();
    assert_eq!(all, want);
}

#[test]
fn heap_ring_threads_exactly_once() {
    let (tx, rx) = mpmc::channel(
        &shmring::mpmc::Config::default()
            .slots(8)
            .max_message_bytes(48),
    )
    .unwrap();
    threads_exactly_once(tx, rx, 3, 30_000);
}

#[test]
fn shared_ring_threads_exactly_once() {
    let name = RingName::new("threads");
    let tx = mpmc::Sender::create(
        &name.0,
        shmring::mpmc::Config::default()
            .slots(4)
            .max_message_bytes(48),
    )
    .unwrap();
    let rx = mpmc::Receiver::open(&name.0).unwrap();
    threads_exactly_once(tx, rx, 3, 30_000);
}

#[test]
fn too_large_states_both_sizes() {
    let (mut tx, _rx) =
        mpmc::channel(&shmring::mpmc::Config::default().max_message_bytes(112)).unwrap();
    assert_eq!(tx.max_message(), 112);
    let big = vec![7u8; 113];
    match tx.send(&big) {
        Err(SendError::TooLarge { msg, len, max }) => {
            assert_eq!((len, max), (113, 112));
            assert_eq!(msg, ());
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let e = tx.try_send(&big).unwrap_err();
    assert!(e.to_string().contains("113") && e.to_string().contains("112"));
    assert!(matches!(
        tx.try_reserve(113),
        Err(TrySendError::TooLarge {
            len: 113,
            max: 112,
            ..
        })
    ));
    tx.send(&big[..112]).unwrap();
}

#[test]
fn invalid_configs_are_refused() {
    for cfg in [
        shmring::mpmc::Config::default().slots(3),
        shmring::mpmc::Config::default().slots(1),
        shmring::mpmc::Config::default().max_message_bytes(mpmc::MAX_SLOT_SIZE - 15),
        shmring::mpmc::Config::default().max_message_bytes(usize::MAX),
        shmring::mpmc::Config::default().endpoints(1),
        shmring::mpmc::Config::default().endpoints(65),
        shmring::mpmc::Config::default().mode(0o1777),
    ] {
        assert!(
            matches!(mpmc::channel(&cfg), Err(OpenError::InvalidConfig(_))),
            "{cfg:?}"
        );
    }
    // max_message alone picks the slot size.
    let (tx, _rx) =
        mpmc::channel(&shmring::mpmc::Config::default().max_message_bytes(100)).unwrap();
    assert_eq!(tx.max_message(), 100);
}

#[test]
fn all_receivers_gone_senders_get_message_back() {
    for shared in [false, true] {
        let name = RingName::new("rx-gone");
        let (mut tx, rx) = if shared {
            let tx =
                mpmc::Sender::create(&name.0, shmring::mpmc::Config::default().slots(4)).unwrap();
            let rx = mpmc::Receiver::open(&name.0).unwrap();
            (tx, rx)
        } else {
            mpmc::channel(&shmring::mpmc::Config::default().slots(4)).unwrap()
        };
        let rx2 = rx.try_clone().unwrap();
        let mut g = tx.reserve(4).unwrap();
        g.copy_from_slice(b"late");
        drop(rx);
        assert!(!g.is_empty());
        drop(rx2);
        assert_eq!(g.commit(4), Err(CommitError::Disconnected));
        let e = tx.send(b"x").unwrap_err();
        assert!(e.is_disconnected());
        assert_eq!(e.into_inner(), ());
        assert!(matches!(
            tx.try_send(b"y"),
            Err(TrySendError::Disconnected(()))
        ));
        assert!(tx.is_disconnected());
        if shared {
            assert!(matches!(
                mpmc::Receiver::open(&name.0),
                Err(OpenError::EndpointClosed("receivers"))
            ));
        }
    }
}

#[test]
fn all_senders_gone_receivers_drain_then_disconnect() {
    for shared in [false, true] {
        let name = RingName::new("tx-gone");
        let (tx, mut rx) = if shared {
            let rx =
                mpmc::Receiver::create(&name.0, shmring::mpmc::Config::default().slots(8)).unwrap();
            let tx = mpmc::Sender::open(&name.0).unwrap();
            (tx, rx)
        } else {
            mpmc::channel(&shmring::mpmc::Config::default().slots(8)).unwrap()
        };
        let mut tx2 = tx.try_clone().unwrap();
        let mut tx = tx;
        tx.send(b"a").unwrap();
        tx2.send(b"b").unwrap();
        drop(tx);
        assert!(!rx.is_disconnected());
        tx2.send(b"c").unwrap();
        drop(tx2);
        assert!(rx.is_disconnected());
        let all: Vec<Vec<u8>> = rx.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(all, [b"a", b"b", b"c"]);
        assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
        assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Disconnected);
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)).unwrap_err(),
            RecvTimeoutError::Disconnected
        );
        if shared {
            assert!(matches!(
                mpmc::Sender::open(&name.0),
                Err(OpenError::EndpointClosed("senders"))
            ));
        }
    }
}

#[test]
fn receivers_wait_for_senders_that_have_not_come_yet() {
    let name = RingName::new("no-sender-yet");
    let mut rx = mpmc::Receiver::create(&name.0, shmring::mpmc::Config::default()).unwrap();
    assert!(!rx.is_disconnected());
    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(5)).unwrap_err(),
        RecvTimeoutError::Timeout
    );
    let mut tx = mpmc::Sender::open(&name.0).unwrap();
    tx.send(b"here").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"here");
}

#[test]
fn registry_full_and_entries_reused() {
    let name = RingName::new("registry");
    let tx = mpmc::Sender::create(&name.0, shmring::mpmc::Config::default().endpoints(4)).unwrap();
    let rx = mpmc::Receiver::open(&name.0).unwrap();
    let tx2 = tx.try_clone().unwrap();
    let rx2 = rx.try_clone().unwrap();
    let e = mpmc::Receiver::open(&name.0).unwrap_err();
    assert!(matches!(e, OpenError::RegistryFull { capacity: 4 }));
    assert!(e.to_string().contains("4 entries"));
    assert!(matches!(
        rx.try_clone(),
        Err(OpenError::RegistryFull { capacity: 4 })
    ));
    drop(rx2);
    // A clone, many times over: each clone takes an entry and gives it back on drop.
    for _ in 0..100 {
        let t = tx2.try_clone().unwrap();
        assert!(matches!(
            mpmc::Sender::open(&name.0),
            Err(OpenError::RegistryFull { .. })
        ));
        drop(t);
    }
    drop((tx, tx2, rx));
}

#[test]
fn ring_kinds_are_not_mixed_up() {
    let name = RingName::new("kinds");
    let _p = spsc::Producer::create(&name.0, shmring::spsc::Config::default()).unwrap();
    assert!(matches!(
        mpmc::Receiver::open(&name.0),
        Err(OpenError::WrongKind {
            found: "SPSC",
            expected: "MPMC"
        })
    ));
    let name2 = RingName::new("kinds2");
    let _tx = mpmc::Sender::create(&name2.0, shmring::mpmc::Config::default()).unwrap();
    assert!(matches!(
        spsc::Consumer::open(&name2.0),
        Err(OpenError::WrongKind {
            found: "MPMC",
            expected: "SPSC"
        })
    ));
}

#[test]
fn dropped_grants_publish_nothing() {
    let (mut tx, mut rx) = mpmc::channel(&shmring::mpmc::Config::default().slots(2)).unwrap();
    let g = tx.reserve(8).unwrap();
    assert_eq!(g.len(), 8);
    drop(g);
    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
    tx.send(b"real").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"real");
}

#[test]
fn forgotten_message_of_a_closed_receiver_is_recovered() {
    let name = RingName::new("forgot-msg");
    let mut tx = mpmc::Sender::create(&name.0, shmring::mpmc::Config::default().slots(2)).unwrap();
    let mut rx1 = mpmc::Receiver::open(&name.0).unwrap();
    let mut rx2 = mpmc::Receiver::open(&name.0).unwrap();
    tx.send(b"kept").unwrap();
    std::mem::forget(rx1.recv().unwrap());
    drop(rx1);
    let reader = std::thread::spawn(move || {
        let mut n = 0u32;
        while let Ok(m) = rx2.recv() {
            assert_eq!(decode(&m), (0, n));
            n += 1;
        }
        n
    });
    // Wraps around the slot the closed receiver never released.
    for q in 0..50 {
        tx.send(&encode(0, q)).unwrap();
    }
    drop(tx);
    assert_eq!(reader.join().unwrap(), 50);
}

#[test]
fn forgotten_grant_of_a_closed_sender_is_skipped() {
    let name = RingName::new("forgot-grant");
    let mut rx =
        mpmc::Receiver::create(&name.0, shmring::mpmc::Config::default().slots(2)).unwrap();
    let mut tx1 = mpmc::Sender::open(&name.0).unwrap();
    let mut tx2 = mpmc::Sender::open(&name.0).unwrap();
    std::mem::forget(tx1.reserve(8).unwrap());
    drop(tx1);
    let writer = std::thread::spawn(move || {
        for q in 0..50 {
            tx2.send(&encode(2, q)).unwrap();
        }
    });
    for q in 0..50 {
        assert_eq!(decode(&rx.recv().unwrap()), (2, q));
    }
    writer.join().unwrap();
    assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
}

/// Overwrites bytes of a named object through the filesystem, as a misbehaving peer would.
fn scribble(name: &str, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{name}"))
        .unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

/// Data region of a ring: header page, 384-byte control block and 64 claim lines of 128
/// bytes, rounded up to a page.
const DATA_OFFSET: u64 = 16384;

#[test]
fn corrupted_slots_are_reported_not_trusted() {
    // A sequence number no step of the algorithm can produce.
    let name = RingName::new("corrupt-seq");
    let mut tx = mpmc::Sender::create(
        &name.0,
        shmring::mpmc::Config::default()
            .slots(4)
            .max_message_bytes(48),
    )
    .unwrap();
    let mut rx = mpmc::Receiver::open(&name.0).unwrap();
    tx.send(b"ok").unwrap();
    scribble(&name.0, DATA_OFFSET, &(1u64 << 40).to_ne_bytes());
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Corrupted(_))));
    // The handle stays broken, and the ring is marked poisoned for new openers.
    assert!(matches!(rx.recv(), Err(RecvError::Corrupted(_))));
    assert!(matches!(
        mpmc::Receiver::open(&name.0),
        Err(OpenError::Poisoned)
    ));

    // A length beyond the slot.
    let name = RingName::new("corrupt-len");
    let mut tx = mpmc::Sender::create(
        &name.0,
        shmring::mpmc::Config::default()
            .slots(4)
            .max_message_bytes(48),
    )
    .unwrap();
    let mut rx = mpmc::Receiver::open(&name.0).unwrap();
    tx.send(b"ok").unwrap();
    scribble(&name.0, DATA_OFFSET + 8, &u32::MAX.to_ne_bytes());
    match rx.recv() {
        Err(RecvError::Corrupted(c)) => assert_eq!(c.found, u64::from(u32::MAX)),
        other => panic!("expected corruption, got {other:?}"),
    }

    // A sequence in the future for the sender.
    let name = RingName::new("corrupt-tail");
    let mut tx = mpmc::Sender::create(
        &name.0,
        shmring::mpmc::Config::default()
            .slots(4)
            .max_message_bytes(48),
    )
    .unwrap();
    let _rx = mpmc::Receiver::open(&name.0).unwrap();
    scribble(&name.0, DATA_OFFSET, &12345u64.to_ne_bytes());
    assert!(matches!(
        tx.send(b"x"),
        Err(SendError::Corrupted { msg: (), .. })
    ));
}
