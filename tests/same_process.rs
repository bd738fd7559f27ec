//! Both ends of one SPSC ring in one process, each on a mapping of its own (opened by name
//! twice), with a third party rewriting the ring's shared words: a safe API must never hand
//! out a grant (`&mut [u8]`) and a message (`&[u8]`) over the same bytes. The ends tell each
//! other, in this process's own memory, how far they really got.

mod common;

use std::time::{Duration, Instant};

use common::{RingName, patch, spawn_child};
use shmring::{OpenError, TryRecvError, TrySendError, spsc};

const ENTRY: &str = "child_entry";

/// Runs in a child process of its own (single-threaded, so that it may fork and go on).
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child_entry() {
    let Ok(role) = std::env::var(common::ROLE_VAR) else {
        return;
    };
    match role.as_str() {
        "fork_then_consumer" => fork_then_consumer(),
        "fork_then_producer" => fork_then_producer(),
        other => panic!("unknown role {other}"),
    }
}

/// Waits for a forked child; its exit status (100 if it did not exit).
fn wait_forked(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waits for a child this process forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        100
    }
}

/// Forks; the child runs `f` (with an alarm, so that a hang fails) and exits with its code.
fn fork_child(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: this process is single-threaded (a child of the test binary started for this
    // role), so the forked child may allocate and use locks.
    match unsafe { libc::fork() } {
        -1 => panic!("fork failed"),
        0 => {
            // SAFETY: plain system calls in the forked child, which ends with `_exit`.
            unsafe { libc::alarm(20) };
            let code = f();
            // SAFETY: ends the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        pid => pid,
    }
}

/// The parent holds a producer; a forked child, still holding its inherited copy, opens the
/// consumer of the same ring: the parent's producer is no end of the child's process.
fn fork_then_consumer() {
    let name = RingName::new("fork-consumer");
    let mut tx =
        spsc::Producer::create(name.as_str(), spsc::Config::default().capacity_bytes(4096))
            .unwrap();
    tx.send(b"before").unwrap();
    let pid = fork_child(|| {
        let mut rx = match spsc::Consumer::open(name.as_str()) {
            Ok(rx) => rx,
            Err(e) => {
                eprintln!("child open: {e}");
                return 10;
            }
        };
        for want in [&b"before"[..], b"after"] {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(m) if &*m == want => {}
                Ok(m) => {
                    eprintln!("child got {:?}", &*m);
                    return 11;
                }
                Err(e) => {
                    eprintln!("child recv: {e}");
                    return 12;
                }
            }
        }
        // The inherited copy is still held here: it must not count as an end of this process.
        let _ = &tx;
        0
    });
    std::thread::sleep(Duration::from_millis(100));
    tx.send(b"after").unwrap();
    assert_eq!(wait_forked(pid), 0, "the child's consumer failed");
}

/// The parent holds a consumer; a forked child, still holding its inherited copy, opens the
/// producer and sends more than a ring's worth.
fn fork_then_producer() {
    let name = RingName::new("fork-producer");
    let mut rx = spsc::Consumer::create(
        name.as_str(),
        spsc::Config::default()
            .capacity_bytes(4096)
            .max_message_bytes(56),
    )
    .unwrap();
    let pid = fork_child(|| {
        let mut tx = match spsc::Producer::open(name.as_str()) {
            Ok(tx) => tx,
            Err(e) => {
                eprintln!("child open: {e}");
                return 10;
            }
        };
        for i in 0..200u32 {
            if let Err(e) = tx.send_timeout(&[i as u8; 56], Duration::from_secs(5)) {
                eprintln!("child send {i}: {e}");
                return 20;
            }
        }
        let _ = &rx;
        0
    });
    let mut got = 0u32;
    let start = Instant::now();
    while got < 200 && start.elapsed() < Duration::from_secs(15) {
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
            assert_eq!(&*m, &[got as u8; 56]);
            got += 1;
        }
    }
    assert_eq!((got, wait_forked(pid)), (200, 0));
}

#[test]
fn a_forked_child_is_a_process_of_its_own() {
    for role in ["fork_then_consumer", "fork_then_producer"] {
        spawn_child(ENTRY, role, &[]).finish();
    }
}

/// Offsets in the object: the consumer's `head` (control block after the header page) and
/// the first record header (the data region, on the next page).
const HEAD: u64 = 4096 + 128;
const TAIL: u64 = 4096;
const DATA: u64 = 8192;
const READY: u64 = 1 << 62;

fn pair(tag: &str) -> (RingName, spsc::Producer, spsc::Consumer) {
    let name = RingName::new(tag);
    let tx = spsc::Producer::create(
        name.as_str(),
        spsc::Config::default()
            .capacity_bytes(4096)
            .max_message_bytes(56),
    )
    .expect("create");
    let rx = spsc::Consumer::open(name.as_str()).expect("open");
    (name, tx, rx)
}

fn read_u64(name: &RingName, offset: u64) -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(name.dev_shm_path()).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut b = [0; 8];
    f.read_exact(&mut b).unwrap();
    u64::from_ne_bytes(b)
}

#[test]
fn a_forged_head_gives_no_room_over_a_lent_message() {
    let (name, mut tx, mut rx) = pair("same-head");
    let mut sent = 0u8;
    while tx.try_send(&[sent; 56]).is_ok() {
        sent += 1;
    }
    let m = rx.try_recv().expect("a message");
    assert_eq!(&*m, &[0; 56]);
    // A third party says everything was released.
    let tail = read_u64(&name, TAIL);
    patch(&name, HEAD, &tail.to_ne_bytes());
    // The consumer of this process released nothing: the ring is as full as it was, and no
    // grant may cover the message it still holds.
    match tx.try_reserve(56) {
        Err(TrySendError::Full(())) => {}
        Ok(_) => panic!("a grant over a ring whose consumer released nothing"),
        Err(e) => panic!("unexpected {e:?}"),
    }
    assert_eq!(&*m, &[0; 56], "the lent message changed");
    drop(m);
    // The room the consumer really released is granted (and is not the message's any more).
    let mut g = tx.try_reserve(56).expect("room released by the consumer");
    g.fill(0xEE);
    g.commit(56).unwrap();
    for i in 1..sent {
        assert_eq!(&*rx.try_recv().expect("queued"), &[i; 56]);
    }
    assert_eq!(&*rx.try_recv().unwrap(), &[0xEE; 56]);
}

#[test]
fn a_forged_header_lends_no_message_over_a_live_grant() {
    let (name, mut tx, mut rx) = pair("same-header");
    let mut g = tx.try_reserve(56).expect("room");
    g.fill(7);
    // A third party marks the record the producer is writing as published.
    patch(&name, DATA, &(READY | 56).to_ne_bytes());
    match rx.try_recv() {
        Err(TryRecvError::Corrupted(c)) => assert!(c.what.contains("published"), "{c}"),
        Ok(_) => panic!("a message over the producer's live grant"),
        Err(e) => panic!("unexpected {e:?}"),
    }
    // (The third party's header landed in the grant's payload: bytes a peer may garble.)
    g.commit(56).unwrap();
}

#[test]
fn ends_in_one_process_that_follow_the_protocol_are_not_slowed_or_refused() {
    let (_name, mut tx, mut rx) = pair("same-normal");
    let consumer = std::thread::spawn(move || {
        let mut n = 0u32;
        while let Ok(m) = rx.recv() {
            assert_eq!(&*m, &(n % 251).to_le_bytes()[..1].repeat(56)[..]);
            n += 1;
        }
        n
    });
    for n in 0..20_000u32 {
        tx.send(&(n % 251).to_le_bytes()[..1].repeat(56)).unwrap();
    }
    drop(tx);
    assert_eq!(consumer.join().unwrap(), 20_000);
}

fn config() -> spsc::Config {
    spsc::Config::default()
        .capacity_bytes(4096)
        .max_message_bytes(56)
}

#[test]
fn a_consumer_joining_behind_a_live_grant_is_refused() {
    let name = RingName::new("same-join-low");
    let mut tx = spsc::Producer::create(name.as_str(), config()).unwrap();
    let mut g = tx.try_reserve(56).unwrap();
    g.fill(7);
    // A third party says the consumer is a lap behind, at ring position 8 (inside the
    // grant's payload), and puts a record header there.
    patch(&name, HEAD, &8u64.wrapping_sub(4096).to_ne_bytes());
    patch(&name, DATA + 8, &(READY | 40).to_ne_bytes());
    match spsc::Consumer::open(name.as_str()) {
        Err(OpenError::Corrupted(c)) => assert!(c.what.contains("out of step"), "{c}"),
        Ok(mut rx) => match rx.try_recv() {
            Ok(_) => panic!("a message lent over the producer's live grant"),
            Err(e) => panic!("opened at a forged index, then {e:?}"),
        },
        Err(e) => panic!("unexpected {e:?}"),
    }
    // (The third party's header landed in the grant's payload: bytes a peer may garble.)
    g.commit(56).unwrap();
}

#[test]
fn a_producer_joining_inside_a_lent_message_is_refused() {
    let name = RingName::new("same-join-tail");
    let mut rx = spsc::Consumer::create(name.as_str(), config()).unwrap();
    // A third party (no producer yet) publishes a record at position 0, which the consumer
    // lends out; then it puts the producer's index inside that record.
    patch(&name, DATA, &(READY | 56).to_ne_bytes());
    let m = rx.try_recv().unwrap();
    assert_eq!(m.len(), 56);
    patch(&name, TAIL, &8u64.to_ne_bytes());
    match spsc::Producer::open(name.as_str()) {
        Err(OpenError::Corrupted(c)) => assert!(c.what.contains("out of step"), "{c}"),
        Ok(mut tx) => match tx.try_reserve(56) {
            Ok(_) => panic!("a grant over the consumer's lent message"),
            Err(e) => panic!("opened at a forged index, then {e:?}"),
        },
        Err(e) => panic!("unexpected {e:?}"),
    }
    assert_eq!(m.len(), 56);
}
