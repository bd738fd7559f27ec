//! Handles inherited across `fork`: in the child, every call that would move data fails with
//! a `Corruption` for which `is_inherited()` holds, and nothing the copies do (calls, messages
//! and grants held at the fork, drops) reaches the parent's ring: the parent receives exactly
//! what it sent, and keeps working. Endpoints the child attaches itself work normally.
//!
//! Each test runs in a child process (a re-execution of this binary, one test on one thread),
//! which makes the rings and forks: its forked children may then allocate and print. Every
//! check in the forked child and in its parent is counted rather than fatal, so a failure
//! shows both what the child was let do and what it did to the parent. To see that the fork
//! guard is what keeps the copies off the ring, build without it:
//!
//! ```sh
//! RUSTFLAGS='--cfg shmring_mutant="no_fork_guard"' cargo test -p shmring --test fork
//! ```
//!
//! and both tests fail: the child's sends succeed, its receives take the parent's messages,
//! and the parent loses messages or finds ones it never sent.

mod common;

use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use common::{RingName, env, spawn_child};
use shmring::io::ByteReader;
use shmring::{
    CommitError, Corruption, OpenError, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    TryRecvError, TrySendError, mpmc, spsc,
};

const ENTRY: &str = "fork_entry";
const PASSED: &str = "FORK-CHECKS-PASSED";

/// Checks that are counted, not fatal: the process goes on and reports every failure.
struct Checks {
    who: &'static str,
    failed: u32,
}

impl Checks {
    fn new(who: &'static str) -> Checks {
        Checks { who, failed: 0 }
    }

    fn check(&mut self, ok: bool, what: impl std::fmt::Display) {
        if !ok {
            self.failed += 1;
            eprintln!("{}: FAILED: {what}", self.who);
        }
    }
}

/// Whether `c` is what a copy inherited from process `parent` reports.
fn inherited_from(c: &Corruption, parent: u32) -> bool {
    c.is_inherited() && c.found == u64::from(parent)
}

/// A bound on how long a process of these tests runs: a copy that is not stopped (the
/// mutant build) may block for ever on a ring it fills or empties; `SIGALRM` then ends the
/// process, and the test fails instead of hanging. A forked child gets the shorter bound, so
/// that its parent still reports what the child did to its ring. Not a timing check: a
/// sound run takes milliseconds.
fn bound_lifetime(secs: u32) {
    // SAFETY: `alarm` only arms this process's timer.
    unsafe { libc::alarm(secs) };
}

/// Forks (this process runs one thread: the harness's main thread waits in `join` for this
/// test's, so the child may allocate); returns the child's pid, 0 in the child, whose life
/// is bounded (timers are not inherited).
fn fork() -> libc::pid_t {
    // SAFETY: fork in a process with one running thread (above); every child of these
    // tests ends with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        bound_lifetime(20);
    }
    pid
}

/// Forks with `handles`: the child runs `child` on its copies and exits with the number of
/// checks that failed; the parent gets its handles back with that number.
fn fork_with<H>(handles: H, child: impl FnOnce(H) -> u32) -> (H, u32) {
    let pid = fork();
    if pid == 0 {
        let failed =
            std::panic::catch_unwind(AssertUnwindSafe(|| child(handles))).unwrap_or_else(|_| {
                eprintln!("forked child: panicked");
                100
            });
        // SAFETY: ends the forked child without running the parent's exit handlers.
        unsafe { libc::_exit(failed.min(100) as i32) };
    }
    (handles, wait_for(pid))
}

/// Waits for the forked child `pid`; returns its exit code (100 if a signal ended it).
fn wait_for(pid: libc::pid_t) -> u32 {
    let mut status = 0;
    // SAFETY: waits for a child this process forked, by its pid.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u32
    } else {
        eprintln!("forked child ended by wait status {status:#x}");
        100
    }
}

#[test]
fn inherited_spsc_handles_fail_in_the_child_and_leave_the_parents_ring_alone() {
    let (ring, other) = (RingName::new("fork-spsc"), RingName::new("fork-spsc-own"));
    let out = spawn_child(
        ENTRY,
        "spsc",
        &[("RING", ring.0.clone()), ("OTHER", other.0.clone())],
    )
    .finish();
    assert!(out.contains(PASSED), "{out}");
}

#[test]
fn inherited_mpmc_handles_fail_in_the_child_and_leave_the_parents_ring_alone() {
    let ring = RingName::new("fork-mpmc");
    let out = spawn_child(ENTRY, "mpmc", &[("RING", ring.0.clone())]).finish();
    assert!(out.contains(PASSED), "{out}");
}

#[test]
#[ignore = "runs only as a child process of the other tests"]
fn fork_entry() {
    let Ok(role) = std::env::var(common::ROLE_VAR) else {
        return;
    };
    bound_lifetime(120);
    let failed = match role.as_str() {
        "spsc" => spsc_parent(&env("RING"), &env("OTHER")),
        "mpmc" => mpmc_parent(&env("RING")),
        other => panic!("unknown role {other}"),
    };
    assert_eq!(failed, 0, "{failed} checks failed (see stderr)");
    println!("\n{PASSED}");
}

// ---------------------------------------------------------------------------------------
// SPSC

fn spsc_parent(name: &str, other: &str) -> u32 {
    let me = std::process::id();
    let mut ck = Checks::new("spsc parent");
    let config = || spsc::Config::default().capacity_bytes(1024);
    let mut tx = spsc::Producer::create(name, config()).unwrap();
    let rx = spsc::Consumer::open(name).unwrap();
    let mut own_rx = spsc::Consumer::create(other, config()).unwrap();
    tx.send(b"before the fork").unwrap();

    // 1. Every call of the copies fails in the child; endpoints it attaches itself work.
    let ((mut tx, mut rx), failed) =
        fork_with((tx, rx), |(tx, rx)| spsc_child_calls(tx, rx, me, other));
    ck.check(
        failed == 0,
        format_args!("{failed} checks failed in the child"),
    );
    ck.check(
        rx.try_recv().map(|m| m.to_vec()).as_deref() == Ok(b"before the fork"),
        "the parent's message is there, first",
    );
    ck.check(
        matches!(rx.try_recv(), Err(TryRecvError::Empty)),
        "nothing from the child's copies reached the ring",
    );
    ck.check(
        own_rx.try_recv().map(|m| m.to_vec()).as_deref() == Ok(b"from the child's own producer"),
        "the producer the child opened itself delivered",
    );
    ck.check(
        matches!(own_rx.try_recv(), Err(TryRecvError::Disconnected)),
        "and closed when the child dropped it",
    );
    ck.check(
        !tx.is_disconnected() && !rx.is_disconnected(),
        "the copies closed nothing",
    );
    ck.check(
        matches!(
            spsc::Producer::open(name),
            Err(OpenError::EndpointTaken("producer"))
        ),
        "the ring is not poisoned, and the producer is still the parent's",
    );
    tx.send(b"after the fork").unwrap();
    ck.check(
        rx.try_recv().map(|m| m.to_vec()).as_deref() == Ok(b"after the fork"),
        "the parent keeps working",
    );

    // 2. A message held at the fork: dropping the child's copy releases nothing (the
    // record is more than a quarter of the ring, so a release would store `head` at once).
    tx.send(&[7; 300]).unwrap();
    let msg = rx.try_recv().unwrap();
    let used = tx.used_bytes();
    let (msg, failed) = fork_with(msg, |msg| {
        drop(msg);
        0
    });
    ck.check(failed == 0, "the child dropped its copy of the message");
    ck.check(
        tx.used_bytes() == used,
        format_args!(
            "a message the parent holds is not released by the child ({} of {used} bytes in use)",
            tx.used_bytes()
        ),
    );
    ck.check(*msg == [7; 300], "the held message is intact");
    drop(msg);

    // 3. A grant held at the fork: the child's commit publishes nothing.
    let mut grant = tx.reserve(16).unwrap();
    grant.copy_from_slice(b"parent's grant..");
    let (grant, failed) = fork_with(grant, |grant| {
        let mut ck = Checks::new("spsc child (grant)");
        match grant.commit(5) {
            Err(CommitError::Corrupted(c)) => ck.check(inherited_from(&c, me), c),
            other => ck.check(
                false,
                format_args!("commit of an inherited grant: {other:?}"),
            ),
        }
        ck.failed
    });
    ck.check(
        failed == 0,
        format_args!("{failed} grant checks failed in the child"),
    );
    ck.check(
        matches!(rx.try_recv(), Err(TryRecvError::Empty)),
        "the child's commit published nothing",
    );
    grant.commit(16).unwrap();
    ck.check(
        rx.try_recv().map(|m| m.to_vec()).as_deref() == Ok(b"parent's grant.."),
        "the parent's commit publishes its grant",
    );

    // 4. A batch held at the fork: the child's drop publishes nothing.
    let mut batch = tx.batch();
    batch.try_send(b"batched").unwrap();
    let (mut batch, failed) = fork_with(batch, |mut batch| {
        let mut ck = Checks::new("spsc child (batch)");
        match batch.try_send(b"the child's") {
            Err(TrySendError::Corrupted { what, .. }) => ck.check(inherited_from(&what, me), what),
            other => ck.check(false, format_args!("inherited batch try_send: {other:?}")),
        }
        batch.publish();
        drop(batch);
        ck.failed
    });
    ck.check(
        failed == 0,
        format_args!("{failed} batch checks failed in the child"),
    );
    ck.check(
        matches!(rx.try_recv(), Err(TryRecvError::Empty)),
        "the child's batch published nothing",
    );
    batch.publish();
    drop(batch);
    ck.check(
        rx.try_recv().map(|m| m.to_vec()).as_deref() == Ok(b"batched"),
        "the parent's batch is published",
    );

    // 5. A fork inside a `drain` callback: the child's drain stops at its next message and
    // releases nothing; the parent's goes on.
    tx.send(&[1; 300]).unwrap();
    tx.send(b"second").unwrap();
    let used = tx.used_bytes();
    let mut forked = -1;
    let mut seen = Vec::new();
    let drained = rx.drain(10, |m| {
        seen.push(m.to_vec());
        if seen.len() == 1 {
            forked = fork();
            if forked != 0 {
                let failed = wait_for(forked);
                ck.check(failed == 0, "the child's drain stopped");
                ck.check(
                    tx.used_bytes() == used,
                    "the child's drain released nothing of the parent's",
                );
            }
        }
    });
    if forked == 0 {
        // The child, back from its drain.
        let ok = matches!(drained, Err(TryRecvError::Corrupted(c)) if inherited_from(&c, me))
            && seen.len() == 1;
        if !ok {
            eprintln!(
                "spsc child (drain): {drained:?} after {} messages",
                seen.len()
            );
        }
        // SAFETY: ends the forked child without running the parent's exit handlers.
        unsafe { libc::_exit(i32::from(!ok)) };
    }
    ck.check(
        matches!(drained, Ok(2)) && seen.len() == 2 && seen[1] == b"second",
        format_args!("the parent's drain took both messages: {drained:?}"),
    );
    ck.check(tx.used_bytes() == 0, "and released them");
    ck.failed
}

/// In the forked child: every call of the inherited SPSC handles fails; rings the child
/// attaches itself work.
fn spsc_child_calls(
    mut tx: spsc::Producer,
    mut rx: spsc::Consumer,
    parent: u32,
    other: &str,
) -> u32 {
    let mut ck = Checks::new("spsc child");
    let inh = |c: &Corruption| inherited_from(c, parent);
    let t = Duration::from_millis(1);
    match tx.send(b"child") {
        Err(SendError::Corrupted { what, .. }) => ck.check(inh(&what), what),
        other => ck.check(false, format_args!("send: {other:?}")),
    }
    match tx.try_send(b"child") {
        Err(e @ TrySendError::Corrupted { .. }) => {
            let text = e.to_string();
            ck.check(
                text.contains("inherited across fork()") && !text.contains("ring corrupted"),
                format_args!("the error says what happened: {text}"),
            );
            let TrySendError::Corrupted { what, .. } = e else {
                unreachable!()
            };
            ck.check(inh(&what), what);
        }
        other => ck.check(false, format_args!("try_send: {other:?}")),
    }
    match tx.send_timeout(b"child", t) {
        Err(SendTimeoutError::Corrupted { what, .. }) => ck.check(inh(&what), what),
        other => ck.check(false, format_args!("send_timeout: {other:?}")),
    }
    match tx.reserve(8) {
        Err(SendError::Corrupted { what, .. }) => ck.check(inh(&what), what),
        other => ck.check(false, format_args!("reserve: {other:?}")),
    }
    match tx.try_reserve(8) {
        Err(TrySendError::Corrupted { what, .. }) => ck.check(inh(&what), what),
        other => ck.check(false, format_args!("try_reserve: {other:?}")),
    }
    match tx.reserve_timeout(8, t) {
        Err(SendTimeoutError::Corrupted { what, .. }) => ck.check(inh(&what), what),
        other => ck.check(false, format_args!("reserve_timeout: {other:?}")),
    }
    match tx.send_many(&[b"a", b"b"]) {
        Err(SendError::Corrupted { what, .. }) => ck.check(inh(&what), what),
        other => ck.check(false, format_args!("send_many: {other:?}")),
    }
    match tx.try_send_many(&[b"a", b"b"]) {
        Err(TrySendError::Corrupted { what, .. }) => ck.check(inh(&what), what),
        other => ck.check(false, format_args!("try_send_many: {other:?}")),
    }
    {
        let mut batch = tx.batch();
        match batch.send(b"child") {
            Err(SendError::Corrupted { what, .. }) => ck.check(inh(&what), what),
            other => ck.check(false, format_args!("batch send: {other:?}")),
        }
    }
    match tx.write(b"child") {
        Err(e) => ck.check(
            e.kind() == std::io::ErrorKind::InvalidData,
            format_args!("io::Write: {e}"),
        ),
        Ok(n) => ck.check(false, format_args!("io::Write wrote {n} bytes")),
    }
    ck.check(!tx.is_disconnected(), "the parent's consumer is alive");

    match rx.recv() {
        Err(RecvError::Corrupted(c)) => ck.check(inh(&c), c),
        other => ck.check(false, format_args!("recv: {:?}", other.map(|m| m.to_vec()))),
    }
    match rx.try_recv() {
        Err(TryRecvError::Corrupted(c)) => ck.check(inh(&c), c),
        other => ck.check(
            false,
            format_args!("try_recv: {:?}", other.map(|m| m.to_vec())),
        ),
    }
    match rx.recv_timeout(t) {
        Err(RecvTimeoutError::Corrupted(c)) => ck.check(inh(&c), c),
        other => ck.check(
            false,
            format_args!("recv_timeout: {:?}", other.map(|m| m.to_vec())),
        ),
    }
    let mut handed = 0;
    match rx.drain(10, |_| handed += 1) {
        Err(TryRecvError::Corrupted(c)) => ck.check(inh(&c) && handed == 0, c),
        other => ck.check(false, format_args!("drain: {other:?}")),
    }
    match rx.recv_many(10, |_| handed += 1) {
        Err(RecvError::Corrupted(c)) => ck.check(inh(&c) && handed == 0, c),
        other => ck.check(false, format_args!("recv_many: {other:?}")),
    }
    match rx.iter().next() {
        Some(Err(c)) => ck.check(inh(&c), c),
        other => ck.check(false, format_args!("iter: {other:?}")),
    }
    match rx.try_iter().next() {
        Some(Err(c)) => ck.check(inh(&c), c),
        other => ck.check(false, format_args!("try_iter: {other:?}")),
    }
    ck.check(!rx.is_disconnected(), "the parent's producer is alive");
    let mut reader = ByteReader::new(rx);
    match reader.read(&mut [0; 64]) {
        Err(e) => ck.check(
            e.kind() == std::io::ErrorKind::InvalidData,
            format_args!("io::Read: {e}"),
        ),
        Ok(n) => ck.check(false, format_args!("io::Read read {n} bytes")),
    }
    let rx = reader.into_inner();
    #[cfg(feature = "tokio")]
    let (tx, rx) = spsc_child_async(tx, rx, parent, &mut ck);

    // Endpoints the child attaches itself are its own.
    let mut own = spsc::Producer::open(other).unwrap();
    ck.check(
        own.try_send(b"from the child's own producer").is_ok(),
        "send on an endpoint opened by name in the child",
    );
    drop(own);
    let (mut atx, fd) = spsc::Producer::create_anonymous(spsc::Config::default()).unwrap();
    let mut arx = spsc::Consumer::from_fd(fd).unwrap();
    atx.send(b"anonymous").unwrap();
    ck.check(
        arx.try_recv().map(|m| m.to_vec()).as_deref() == Ok(b"anonymous"),
        "a ring the child creates works",
    );
    // Dropping the copies closes nothing (checked by the parent).
    drop((tx, rx));
    ck.failed
}

#[cfg(feature = "tokio")]
fn spsc_child_async(
    tx: spsc::Producer,
    rx: spsc::Consumer,
    parent: u32,
    ck: &mut Checks,
) -> (spsc::Producer, spsc::Consumer) {
    use shmring::evented::{AsyncConsumer, AsyncProducer};
    let mut atx = AsyncProducer::new(tx).unwrap();
    let mut arx = AsyncConsumer::new(rx).unwrap();
    match poll_once(atx.send(b"child")) {
        Some(Err(SendError::Corrupted { what, .. })) => {
            ck.check(inherited_from(&what, parent), what)
        }
        other => ck.check(false, format_args!("async send: {other:?}")),
    }
    match poll_once(atx.reserve(8)).map(|r| r.map(|g| g.len())) {
        Some(Err(SendError::Corrupted { what, .. })) => {
            ck.check(inherited_from(&what, parent), what)
        }
        other => ck.check(false, format_args!("async reserve: {other:?}")),
    }
    match poll_once(arx.recv()).map(|r| r.map(|m| m.to_vec())) {
        Some(Err(RecvError::Corrupted(c))) => ck.check(inherited_from(&c, parent), c),
        other => ck.check(false, format_args!("async recv: {other:?}")),
    }
    (atx.into_inner(), arx.into_inner())
}

/// Polls `f` once (an inherited handle's future is ready at its first poll).
#[cfg(feature = "tokio")]
fn poll_once<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => Some(r),
        std::task::Poll::Pending => None,
    }
}

// ---------------------------------------------------------------------------------------
// MPMC

fn mpmc_parent(name: &str) -> u32 {
    let me = std::process::id();
    let mut ck = Checks::new("mpmc parent");
    let config = mpmc::Config::default().slots(2).max_message_bytes(48);
    let mut tx = mpmc::Sender::create(name, config).unwrap();
    let rx = mpmc::Receiver::open(name).unwrap();
    tx.send(b"before the fork").unwrap();

    // 1. Every call of the copies fails in the child; endpoints it attaches itself work.
    let ((mut tx, mut rx), failed) =
        fork_with((tx, rx), |(tx, rx)| mpmc_child_calls(tx, rx, me, name));
    ck.check(
        failed == 0,
        format_args!("{failed} checks failed in the child"),
    );
    ck.check(
        rx.try_recv().map(|m| m.to_vec()).as_deref() == Ok(b"before the fork"),
        "the parent's message is there, first",
    );
    ck.check(
        rx.try_recv().map(|m| m.to_vec()).as_deref() == Ok(b"from the child's own sender"),
        "the sender the child opened itself delivered",
    );
    ck.check(
        matches!(rx.try_recv(), Err(TryRecvError::Empty)),
        "nothing from the child's copies reached the ring",
    );
    ck.check(
        !tx.is_disconnected() && !rx.is_disconnected(),
        "the copies closed nothing",
    );
    ck.check(
        mpmc::Sender::open(name).is_ok(),
        "the ring is not poisoned and its senders' side is open",
    );
    tx.send(b"after the fork").unwrap();
    ck.check(
        rx.try_recv().map(|m| m.to_vec()).as_deref() == Ok(b"after the fork"),
        "the parent keeps working",
    );

    // 2. A message and a grant held at the fork (both slots of the ring in use): the
    // children's commit, drops of the grant and drops of the message touch neither.
    tx.send(b"held by the parent").unwrap();
    let msg = rx.try_recv().unwrap();
    let mut grant = tx.reserve(8).unwrap();
    grant.copy_from_slice(b"granted!");
    let ((msg, grant), failed) = fork_with((msg, grant), |(msg, grant)| {
        let mut ck = Checks::new("mpmc child (commit)");
        drop(msg);
        match grant.commit(3) {
            Err(CommitError::Corrupted(c)) => ck.check(inherited_from(&c, me), c),
            other => ck.check(
                false,
                format_args!("commit of an inherited grant: {other:?}"),
            ),
        }
        ck.failed
    });
    ck.check(
        failed == 0,
        format_args!("{failed} commit checks failed in the child"),
    );
    let ((msg, grant), failed) = fork_with((msg, grant), |held| {
        drop(held);
        0
    });
    ck.check(
        failed == 0,
        "the child dropped its copies of the message and grant",
    );
    let mut tx2 = mpmc::Sender::open(name).unwrap();
    ck.check(
        matches!(tx2.try_send(b"x"), Err(TrySendError::Full(()))),
        "the slot of the message the parent holds was not released by a child",
    );
    drop(tx2);
    ck.check(&*msg == b"held by the parent", "the held message is intact");
    drop(msg);
    ck.check(
        matches!(rx.try_recv(), Err(TryRecvError::Empty)),
        "the children neither published nor abandoned the parent's grant",
    );
    grant.commit(8).unwrap();
    ck.check(
        rx.try_recv().map(|m| m.to_vec()).as_deref() == Ok(b"granted!"),
        "the parent's commit delivers its grant",
    );
    ck.check(
        matches!(rx.try_recv(), Err(TryRecvError::Empty)),
        "and nothing else",
    );
    ck.failed
}

/// In the forked child: every call of the inherited MPMC handles fails (`try_clone`
/// included); a sender the child opens itself works.
fn mpmc_child_calls(mut tx: mpmc::Sender, mut rx: mpmc::Receiver, parent: u32, name: &str) -> u32 {
    let mut ck = Checks::new("mpmc child");
    let inh = |c: &Corruption| inherited_from(c, parent);
    let t = Duration::from_millis(1);
    match tx.send(b"child") {
        Err(SendError::Corrupted { what, .. }) => ck.check(inh(&what), what),
        other => ck.check(false, format_args!("send: {other:?}")),
    }
    match tx.try_send(b"child") {
        Err(TrySendError::Corrupted { what, .. }) => ck.check(inh(&what), what),
        other => ck.check(false, format_args!("try_send: {other:?}")),
    }
    match tx.send_timeout(b"child", t) {
        Err(SendTimeoutError::Corrupted { what, .. }) => ck.check(inh(&what), what),
        other => ck.check(false, format_args!("send_timeout: {other:?}")),
    }
    match tx.reserve(8) {
        Err(SendError::Corrupted { what, .. }) => ck.check(inh(&what), what),
        other => ck.check(false, format_args!("reserve: {other:?}")),
    }
    match tx.try_reserve(8) {
        Err(TrySendError::Corrupted { what, .. }) => ck.check(inh(&what), what),
        other => ck.check(false, format_args!("try_reserve: {other:?}")),
    }
    match tx.reserve_timeout(8, t) {
        Err(SendTimeoutError::Corrupted { what, .. }) => ck.check(inh(&what), what),
        other => ck.check(false, format_args!("reserve_timeout: {other:?}")),
    }
    match tx.write(b"child") {
        Err(e) => ck.check(
            e.kind() == std::io::ErrorKind::InvalidData,
            format_args!("io::Write: {e}"),
        ),
        Ok(n) => ck.check(false, format_args!("io::Write wrote {n} bytes")),
    }
    match tx.try_clone() {
        Err(OpenError::Corrupted(c)) => ck.check(inh(&c), c),
        other => ck.check(false, format_args!("try_clone of a sender: {other:?}")),
    }
    ck.check(!tx.is_disconnected(), "the parent's receiver is alive");

    match rx.recv() {
        Err(RecvError::Corrupted(c)) => ck.check(inh(&c), c),
        other => ck.check(false, format_args!("recv: {:?}", other.map(|m| m.to_vec()))),
    }
    match rx.try_recv() {
        Err(TryRecvError::Corrupted(c)) => ck.check(inh(&c), c),
        other => ck.check(
            false,
            format_args!("try_recv: {:?}", other.map(|m| m.to_vec())),
        ),
    }
    match rx.recv_timeout(t) {
        Err(RecvTimeoutError::Corrupted(c)) => ck.check(inh(&c), c),
        other => ck.check(
            false,
            format_args!("recv_timeout: {:?}", other.map(|m| m.to_vec())),
        ),
    }
    match rx.iter().next() {
        Some(Err(c)) => ck.check(inh(&c), c),
        other => ck.check(false, format_args!("iter: {other:?}")),
    }
    match rx.try_iter().next() {
        Some(Err(c)) => ck.check(inh(&c), c),
        other => ck.check(false, format_args!("try_iter: {other:?}")),
    }
    match rx.try_clone() {
        Err(OpenError::Corrupted(c)) => ck.check(inh(&c), c),
        other => ck.check(false, format_args!("try_clone of a receiver: {other:?}")),
    }
    ck.check(!rx.is_disconnected(), "the parent's sender is alive");
    let mut reader = ByteReader::new(rx);
    match reader.read(&mut [0; 64]) {
        Err(e) => ck.check(
            e.kind() == std::io::ErrorKind::InvalidData,
            format_args!("io::Read: {e}"),
        ),
        Ok(n) => ck.check(false, format_args!("io::Read read {n} bytes")),
    }
    let rx = reader.into_inner();
    #[cfg(feature = "tokio")]
    let (tx, rx) = mpmc_child_async(tx, rx, parent, &mut ck);

    // An endpoint the child attaches itself is its own.
    let mut own = mpmc::Sender::open(name).unwrap();
    ck.check(
        own.try_send(b"from the child's own sender").is_ok(),
        "send on a sender opened by name in the child",
    );
    drop(own);
    let (mut htx, mut hrx) = mpmc::channel(&mpmc::Config::default()).unwrap();
    htx.send(b"heap").unwrap();
    ck.check(
        hrx.try_recv().map(|m| m.to_vec()).as_deref() == Ok(b"heap"),
        "a ring the child creates works",
    );
    drop((tx, rx));
    ck.failed
}

#[cfg(feature = "tokio")]
fn mpmc_child_async(
    tx: mpmc::Sender,
    rx: mpmc::Receiver,
    parent: u32,
    ck: &mut Checks,
) -> (mpmc::Sender, mpmc::Receiver) {
    use shmring::evented::{AsyncReceiver, AsyncSender};
    let mut atx = AsyncSender::new(tx).unwrap();
    let mut arx = AsyncReceiver::new(rx).unwrap();
    match poll_once(atx.send(b"child")) {
        Some(Err(SendError::Corrupted { what, .. })) => {
            ck.check(inherited_from(&what, parent), what)
        }
        other => ck.check(false, format_args!("async send: {other:?}")),
    }
    match poll_once(atx.reserve(8)).map(|r| r.map(|g| g.len())) {
        Some(Err(SendError::Corrupted { what, .. })) => {
            ck.check(inherited_from(&what, parent), what)
        }
        other => ck.check(false, format_args!("async reserve: {other:?}")),
    }
    match poll_once(arx.recv()).map(|r| r.map(|m| m.to_vec())) {
        Some(Err(RecvError::Corrupted(c))) => ck.check(inherited_from(&c, parent), c),
        other => ck.check(false, format_args!("async recv: {other:?}")),
    }
    (atx.into_inner(), arx.into_inner())
}
