//! A live peer is never declared dead, and a dead one is noticed, with real ring handles
//! (SPSC and MPMC, both directions), where a pid says nothing:
//!
//! - a peer in another pid namespace (`unshare --pid --fork`; with the host's `/proc`, with a
//!   `/proc` of its own, and with a `/proc` of a namespace it is not in, where its endpoints
//!   must reopen the ring by name): alive while it lives, however long it stays quiet;
//!   end of stream / broken pipe once it exits; noticed within a second when it is killed;
//! - a peer whose main thread has exited (`/proc/<pid>/stat` says `Z`) while another thread
//!   keeps sending;
//! - a handle inherited across `fork`: the endpoint lives as long as either process holds it
//!   unless the process that attached it closes it.
//!
//! The kill of a peer in our own namespace is covered by `spsc_cross_process` and
//! `mpmc_process`. Children are this test binary started again (`liveness_child` with a
//! role), directly or under `unshare`; every test ends only processes it started, by pid or
//! pidfd, and unlinks its rings on drop. Tests that need `unshare` print `SKIP` and return
//! where it is not permitted.

#[path = "liveness/children.rs"]
mod children;
mod common;
#[path = "liveness/ends.rs"]
mod ends;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::procs::{self, Fields, PidFd, Started, ns_link, only_child_of, proc_state};
use ends::{Kind, Local, PeerEnd, Ring, Rx, msg, parse_rings, specs};
use shmring::{EndpointState, RecvTimeoutError, SendTimeoutError};

const ENTRY: &str = "liveness_child";
/// Bound of every wait for something that should happen at once (a hang detector only).
const PATIENCE: Duration = Duration::from_secs(10);
/// A peer that closed or died must be noticed within this.
const NOTICE: Duration = Duration::from_secs(1);
/// How long a live peer stays quiet: several liveness looks of every kind (blocked calls
/// look every 100 ms, `is_disconnected` at most every 50–100 ms).
const QUIET: Duration = Duration::from_millis(1500);
/// One look while the peer is quiet: a timed call that must time out.
const TICK: Duration = Duration::from_millis(250);
/// How long a child lives at most if nobody ends it.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
/// Largest test message (contents from `common::fill_msg`).
const MSG_MAX: usize = 40;
/// Messages a receiving peer gets in the "live" scenario.
const TOTAL: u64 = 24;

// ---------------------------------------------------------------------------------------
// Checker threads: one per ring, the test's main thread drives the child

/// Joins checker threads; the first one that panicked fails the test with its message.
fn join_all(handles: Vec<JoinHandle<String>>) -> Vec<String> {
    let results: Vec<_> = handles.into_iter().map(JoinHandle::join).collect();
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|p| std::panic::resume_unwind(p)))
        .collect()
}

/// Fails the test at once (killing the child first) if a checker thread has already
/// panicked; checkers only finish on their own after the child has exited.
fn fail_fast(handles: &mut Vec<JoinHandle<String>>, child: &mut Started) {
    if let Some(i) = handles.iter().position(JoinHandle::is_finished) {
        let h = handles.remove(i);
        if let Err(p) = h.join() {
            child.kill();
            std::panic::resume_unwind(p);
        }
        panic!("a checker finished before the child exited");
    }
}

// ---------------------------------------------------------------------------------------
// Pid namespaces

/// The `/proc` a peer in a new pid namespace sees.
#[derive(Clone, Copy, Debug)]
enum Procfs {
    /// `unshare --pid --fork`: pid 1 of a new namespace, the host's `/proc` (where
    /// `/proc/self` names its host pid, so `/proc/self/fd` still works).
    Host,
    /// `--mount-proc` as well: a `/proc` of its own namespace.
    Own,
    /// `--mount-proc`, then a `/proc` of a namespace it is not in mounted over it: no
    /// `/proc/self`, so every endpoint reopens the ring through `/dev/shm/<name>`.
    Foreign,
}

impl Procfs {
    fn wrapper(self) -> &'static [&'static str] {
        match self {
            Procfs::Host => &["unshare", "--pid", "--fork"],
            Procfs::Own | Procfs::Foreign => &["unshare", "--pid", "--fork", "--mount-proc"],
        }
    }

    /// Whether `unshare` works here (prints the reason to skip otherwise).
    fn usable(self) -> bool {
        procs::unshare_works(&self.wrapper()[1..])
    }

    fn env(self) -> Vec<(&'static str, String)> {
        match self {
            Procfs::Foreign => vec![("PARENT_MNTNS", ns_link("mnt"))],
            Procfs::Host | Procfs::Own => Vec::new(),
        }
    }

    /// Checks what the peer reported about itself against the set-up.
    fn check(self, fields: &Fields) {
        // pid 1 of a namespace that is not ours: our own pid 1 is a different process, alive
        // or not whatever the peer does, so a pid says nothing about the peer here.
        assert_eq!(fields.get("pid"), "1");
        assert_ne!(fields.get("pidns"), ns_link("pid"));
        let proc_self = fields.get("proc_self");
        let anonymous = fields.get("anonymous");
        match self {
            Procfs::Host => {
                assert!(
                    proc_self.starts_with("ok:") && proc_self != "ok:1",
                    "host /proc: /proc/self names the host pid: {proc_self}"
                );
                assert_eq!(anonymous, "ok");
            }
            Procfs::Own => {
                assert_eq!(proc_self, "ok:1");
                assert_eq!(anonymous, "ok");
            }
            Procfs::Foreign => {
                assert_eq!(proc_self, format!("err:{}", libc::ENOENT));
                // Nothing can be reopened through /proc/self/fd here: an anonymous ring
                // cannot get a description of its own, so a named one used its name.
                assert_eq!(anonymous, "refused");
            }
        }
    }
}

/// A peer in another pid namespace holds one end of each of four rings (SPSC and MPMC, each
/// direction). It sends (or receives) a first message, stays alive and quiet for `QUIET`
/// while the test blocks in timed calls, polls `is_disconnected` and looks at `inspect`
/// (never a disconnect, always `Attached`), then finishes its exchange and exits normally:
/// every message arrives in order, and the test sees end of stream / broken pipe within a
/// second of the exit.
fn live_peer_in_pid_namespace(ns: Procfs) {
    if !ns.usable() {
        return;
    }
    let started = Instant::now();
    let rings = Ring::all_four("live-ns", "");
    let locals: Vec<Local> = rings.iter().map(Ring::create_local).collect();
    let mut env = ns.env();
    env.push(("RINGS", specs(&rings)));
    env.push(("MODE", "live".to_string()));
    let mut child = procs::start(ENTRY, ns.wrapper(), "peer", &env);
    let fields = child.ready();
    ns.check(&fields);
    let inner = PidFd::open(only_child_of(child.pid()));
    let peer_pid: u32 = fields.get("pid").parse().unwrap();

    let (go_tx, go_rx) = mpsc::channel();
    let mut exit_txs = Vec::new();
    let mut handles = Vec::new();
    for (i, (ring, local)) in rings.into_iter().zip(locals).enumerate() {
        let go = go_tx.clone();
        let (exit_tx, exited) = mpsc::channel();
        exit_txs.push(exit_tx);
        handles.push(std::thread::spawn(move || {
            live_check(ring, local, peer_pid, || go.send(i).unwrap(), exited)
        }));
    }
    drop(go_tx);
    let mut pending = handles.len();
    while pending > 0 {
        match go_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(i) => {
                child.send_line(&format!("GO {i}"));
                pending -= 1;
            }
            Err(_) => fail_fast(&mut handles, &mut child),
        }
    }
    // The peer finishes its exchanges and exits normally.
    child.finish();
    assert!(inner.exited_within(PATIENCE), "the namespace's init exited");
    for tx in exit_txs {
        tx.send(()).unwrap();
    }
    for line in join_all(handles) {
        println!("{ns:?} /proc: {line}");
    }
    println!("{ns:?} /proc: {:?} in all", started.elapsed());
}

/// The test's half of one ring of [`live_peer_in_pid_namespace`]; `go` lets the peer end
/// its quiet period, `exited` says it has exited.
fn live_check(
    ring: Ring,
    local: Local,
    peer_pid: u32,
    go: impl FnOnce(),
    exited: mpsc::Receiver<()>,
) -> String {
    let label = &ring.label;
    let mut looks = 0;
    let quiet = Instant::now();
    let gone_after = match local {
        Local::Rx(mut rx) => {
            rx.expect(0, label);
            while quiet.elapsed() < QUIET || looks < 4 {
                match rx.recv_timeout(TICK) {
                    Err(RecvTimeoutError::Timeout) => {}
                    other => panic!("{label}: while the peer is quiet: {other:?}"),
                }
                assert!(!rx.is_disconnected(), "{label}: live peer taken for gone");
                ring.assert_peer_attached(peer_pid);
                looks += 1;
            }
            go();
            rx.expect(1, label);
            exited.recv_timeout(PATIENCE).expect("peer exited");
            let t = Instant::now();
            match rx.recv_timeout(NOTICE) {
                Err(RecvTimeoutError::Disconnected) => {}
                other => panic!("{label}: after the peer exited: {other:?}"),
            }
            assert!(rx.is_disconnected());
            t.elapsed()
        }
        Local::Tx(mut tx) => {
            tx.send_timeout(&msg(0), PATIENCE).unwrap();
            let mut seq = tx.fill(1);
            // The peer takes message 0 and then nothing: our sends block on a full ring.
            while quiet.elapsed() < QUIET || looks < 4 {
                match tx.send_timeout(&msg(seq), TICK) {
                    // Room made by the peer's first receive.
                    Ok(()) => seq += 1,
                    Err(SendTimeoutError::Timeout(())) => looks += 1,
                    Err(e) => panic!("{label}: send while the peer is quiet: {e:?}"),
                }
                assert!(!tx.is_disconnected(), "{label}: live peer taken for gone");
                ring.assert_peer_attached(peer_pid);
            }
            assert!(seq < TOTAL, "{label}: {seq} messages fit in the ring");
            go();
            for seq in seq..TOTAL {
                tx.send_timeout(&msg(seq), PATIENCE)
                    .unwrap_or_else(|e| panic!("{label}: send {seq}: {e:?}"));
            }
            exited.recv_timeout(PATIENCE).expect("peer exited");
            let t = Instant::now();
            match tx.send_timeout(&msg(TOTAL), NOTICE) {
                Err(SendTimeoutError::Disconnected(())) => {}
                other => panic!("{label}: send after the peer exited: {other:?}"),
            }
            assert!(tx.is_disconnected());
            t.elapsed()
        }
    };
    assert_eq!(ring.assert_peer_gone(), EndpointState::Closed, "{label}");
    format!(
        "{label}: all messages in order; {looks} looks while quiet, all alive; \
         disconnected {gone_after:?} after the exit"
    )
}

#[test]
fn live_peer_in_pid_namespace_with_host_proc() {
    live_peer_in_pid_namespace(Procfs::Host);
}

#[test]
fn live_peer_in_pid_namespace_with_own_proc() {
    live_peer_in_pid_namespace(Procfs::Own);
}

#[test]
fn live_peer_in_pid_namespace_with_foreign_proc_reopens_by_name() {
    live_peer_in_pid_namespace(Procfs::Foreign);
}

/// How a checker of [`killed_peer_in_pid_namespace`] learns that the peer died.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Notice {
    /// Blocked in `recv_timeout` / `send_timeout` (on an empty / full ring).
    Blocked,
    /// Polling `is_disconnected`, never blocking.
    Polled,
}

/// A peer in another pid namespace holds one end of each of eight rings (SPSC and MPMC,
/// each direction, each twice) and is killed with SIGKILL (through a pidfd) after a first
/// exchange. On each kind and direction, a call blocked on the peer and a loop polling
/// `is_disconnected` both notice within a second; neither does before the kill.
fn killed_peer_in_pid_namespace(ns: Procfs) {
    if !ns.usable() {
        return;
    }
    let mut rings = Vec::new();
    for how in [Notice::Blocked, Notice::Polled] {
        for r in Ring::all_four("kill-ns", &format!(", {how:?}")) {
            rings.push((r, how));
        }
    }
    let locals: Vec<Local> = rings.iter().map(|(r, _)| r.create_local()).collect();
    let mut env = ns.env();
    let list: Vec<String> = rings.iter().map(|(r, _)| r.spec()).collect();
    env.push(("RINGS", list.join(",")));
    env.push(("MODE", "kill".to_string()));
    let mut child = procs::start(ENTRY, ns.wrapper(), "peer", &env);
    let fields = child.ready();
    ns.check(&fields);
    let inner = PidFd::open(only_child_of(child.pid()));
    let peer_pid: u32 = fields.get("pid").parse().unwrap();

    let kill_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let (armed_tx, armed) = mpsc::channel();
    let mut handles = Vec::new();
    for ((ring, how), local) in rings.into_iter().zip(locals) {
        let armed = armed_tx.clone();
        let kill_at = Arc::clone(&kill_at);
        handles.push(std::thread::spawn(move || {
            kill_check(
                ring,
                local,
                how,
                peer_pid,
                || armed.send(()).unwrap(),
                &kill_at,
            )
        }));
    }
    drop(armed_tx);
    let mut pending = handles.len();
    while pending > 0 {
        match armed.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => pending -= 1,
            Err(_) => fail_fast(&mut handles, &mut child),
        }
    }
    // Let the blocked calls go to sleep on their futex and the pollers look a few times.
    std::thread::sleep(Duration::from_millis(300));
    *kill_at.lock().unwrap() = Some(Instant::now());
    // (`unshare` may then print "sigprocmask unblock failed": it tries to die of its child's
    // signal, which SIGKILL does not allow. Harmless.)
    inner.sigkill();
    assert!(inner.exited_within(NOTICE), "the peer did not die");
    for line in join_all(handles) {
        println!("{ns:?} /proc: {line}");
    }
    child.reap();
}

/// The test's half of one ring of [`killed_peer_in_pid_namespace`]; `armed` says it is
/// about to block (or poll).
fn kill_check(
    ring: Ring,
    mut local: Local,
    how: Notice,
    peer_pid: u32,
    armed: impl FnOnce(),
    kill_at: &Mutex<Option<Instant>>,
) -> String {
    let label = &ring.label;
    match &mut local {
        Local::Rx(rx) => rx.expect(0, label),
        Local::Tx(tx) => {
            tx.send_timeout(&msg(0), PATIENCE).unwrap();
            tx.fill(1);
        }
    }
    assert!(
        !local.is_disconnected(),
        "{label}: live peer taken for gone"
    );
    ring.assert_peer_attached(peer_pid);
    armed();
    let mut looks = 0u32;
    match (how, &mut local) {
        (Notice::Blocked, Local::Rx(rx)) => match rx.recv_timeout(PATIENCE) {
            Err(RecvTimeoutError::Disconnected) => {}
            other => panic!("{label}: blocked receive: {other:?}"),
        },
        (Notice::Blocked, Local::Tx(tx)) => {
            let mut seq = 1_000;
            loop {
                match tx.send_timeout(&msg(seq), PATIENCE) {
                    // Room made by the peer's first receive.
                    Ok(()) => seq += 1,
                    Err(SendTimeoutError::Disconnected(())) => break,
                    Err(e) => panic!("{label}: blocked send: {e:?}"),
                }
            }
        }
        (Notice::Polled, _) => {
            let t = Instant::now();
            while !local.is_disconnected() {
                assert!(t.elapsed() < PATIENCE, "{label}: never noticed");
                looks += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    let noticed = Instant::now();
    let killed = kill_at
        .lock()
        .unwrap()
        .unwrap_or_else(|| panic!("{label}: peer taken for gone before it was killed"));
    let took = noticed - killed;
    assert!(took < NOTICE, "{label}: noticed {took:?} after the kill");
    assert!(local.is_disconnected(), "{label}");
    let state = ring.assert_peer_gone();
    format!("{label}: noticed {took:?} after SIGKILL ({looks} polls said alive); {state:?}")
}

#[test]
fn killed_peer_in_pid_namespace_with_host_proc_is_noticed() {
    killed_peer_in_pid_namespace(Procfs::Host);
}

#[test]
fn killed_peer_in_pid_namespace_with_own_proc_is_noticed() {
    killed_peer_in_pid_namespace(Procfs::Own);
}

#[test]
fn killed_peer_in_pid_namespace_with_foreign_proc_is_noticed() {
    killed_peer_in_pid_namespace(Procfs::Foreign);
}

// ---------------------------------------------------------------------------------------
// Main thread exited

/// Messages the peer of [`peer_whose_main_thread_exited_is_alive`] sends on each ring.
const SLOW_COUNT: u64 = 6;
/// Pause before each of them.
const SLOW_GAP: Duration = Duration::from_millis(300);

/// A peer whose main thread has exited (so `/proc/<pid>/stat` says `Z`, as for a zombie)
/// while another thread holds an SPSC producer and an MPMC sender and sends slowly: never
/// taken for dead, every message arrives in order. Killed with SIGKILL afterwards, it is
/// noticed within a second.
#[test]
fn peer_whose_main_thread_exited_is_alive() {
    let rings = [
        Ring::new("zombie", Kind::Spsc, PeerEnd::Sends, ""),
        Ring::new("zombie", Kind::Mpmc, PeerEnd::Sends, ""),
    ];
    let mut rxs: Vec<Rx> = rings
        .iter()
        .map(|r| Rx::create(r.kind, r.name.as_str()))
        .collect();
    let mut child = procs::start(ENTRY, &[], "zombie_leader", &[("RINGS", specs(&rings))]);
    let fields = child.ready();
    let pid = child.pid();
    assert_eq!(fields.get("pid"), pid.to_string());
    assert_eq!(proc_state(pid), Some('Z'), "the main thread has exited");
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    for seq in 0..SLOW_COUNT {
        for (ring, rx) in rings.iter().zip(&mut rxs) {
            // Blocked for most of `SLOW_GAP`, looking at the peer's liveness meanwhile.
            rx.expect(seq, &ring.label);
            assert!(!rx.is_disconnected(), "{}: taken for gone", ring.label);
            ring.assert_peer_attached(pid);
        }
        assert_eq!(proc_state(pid), Some('Z'));
    }
    child.wait_for("SENT");
    for (ring, rx) in rings.iter().zip(&mut rxs) {
        assert_eq!(rx.recv_timeout(TICK), Err(RecvTimeoutError::Timeout));
        assert!(!rx.is_disconnected(), "{}: taken for gone", ring.label);
    }
    let killed = Instant::now();
    child.kill();
    for (ring, rx) in rings.iter().zip(&mut rxs) {
        assert_eq!(
            rx.recv_timeout(PATIENCE),
            Err(RecvTimeoutError::Disconnected)
        );
        let took = killed.elapsed();
        assert!(
            took < NOTICE,
            "{}: noticed {took:?} after the kill",
            ring.label
        );
        println!("{}: noticed {took:?} after SIGKILL", ring.label);
    }
    let status = child.reap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    println!(
        "/proc/{pid}/stat said Z ({threads} tasks) throughout; {SLOW_COUNT} messages on each \
         ring, {SLOW_GAP:?} apart, all in order, the peer never taken for dead"
    );
}

// ---------------------------------------------------------------------------------------
// fork

/// Messages the forked child tries to send with the inherited handle.
const FORK_COUNT: u64 = 4;

/// A process attaches a producer (sender), sends message 0, forks, and exits without
/// closing its handle (`std::process::exit`, as a crash would); the forked child, which
/// shares the endpoint's lock through the inherited descriptor, tries to send messages 1..=4
/// with the inherited handle, a quarter second apart (each fails in the child: the copy is not its
/// endpoint, and sends nothing), and exits at the end of its input.
///
/// What it shows: while the child lives the endpoint is alive (no disconnect, nothing
/// received, `inspect` says `Attached`, under the pid of the process that attached it,
/// which is gone); once the child exits too, end of stream follows within a second.
/// Dropping the inherited copy in the child closed nothing: the end of stream comes from
/// the lock, released when the last process holding it is gone.
#[test]
fn forked_child_keeps_an_inherited_endpoint_alive_after_the_parent_exits() {
    for kind in [Kind::Spsc, Kind::Mpmc] {
        let ring = Ring::new("fork-keep", kind, PeerEnd::Sends, "");
        let mut rx = Rx::create(kind, ring.name.as_str());
        let mut parent = procs::start(
            ENTRY,
            &[],
            "fork_peer",
            &[("RINGS", ring.spec()), ("MODE", "keep".to_string())],
        );
        rx.expect(0, &ring.label);
        let forked: u32 = parent.wait_for("FORKED child=").trim().parse().unwrap();
        // Still the unreaped child of a live process: the pid cannot have been reused.
        let child = PidFd::open(forked);
        let parent_pid = parent.pid();
        parent.send_line("EXIT");
        assert!(parent.wait().success());
        for _ in 1..=FORK_COUNT {
            assert_eq!(
                rx.recv_timeout(Duration::from_millis(500)),
                Err(RecvTimeoutError::Timeout),
                "{}: the inherited copy sent, or the endpoint was taken for gone",
                ring.label
            );
            assert!(!rx.is_disconnected(), "{}: taken for gone", ring.label);
            // Recorded by the process that attached, which has exited and been reaped.
            ring.assert_peer_attached(parent_pid);
        }
        // End of input for the forked child, which inherited the parent's stdin: it exits.
        parent.close_stdin();
        assert!(child.exited_within(PATIENCE), "forked child did not exit");
        let exited = Instant::now();
        assert_eq!(
            rx.recv_timeout(PATIENCE),
            Err(RecvTimeoutError::Disconnected)
        );
        let took = exited.elapsed();
        assert!(
            took < NOTICE,
            "{}: end of stream after {took:?}",
            ring.label
        );
        let state = ring.assert_peer_gone();
        println!(
            "{}: parent {parent_pid} exited without closing; forked child {forked} kept the \
             endpoint alive (and sent nothing) for {FORK_COUNT} gaps; end of stream {took:?} after it exited \
             ({state:?})",
            ring.label
        );
    }
}

/// The other half of the rule: the process that attached an endpoint owns its close. It
/// forks a child that keeps a copy of the handle and then drops its own handle: the
/// endpoint is closed at once (end of stream, `inspect` says `Closed`) although the forked
/// child, holding the same descriptor, is still alive.
#[test]
fn closing_in_the_attaching_process_ends_the_endpoint_despite_a_forked_child() {
    for kind in [Kind::Spsc, Kind::Mpmc] {
        let ring = Ring::new("fork-close", kind, PeerEnd::Sends, "");
        let mut rx = Rx::create(kind, ring.name.as_str());
        let mut parent = procs::start(
            ENTRY,
            &[],
            "fork_peer",
            &[("RINGS", ring.spec()), ("MODE", "close".to_string())],
        );
        rx.expect(0, &ring.label);
        let forked: u32 = parent.wait_for("FORKED child=").trim().parse().unwrap();
        let child = PidFd::open(forked);
        parent.wait_for("CLOSED");
        assert_eq!(rx.recv_timeout(NOTICE), Err(RecvTimeoutError::Disconnected));
        assert!(rx.is_disconnected());
        assert_eq!(ring.assert_peer_gone(), EndpointState::Closed);
        assert!(
            !child.exited_within(Duration::ZERO),
            "the forked child still holds the handle"
        );
        parent.send_line("EXIT");
        assert!(parent.reap().success());
        // `child` (the pidfd) is dropped here: SIGKILL to the forked child.
        println!(
            "{}: closed by the attaching process while forked child {forked} lived",
            ring.label
        );
    }
}

// ---------------------------------------------------------------------------------------
// Children

/// Dispatcher run in child processes; does nothing unless started by `procs::start`.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn liveness_child() {
    let Some(role) = procs::role() else {
        return;
    };
    let rings = parse_rings(&std::env::var("RINGS").expect("RINGS"));
    let mode = std::env::var("MODE").unwrap_or_default();
    match role.as_str() {
        "peer" => children::peer(rings, mode == "kill"),
        "zombie_leader" => children::zombie_leader(rings),
        "fork_peer" => children::fork_peer(rings, mode == "keep"),
        other => panic!("unknown role {other}"),
    }
}
