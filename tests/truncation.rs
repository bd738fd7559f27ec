//! A peer that truncates a named ring under us: every victim, blocked or busy, gets a typed
//! `Corrupted` error that says the object was truncated, and survives (no `SIGBUS`, no hang,
//! no false `Disconnected`). A memfd ring is sealed, so it cannot be truncated at all.
//!
//! The victims run in child processes (re-executions of this binary), so a victim killed by a
//! signal is reported as such instead of taking the test harness down with it. To see that
//! the `SIGBUS` guard is what saves them, build without it:
//!
//! ```sh
//! RUSTFLAGS='--cfg shmring_mutant="no_sigbus_guard"' cargo test -p shmring --test truncation
//! ```
//!
//! and every child-process test fails with "killed by SIGBUS" (the in-process test is then
//! skipped: it would kill the harness).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::ChildStdout;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{ChildProc, RingName, env, spawn_child};
use shmring::{
    Corruption, RecvError, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError, mpmc,
    spsc,
};

const ENTRY: &str = "victim_entry";
const READY: &str = "SHMRING-CHILD-READY";
/// Long enough that a victim that returns at all did not time out.
const LONG: Duration = Duration::from_secs(60);
/// How long the parent waits for a victim to finish after the truncation before it calls it
/// a hang (well below `LONG`).
const HANG: Duration = Duration::from_secs(30);

/// Dispatcher run in child processes; does nothing unless started by `spawn_child`.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn victim_entry() {
    let Ok(role) = std::env::var(common::ROLE_VAR) else {
        return;
    };
    // No core dump if a build without the guard lets the truncation kill us.
    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers and changes nothing else.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
    let name = env("RING");
    let outcome = match role.as_str() {
        "spsc_recv_blocked" => spsc_recv_blocked(&name),
        "spsc_send_blocked" => spsc_send_blocked(&name),
        "spsc_busy_producer" => spsc_busy_producer(&name),
        "spsc_busy_consumer" => spsc_busy_consumer(&name),
        "mpmc_recv_blocked" => mpmc_recv_blocked(&name),
        "mpmc_send_blocked" => mpmc_send_blocked(&name),
        "mpmc_busy_sender" => mpmc_busy_sender(&name),
        "mpmc_busy_receiver" => mpmc_busy_receiver(&name),
        "spsc_recv_after_sent_sigbus" => spsc_recv_after_sent_sigbus(&name),
        other => panic!("unknown role {other}"),
    };
    assert!(
        outcome.is_truncation(),
        "{role}: expected a truncation, got {outcome:?}"
    );
    println!("\nOUTCOME {role}: {outcome}");
}

fn ready() {
    println!("\n{READY}");
}

fn spsc_config() -> spsc::Config {
    spsc::Config::default().capacity_bytes(4096)
}

fn mpmc_config() -> mpmc::Config {
    mpmc::Config::default().slots(8).max_message_bytes(64)
}

fn spsc_recv_blocked(name: &str) -> Corruption {
    // No producer ever attaches: the consumer waits for one.
    let mut rx = spsc::Consumer::create(name, spsc_config()).expect("create");
    ready();
    let c = match rx.recv_timeout(LONG) {
        Err(RecvTimeoutError::Corrupted(c)) => c,
        other => panic!("recv_timeout: {:?}", other.map(|m| m.len())),
    };
    // The handle is broken for good.
    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Corrupted(c));
    c
}

fn spsc_send_blocked(name: &str) -> Corruption {
    // No consumer ever attaches: the producer fills the ring, then waits for room.
    let mut tx = spsc::Producer::create(name, spsc_config()).expect("create");
    while tx.try_send(&[7; 100]).is_ok() {}
    ready();
    let c = match tx.send_timeout(&[7; 100], LONG) {
        Err(SendTimeoutError::Corrupted { what, .. }) => what,
        other => panic!("send_timeout: {other:?}"),
    };
    assert!(matches!(
        tx.try_send(b"x"),
        Err(TrySendError::Corrupted { what, .. }) if what == c
    ));
    c
}

fn spsc_busy_producer(name: &str) -> Corruption {
    let mut tx = spsc::Producer::create(name, spsc_config()).expect("create");
    for n in 0u64.. {
        if n == 1000 {
            ready();
        }
        match tx.send_timeout(&n.to_le_bytes(), LONG) {
            Ok(()) => {}
            Err(SendTimeoutError::Corrupted { what, .. }) => return what,
            Err(e) => panic!("send_timeout after {n} messages: {e:?}"),
        }
    }
    unreachable!()
}

fn spsc_busy_consumer(name: &str) -> Corruption {
    let mut rx = spsc::Consumer::open_timeout(name, Duration::from_secs(10)).expect("open");
    for n in 0u64.. {
        if n == 1000 {
            ready();
        }
        match rx.recv_timeout(LONG) {
            // After the truncation a few records may read as zeros (empty messages) before
            // the indices give it away; contents are not checked here.
            Ok(_) => {}
            Err(RecvTimeoutError::Corrupted(c)) => return c,
            Err(e) => panic!("recv_timeout after {n} messages: {e:?}"),
        }
    }
    unreachable!()
}

fn mpmc_recv_blocked(name: &str) -> Corruption {
    // No sender ever attaches: the receiver waits for one.
    let mut rx = mpmc::Receiver::create(name, mpmc_config()).expect("create");
    ready();
    let c = match rx.recv_timeout(LONG) {
        Err(RecvTimeoutError::Corrupted(c)) => c,
        other => panic!("recv_timeout: {:?}", other.map(|m| m.len())),
    };
    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Corrupted(c));
    c
}

fn mpmc_send_blocked(name: &str) -> Corruption {
    let mut tx = mpmc::Sender::create(name, mpmc_config()).expect("create");
    while tx.try_send(&[7; 64]).is_ok() {}
    ready();
    let c = match tx.send_timeout(&[7; 64], LONG) {
        Err(SendTimeoutError::Corrupted { what, .. }) => what,
        other => panic!("send_timeout: {other:?}"),
    };
    assert!(matches!(
        tx.try_send(b"x"),
        Err(TrySendError::Corrupted { what, .. }) if what == c
    ));
    c
}

fn mpmc_busy_sender(name: &str) -> Corruption {
    let mut tx = mpmc::Sender::create(name, mpmc_config()).expect("create");
    for n in 0u64.. {
        if n == 1000 {
            ready();
        }
        match tx.send_timeout(&n.to_le_bytes(), LONG) {
            Ok(()) => {}
            Err(SendTimeoutError::Corrupted { what, .. }) => return what,
            Err(e) => panic!("send_timeout after {n} messages: {e:?}"),
        }
    }
    unreachable!()
}

fn mpmc_busy_receiver(name: &str) -> Corruption {
    let mut rx = mpmc::Receiver::open_timeout(name, Duration::from_secs(10)).expect("open");
    for n in 0u64.. {
        if n == 1000 {
            ready();
        }
        match rx.recv_timeout(LONG) {
            Ok(_) => {}
            Err(RecvTimeoutError::Corrupted(c)) => return c,
            Err(e) => panic!("recv_timeout after {n} messages: {e:?}"),
        }
    }
    unreachable!()
}

/// A `SIGBUS` sent with `kill` (not a fault) reaches the handler that was there before the
/// guard, here the Rust runtime's, which sets the default action and returns. The guard must
/// survive that: a truncation afterwards is still reported, not fatal.
fn spsc_recv_after_sent_sigbus(name: &str) -> Corruption {
    let mut rx = spsc::Consumer::create(name, spsc_config()).expect("create");
    // SAFETY: kill and getpid take and return plain integers.
    let sent = unsafe { libc::kill(libc::getpid(), libc::SIGBUS) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    // A signal a process sends itself is delivered before `kill` returns; it did not kill us.
    ready();
    let started = Instant::now();
    loop {
        match rx.try_recv() {
            Err(TryRecvError::Empty) if started.elapsed() < LONG => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(TryRecvError::Corrupted(c)) => return c,
            other => panic!("try_recv: {:?}", other.map(|m| m.len())),
        }
    }
}

/// A victim process and the pipe of its stdout (read once up to the ready line, then to the
/// end).
struct Victim {
    role: &'static str,
    child: ChildProc,
    out: BufReader<ChildStdout>,
}

impl Victim {
    fn start(role: &'static str, ring: &RingName) -> Victim {
        let mut child = spawn_child(ENTRY, role, &[("RING", ring.0.clone())]);
        let out = child.0.as_mut().unwrap().stdout.take().unwrap();
        Victim {
            role,
            child,
            out: BufReader::new(out),
        }
    }

    fn wait_ready(&mut self) {
        let mut line = String::new();
        loop {
            line.clear();
            if self.out.read_line(&mut line).expect("child stdout") == 0 {
                let status = self.child.0.as_mut().unwrap().wait().unwrap();
                panic!("{} exited before it was ready: {status:?}", self.role);
            }
            if line.contains(READY) {
                return;
            }
        }
    }

    /// Waits (bounded) for the victim to end and checks that it reported the truncation.
    fn expect_truncation_reported(mut self) {
        let started = Instant::now();
        let status = loop {
            let child = self.child.0.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > HANG {
                self.child.kill();
                panic!(
                    "{} still running {HANG:?} after the truncation: it hangs",
                    self.role
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stdout = String::new();
        self.out.read_to_string(&mut stdout).unwrap();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.0.as_mut().unwrap().stderr.take() {
            e.read_to_string(&mut stderr).unwrap();
        }
        if status.signal() == Some(libc::SIGBUS) {
            panic!(
                "{} was killed by SIGBUS: the truncation was not survived",
                self.role
            );
        }
        assert!(
            status.success(),
            "{} failed: {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            self.role
        );
        let expected = format!("OUTCOME {}: shared-memory object truncated", self.role);
        assert!(stdout.contains(&expected), "{}: {stdout}", self.role);
        self.child.0 = None;
    }
}

/// Truncates the named object to 0 bytes through a descriptor of our own, as a peer that may
/// open it read-write can.
fn truncate(ring: &RingName) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(ring.dev_shm_path())
        .expect("open the object");
    f.set_len(0).expect("ftruncate");
    assert_eq!(f.metadata().unwrap().len(), 0);
}

/// Starts the victims (the first one creates the ring, the others open it), waits until
/// each is ready, lets them settle into their blocked or busy state, truncates the ring and
/// checks each reports it.
fn truncate_under(tag: &str, roles: &[&'static str]) {
    let ring = RingName::new(tag);
    let mut victims: Vec<Victim> = roles.iter().map(|r| Victim::start(r, &ring)).collect();
    for v in &mut victims {
        v.wait_ready();
    }
    // Blocked victims are asleep on the futex by now; busy ones keep moving messages.
    std::thread::sleep(Duration::from_millis(300));
    truncate(&ring);
    for v in victims {
        v.expect_truncation_reported();
    }
}

#[test]
fn spsc_consumer_blocked_in_recv_timeout_gets_truncation_error() {
    truncate_under("trunc-spsc-recv", &["spsc_recv_blocked"]);
}

#[test]
fn spsc_producer_blocked_in_send_timeout_gets_truncation_error() {
    truncate_under("trunc-spsc-send", &["spsc_send_blocked"]);
}

#[test]
fn spsc_busy_producer_and_consumer_get_truncation_errors() {
    truncate_under(
        "trunc-spsc-busy",
        &["spsc_busy_producer", "spsc_busy_consumer"],
    );
}

#[test]
fn mpmc_receiver_blocked_in_recv_timeout_gets_truncation_error() {
    truncate_under("trunc-mpmc-recv", &["mpmc_recv_blocked"]);
}

#[test]
fn mpmc_sender_blocked_in_send_timeout_gets_truncation_error() {
    truncate_under("trunc-mpmc-send", &["mpmc_send_blocked"]);
}

#[test]
fn mpmc_busy_sender_and_receiver_get_truncation_errors() {
    truncate_under(
        "trunc-mpmc-busy",
        &["mpmc_busy_sender", "mpmc_busy_receiver"],
    );
}

#[test]
fn truncation_after_a_sent_sigbus_is_still_survived() {
    truncate_under("trunc-sent-sigbus", &["spsc_recv_after_sent_sigbus"]);
}

/// In this very process, through a second descriptor: a consumer blocked in `recv()` (no
/// timeout at all) gets the error within a wait slice, and the producer in the same process
/// finds out too.
#[test]
#[cfg_attr(
    shmring_mutant = "no_sigbus_guard",
    ignore = "without the guard the truncation kills this process"
)]
fn truncation_in_this_process_ends_an_untimed_recv() {
    let ring = RingName::new("trunc-self");
    let mut tx = spsc::Producer::create(ring.as_str(), spsc_config()).unwrap();
    let mut rx = spsc::Consumer::open(ring.as_str()).unwrap();
    tx.send(b"before").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"before");

    let (done_tx, done_rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let r = rx.recv().map(|m| m.to_vec());
        done_tx.send(r).unwrap();
        rx
    });
    std::thread::sleep(Duration::from_millis(300));
    truncate(&ring);
    let c = match done_rx.recv_timeout(HANG) {
        Ok(Err(RecvError::Corrupted(c))) => c,
        Ok(other) => panic!("recv: {other:?}"),
        Err(_) => panic!("recv still blocked {HANG:?} after the truncation"),
    };
    assert!(c.is_truncation(), "{c}");
    assert_eq!(c.found, 0, "the object's size when noticed");
    assert!(c.to_string().contains("truncated"), "{c}");
    let mut rx = waiter.join().unwrap();
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Corrupted(d)) if d == c));

    // The producer shares this process's (replaced) pages; once it runs out of room it looks
    // again and reports the truncation instead of waiting forever.
    let mut sent = 0;
    let what = loop {
        match tx.send_timeout(&[1; 64], Duration::from_millis(500)) {
            Ok(()) => sent += 1,
            Err(SendTimeoutError::Corrupted { what, .. }) => break what,
            Err(e) => panic!("send_timeout after {sent}: {e:?}"),
        }
        assert!(sent < 1000, "the producer never noticed");
    };
    assert!(what.is_truncation(), "{what}");
}

#[test]
fn sealed_memfd_rings_cannot_be_truncated() {
    let (mut tx, fd) = spsc::Producer::create_anonymous(spsc_config()).unwrap();
    assert_eq!(rustix::fs::ftruncate(&fd, 0), Err(rustix::io::Errno::PERM));
    assert_eq!(
        rustix::fs::ftruncate(&fd, 1 << 30),
        Err(rustix::io::Errno::PERM)
    );
    let mut rx = spsc::Consumer::from_fd(fd).unwrap();
    tx.send(b"intact").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"intact");

    let (mut tx, fd) = mpmc::Sender::create_anonymous(mpmc_config()).unwrap();
    assert_eq!(rustix::fs::ftruncate(&fd, 0), Err(rustix::io::Errno::PERM));
    let mut rx = mpmc::Receiver::from_fd(fd).unwrap();
    tx.send(b"intact").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"intact");
}
