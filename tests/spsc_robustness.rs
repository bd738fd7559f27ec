//! Peers that die at awkward moments, fork, or hand over unsafe objects.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{RingName, patch, spawn_child};
use shmring::{OpenError, RecvTimeoutError, SendTimeoutError, TryRecvError, spsc};

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
#[ignore = "runs only as a child process of the other tests"]
fn robust_child() {
    let Ok(role) = std::env::var(common::ROLE_VAR) else {
        return;
    };
    let name = common::env("RING");
    match role.as_str() {
        "send_two_then_hang" => {
            let mut tx = spsc::Producer::open(&name).unwrap();
            tx.send(b"one").unwrap();
            tx.send(b"two").unwrap();
            println!("\nSHMRING-CHILD-READY");
            std::thread::sleep(Duration::from_secs(600));
        }
        other => panic!("unknown role {other}"),
    }
}

/// Starts a producer that sends "one" and "two", waits until it did, and SIGKILLs it.
fn killed_producer(tag: &str) -> (RingName, spsc::Consumer) {
    let name = RingName::new(tag);
    let rx = spsc::Consumer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(4096),
    )
    .unwrap();
    let mut child = spawn_child(
        "robust_child",
        "send_two_then_hang",
        &[("RING", name.0.clone())],
    );
    {
        use std::io::BufRead;
        let out = child.0.as_mut().unwrap().stdout.as_mut().unwrap();
        let ready = std::io::BufReader::new(out)
            .lines()
            .any(|l| l.unwrap().contains("SHMRING-CHILD-READY"));
        assert!(ready);
    }
    child.kill();
    child.reap();
    (name, rx)
}

#[test]
fn try_recv_notices_a_killed_producer_after_draining() {
    let (_name, mut rx) = killed_producer("trykill");
    // Never blocking: the messages sent before the kill come first, then end of stream.
    let mut got = Vec::new();
    let mut polls = 0u64;
    loop {
        match rx.try_recv() {
            Ok(m) => got.push(m.to_vec()),
            Err(TryRecvError::Empty) => {
                polls += 1;
                // Liveness is looked up at most once per 100 ms; poll gently.
                assert!(
                    polls < 2000,
                    "a dead producer was never noticed by try_recv"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(TryRecvError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
    assert!(rx.is_disconnected());
}

#[test]
fn short_timeouts_in_a_loop_notice_a_killed_producer() {
    let (_name, mut rx) = killed_producer("shortkill");
    let mut got = Vec::new();
    let mut timeouts = 0u64;
    loop {
        // Each wait is shorter than the 100 ms liveness slice.
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(m) => got.push(m.to_vec()),
            Err(RecvTimeoutError::Timeout) => {
                timeouts += 1;
                assert!(timeouts < 500, "a dead producer was never noticed");
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
}

#[test]
fn a_peer_that_died_while_attaching_is_gone() {
    let name = RingName::new("midattach");
    let mut tx = spsc::Producer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(64),
    )
    .unwrap();
    // Endpoint entry 1 (the consumer) at 128 + 24: state CLAIMING, pid of a dead process.
    patch(&name, 128 + 24 + 8, &dead_pid().to_ne_bytes());
    patch(&name, 128 + 24, &1u32.to_ne_bytes());
    while tx.try_send(&[0; 8]).is_ok() {}
    match tx.send_timeout(&[1; 8], Duration::from_secs(20)) {
        Err(SendTimeoutError::Disconnected(_)) => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

#[test]
fn dropping_an_inherited_handle_in_a_forked_child_closes_nothing() {
    let (mut tx, fd) =
        spsc::Producer::create_anonymous(shmring::spsc::Config::default().capacity_bytes(4096))
            .unwrap();
    let mut rx = spsc::Consumer::from_fd(fd).unwrap();
    common::fork_and_wait(|| {
        // SAFETY: in the forked child these bitwise copies are the child's own (fork copied
        // the memory) and the originals are never used there again; dropping them is what
        // a child closing its inherited handles does.
        let inherited = unsafe { (std::ptr::read(&rx), std::ptr::read(&tx)) };
        drop(inherited);
    });
    // Both ends are still open in the parent.
    assert!(!rx.is_disconnected());
    assert!(!tx.is_disconnected());
    tx.send(b"still here").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"still here");
}

#[test]
fn unsealed_memfd_is_refused() {
    // A memfd holding a copy of a valid ring, but without seals: its owner could shrink it.
    let (_tx, fd) =
        spsc::Producer::create_anonymous(shmring::spsc::Config::default().capacity_bytes(4096))
            .unwrap();
    let mut bytes = Vec::new();
    {
        use std::io::Read;
        let mut f = std::fs::File::from(fd);
        f.read_to_end(&mut bytes).unwrap();
    }
    let fd = rustix::fs::memfd_create("unsealed", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let mut f = std::fs::File::from(fd);
    f.write_all(&bytes).unwrap();
    match spsc::Consumer::from_fd(f.into()) {
        Err(OpenError::Untrusted { reason, .. }) => assert!(reason.contains("sealed"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn drain_edges() {
    let (mut tx, mut rx) =
        spsc::channel(&shmring::spsc::Config::default().capacity_bytes(256)).unwrap();
    tx.send(b"a").unwrap();
    // Asking for nothing is not "empty".
    assert_eq!(rx.drain(0, |_| {}).unwrap(), 0);
    // A panicking callback still releases what it consumed, so the producer is not stuck.
    tx.send(b"b").unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rx.drain(10, |m| {
            if m == b"b" {
                panic!("callback failure");
            }
        })
    }));
    assert!(r.is_err());
    // "a" was handled and released; "b", whose callback did not finish, is still there.
    assert_eq!(&*rx.try_recv().unwrap(), b"b");
    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
    // Everything was released: the largest message fits again.
    let room = tx.max_message();
    tx.try_send(&vec![0; room]).unwrap();
    drop(tx);
    assert_eq!(rx.recv().unwrap().len(), room);
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(1)).unwrap_err(),
        RecvTimeoutError::Disconnected
    );
}
