//! The child processes of the liveness tests (see the roles in `liveness_child`).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

use super::common::procs;
use super::ends::{Kind, PeerEnd, Rx, Tx, msg, spsc_config};
use super::{CHILD_LIFETIME, FORK_COUNT, PATIENCE, SLOW_COUNT, SLOW_GAP, TOTAL};
use shmring::{SendTimeoutError, spsc};

/// The peer of the pid-namespace tests: one thread per ring. In kill mode each thread does
/// the first exchange and waits to be killed; otherwise it waits for `GO <index>` on stdin,
/// finishes its exchange and closes its end.
pub(crate) fn peer(rings: Vec<(Kind, PeerEnd, String)>, kill: bool) {
    let proc_self = match std::env::var("PARENT_MNTNS") {
        Ok(mntns) => procs::mount_foreign_proc(&mntns),
        Err(_) => procs::proc_self(),
    };
    // An anonymous ring's endpoint can only reopen the memfd through /proc/self/fd.
    let anonymous = match spsc::Producer::create_anonymous(spsc_config()) {
        Ok(_) => "ok",
        Err(_) => "refused",
    };
    let (opened_tx, opened) = mpsc::channel();
    let mut gos = Vec::new();
    let mut threads = Vec::new();
    for (kind, end, name) in rings {
        let (go_tx, go) = mpsc::channel::<()>();
        gos.push(go_tx);
        let opened = opened_tx.clone();
        threads.push(std::thread::spawn(move || {
            peer_ring(kind, end, &name, kill, || opened.send(()).unwrap(), go)
        }));
    }
    for _ in 0..threads.len() {
        opened.recv_timeout(PATIENCE).expect("every ring opened");
    }
    procs::ready(&[
        ("proc_self", proc_self),
        ("anonymous", anonymous.to_string()),
    ]);
    if kill {
        std::thread::sleep(CHILD_LIFETIME);
        return;
    }
    let mut pending = gos.len();
    while pending > 0 {
        let cmd = procs::read_command().expect("GO command");
        let i: usize = cmd.strip_prefix("GO ").expect("GO").parse().unwrap();
        gos[i].send(()).unwrap();
        pending -= 1;
    }
    for t in threads {
        t.join().expect("ring thread");
    }
}

/// One ring of [`peer`].
fn peer_ring(
    kind: Kind,
    end: PeerEnd,
    name: &str,
    kill: bool,
    opened: impl FnOnce(),
    go: mpsc::Receiver<()>,
) {
    match end {
        PeerEnd::Sends => {
            let mut tx = Tx::open(kind, name);
            tx.send_timeout(&msg(0), PATIENCE).expect("send 0");
            opened();
            if kill {
                std::thread::sleep(CHILD_LIFETIME);
                return;
            }
            go.recv_timeout(CHILD_LIFETIME).expect("GO");
            tx.send_timeout(&msg(1), PATIENCE).expect("send 1");
        }
        PeerEnd::Receives => {
            let mut rx = Rx::open(kind, name);
            opened();
            rx.expect(0, name);
            if kill {
                std::thread::sleep(CHILD_LIFETIME);
                return;
            }
            go.recv_timeout(CHILD_LIFETIME).expect("GO");
            for seq in 1..TOTAL {
                rx.expect(seq, name);
            }
        }
    }
}

/// Attaches a sender to each ring, makes the main thread exit, then sends `SLOW_COUNT`
/// messages on each, `SLOW_GAP` apart, and waits to be killed.
pub(crate) fn zombie_leader(rings: Vec<(Kind, PeerEnd, String)>) {
    let mut txs: Vec<Tx> = rings
        .iter()
        .map(|(kind, _, name)| Tx::open(*kind, name))
        .collect();
    procs::exit_main_thread();
    procs::ready(&[]);
    for seq in 0..SLOW_COUNT {
        std::thread::sleep(SLOW_GAP);
        for tx in &mut txs {
            tx.send_timeout(&msg(seq), PATIENCE).expect("send");
        }
    }
    println!("SENT");
    std::thread::sleep(CHILD_LIFETIME);
    // Returning to libtest would wait for the main thread, which is gone.
    std::process::exit(0);
}

/// Attaches a sender, sends message 0, forks, reports the forked child's pid and waits for
/// `EXIT` on stdin. `keep`: exits without closing (the forked child keeps the inherited
/// handle, which may not send, once this process is gone); otherwise closes its handle
/// first, says `CLOSED`, and the forked child only waits to be killed.
pub(crate) fn fork_peer(rings: Vec<(Kind, PeerEnd, String)>, keep: bool) {
    let (kind, _, name) = &rings[0];
    let mut tx = Tx::open(*kind, name);
    tx.send_timeout(&msg(0), PATIENCE).expect("send 0");
    // Prepared before the fork: the forked child of this multi-threaded process allocates
    // nothing.
    let later: Vec<Vec<u8>> = (1..=FORK_COUNT).map(msg).collect();
    let (parent_gone, parent_alive) = procs::pipe();
    // SAFETY: fork; the child runs `forked_child`, which keeps to system calls and the
    // ring's send path (no allocation, no lock another thread could hold), and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        forked_child(tx, &later, parent_gone, parent_alive, keep);
    }
    assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
    drop(parent_gone);
    println!("FORKED child={pid}");
    if keep {
        assert_eq!(procs::read_command().as_deref(), Some("EXIT"));
        // No destructor runs: the handle is never closed, as if this process had crashed.
        std::process::exit(0);
    }
    drop(tx);
    println!("CLOSED");
    assert_eq!(procs::read_command().as_deref(), Some("EXIT"));
    drop(parent_alive);
}

/// The forked child of [`fork_peer`]. `keep`: waits until the parent is gone (end of file on
/// the pipe whose write end only the parent holds), tries to send `later` with the inherited
/// handle (each must fail: the copy is not this process's endpoint; exit status 3 if one
/// does not), waits for the end of its input (the stdin inherited from the parent), drops
/// the handle (which closes nothing: this process did not attach it) and exits. Otherwise it
/// waits to be killed.
fn forked_child(
    tx: Tx,
    later: &[Vec<u8>],
    parent_gone: OwnedFd,
    parent_alive: OwnedFd,
    keep: bool,
) -> ! {
    drop(parent_alive);
    // SAFETY: closes this process's stdout, so that the test's reader of the parent's output
    // sees its end when the parent exits.
    unsafe { libc::close(1) };
    if !keep {
        loop {
            // SAFETY: sleeps until a signal; the test kills this process.
            unsafe { libc::pause() };
        }
    }
    wait_for_end(parent_gone.as_fd());
    let mut tx = tx;
    for m in later {
        std::thread::sleep(FORK_GAP);
        match tx.send_timeout(m, PATIENCE) {
            Err(SendTimeoutError::Corrupted { what, .. }) if what.is_inherited() => {}
            // SAFETY: ends this process without running anything of the parent's.
            _ => unsafe { libc::_exit(3) },
        }
    }
    // SAFETY: fd 0 is this process's stdin, open for the duration of the call.
    wait_for_end(unsafe { BorrowedFd::borrow_raw(0) });
    drop(tx);
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

/// Reads `fd` until end of file (system calls only: usable in a forked child).
fn wait_for_end(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 64];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => return,
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            // SAFETY: ends this (forked) process without running anything of the parent's.
            Err(_) => unsafe { libc::_exit(2) },
        }
    }
}

/// Pause before each message of the forked child.
const FORK_GAP: Duration = Duration::from_millis(250);
