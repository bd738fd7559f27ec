//! Endpoint liveness from OFD locks, with real processes: a lock held by another process is
//! seen as held while that process lives and free right after it is killed (before it is
//! reaped), also across pid namespaces, also when its main thread has exited; `fork` shares
//! the lock, `exec` drops the child's share; `/proc/self/fd` reopening and its fallback.
//!
//! Children are this test binary started again (`child_entry` with a role in the
//! environment), directly or under `unshare`. Every test kills only the processes it started,
//! by pid (or pidfd), and unlinks its shared-memory objects on drop.

mod common;
#[allow(dead_code)]
#[path = "../src/shm/lock.rs"]
mod lock;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::procs::{
    self, Forked, PidFd, ns_link, only_child_of, pipe, proc_state, ready, unshare_works,
};
use lock::{LockKind, LockState, OwnLock, endpoint_byte, probe, reopen, try_lock};
use rustix::fs::Mode;
use rustix::shm;

const ENTRY: &str = "child_entry";
/// How long a child holding a lock lives at most if nobody kills it.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Helpers

/// A named shared-memory object unique to this process, test and call; unlinked on drop
/// (also when the test fails). Holds the test's own description, which takes no locks and
/// so sees everybody else's.
struct Shm {
    name: String,
    fd: OwnedFd,
}

impl Shm {
    fn create(test: &str) -> Shm {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "/shmring-ofd-{test}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let fd = shm::open(
            name.as_str(),
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
            Mode::from_bits_truncate(0o600),
        )
        .expect("create shm object");
        rustix::fs::ftruncate(&fd, 4096).expect("size shm object");
        Shm { name, fd }
    }

    fn probe(&self, byte: u64) -> LockState {
        probe(self.fd.as_fd(), byte).expect("probe")
    }

    fn wait_free(&self, byte: u64, limit: Duration) -> Option<Duration> {
        wait_free(self.fd.as_fd(), byte, limit)
    }

    fn assert_held_for(&self, byte: u64, period: Duration, what: &str) {
        assert_held_for(self.fd.as_fd(), byte, period, what);
    }
}

/// Polls until `byte` is free; the time it took, or `None` after `limit`.
fn wait_free(fd: BorrowedFd<'_>, byte: u64, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    loop {
        if probe(fd, byte).expect("probe") == LockState::Free {
            return Some(t.elapsed());
        }
        if t.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Asserts `byte` stays held for `period`.
fn assert_held_for(fd: BorrowedFd<'_>, byte: u64, period: Duration, what: &str) {
    let t = Instant::now();
    while t.elapsed() < period {
        assert_eq!(probe(fd, byte).expect("probe"), LockState::Held, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        let _ = shm::unlink(self.name.as_str());
    }
}

// ---------------------------------------------------------------------------------------
// Children

/// Dispatcher run in child processes; does nothing unless started by `start`.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child_entry() {
    let Some(role) = procs::role() else {
        return;
    };
    let name = std::env::var("OBJ").expect("OBJ");
    let byte = endpoint_byte(std::env::var("INDEX").expect("INDEX").parse().unwrap());
    match role.as_str() {
        "hold" => {
            let fd = shm::open(name.as_str(), shm::OFlags::RDWR, Mode::empty()).expect("open");
            // No name: the description must come from /proc/self/fd.
            let own = OwnLock::acquire(fd.as_fd(), byte, None)
                .expect("reopen via /proc/self/fd")
                .expect("byte free");
            ready(&[]);
            std::thread::sleep(CHILD_LIFETIME);
            drop(own);
        }
        "hold_main_exits" => hold_then_exit_main_thread(&name, byte),
        "hold_foreign_proc" => hold_with_foreign_proc(&name, byte),
        "fork_semantics" => fork_semantics(&name, byte),
        other => panic!("unknown role {other}"),
    }
}

/// Takes the lock, then makes the process's main thread exit while this thread keeps
/// running ([`procs::exit_main_thread`]).
fn hold_then_exit_main_thread(name: &str, byte: u64) {
    let fd = shm::open(name, shm::OFlags::RDWR, Mode::empty()).expect("open");
    let own = OwnLock::acquire(fd.as_fd(), byte, None)
        .expect("reopen")
        .expect("byte free");
    procs::exit_main_thread();
    ready(&[("main_thread", "exited".to_string())]);
    std::thread::sleep(CHILD_LIFETIME);
    drop(own);
    std::process::exit(0);
}

/// In a private mount namespace (started under `unshare --mount`): mounts over `/proc` a procfs
/// belonging to a new pid namespace that this process is not in, so `/proc/self` fails here
/// ([`procs::mount_foreign_proc`]), then takes the lock through the shm-name fallback.
fn hold_with_foreign_proc(name: &str, byte: u64) {
    let parent_mnt = std::env::var("PARENT_MNTNS").expect("PARENT_MNTNS");
    let proc_self = procs::mount_foreign_proc(&parent_mnt);

    let fd = shm::open(name, shm::OFlags::RDWR, Mode::empty()).expect("open");
    let without_name = match OwnLock::acquire(fd.as_fd(), byte, None) {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("err:{}", e.kind()).replace(' ', "_"),
    };
    let memfd = rustix::fs::memfd_create("ofd", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let memfd_reopen = match reopen(memfd.as_fd(), None) {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("err:{}", e.kind()).replace(' ', "_"),
    };
    let own = OwnLock::acquire(fd.as_fd(), byte, Some(name))
        .expect("reopen through /dev/shm")
        .expect("byte free");
    ready(&[
        ("proc_self", proc_self),
        ("without_name", without_name),
        ("memfd_reopen", memfd_reopen),
    ]);
    std::thread::sleep(CHILD_LIFETIME);
    drop(own);
}

// ---------------------------------------------------------------------------------------
// Tests

/// (a) Held while the child lives; free within 1 s of SIGKILL, while it is still an unreaped
/// zombie.
#[test]
fn ofd_sigkill_releases_the_lock_before_reaping() {
    let obj = Shm::create("sigkill");
    let byte = endpoint_byte(5);
    assert_eq!(obj.probe(byte), LockState::Free);
    let mut child = procs::start(
        ENTRY,
        &[],
        "hold",
        &[("OBJ", obj.name.clone()), ("INDEX", "5".into())],
    );
    let fields = child.ready();
    let pid = child.pid();
    assert_eq!(fields.get("pid"), pid.to_string());
    assert_eq!(obj.probe(byte), LockState::Held);
    // Neither the neighbours nor the creation byte are taken.
    assert_eq!(obj.probe(byte + 1), LockState::Free);
    assert_eq!(obj.probe(lock::CREATION_BYTE), LockState::Free);
    obj.assert_held_for(byte, Duration::from_millis(200), "live child");

    child.kill();
    let took = obj
        .wait_free(byte, Duration::from_secs(1))
        .expect("lock still held 1 s after SIGKILL");
    // The lock goes while the process exits, before it is reaped: it is still there (still
    // exiting, `R`/`D`, or already a zombie), and becomes a zombie without our waiting on it.
    let state = proc_state(pid);
    println!("(a) held while alive; free {took:?} after SIGKILL; /proc/{pid}/stat state {state:?}");
    assert!(state.is_some(), "the child was not reaped yet");
    let started = std::time::Instant::now();
    while proc_state(pid) != Some('Z') {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not a zombie 5 s after SIGKILL: {:?}",
            proc_state(pid)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = child.reap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

/// (b) A child in another pid namespace (pid 1 there; `unshare --pid --fork`, host /proc):
/// held while it lives. Killing `unshare` alone does NOT end it; killing it does.
#[test]
fn ofd_pid_namespace_child() {
    if !unshare_works(&["--pid", "--fork"]) {
        return;
    }
    let obj = Shm::create("pidns");
    let byte = endpoint_byte(9);
    let mut wrapper = procs::start(
        ENTRY,
        &["unshare", "--pid", "--fork"],
        "hold",
        &[("OBJ", obj.name.clone()), ("INDEX", "9".into())],
    );
    let fields = wrapper.ready();
    // The child sees itself as pid 1 of a namespace that is not ours: a pid-based check in
    // our namespace would look at our own pid 1.
    assert_eq!(fields.get("pid"), "1");
    assert_ne!(fields.get("pidns"), ns_link("pid"));
    let host_pid = only_child_of(wrapper.pid());
    let inner = PidFd::open(host_pid);
    assert_eq!(obj.probe(byte), LockState::Held);

    wrapper.kill();
    let status = wrapper.reap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    // The namespace's pid 1 outlives the unshare process: still alive, lock still held.
    assert!(!inner.exited_within(Duration::from_millis(300)));
    obj.assert_held_for(byte, Duration::from_millis(200), "orphaned namespace init");

    inner.sigkill();
    let took = obj
        .wait_free(byte, Duration::from_secs(1))
        .expect("lock still held 1 s after SIGKILL of the namespace's init");
    assert!(inner.exited_within(Duration::from_secs(1)));
    println!(
        "(b) pid 1 in {} (host pid {host_pid}): held; unshare killed: still held; \
         child killed: free after {took:?}",
        fields.get("pidns")
    );
}

/// (b') The same with `--mount-proc --kill-child`: the child has its own /proc (so
/// /proc/self/fd works there too), and killing `unshare` kills it through the parent-death
/// signal, ending the namespace.
#[test]
fn ofd_pid_namespace_child_killed_with_unshare() {
    let opts = ["--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL"];
    if !unshare_works(&opts) {
        return;
    }
    let obj = Shm::create("pidns-kill");
    let byte = endpoint_byte(10);
    let mut args = vec!["unshare"];
    args.extend(opts);
    let mut wrapper = procs::start(
        ENTRY,
        &args,
        "hold",
        &[("OBJ", obj.name.clone()), ("INDEX", "10".into())],
    );
    let fields = wrapper.ready();
    assert_eq!(fields.get("pid"), "1");
    assert_ne!(fields.get("pidns"), ns_link("pid"));
    let inner = PidFd::open(only_child_of(wrapper.pid()));
    assert_eq!(obj.probe(byte), LockState::Held);

    wrapper.kill();
    let took = obj
        .wait_free(byte, Duration::from_secs(1))
        .expect("lock still held 1 s after killing unshare --kill-child");
    assert!(inner.exited_within(Duration::from_secs(1)));
    wrapper.reap();
    println!("(b') own /proc in the namespace: held; unshare killed: free after {took:?}");
}

/// (b'') A process whose /proc belongs to a pid namespace it is not in (as after
/// `nsenter --mount` without `--pid`): /proc/self fails, reopening a memfd fails, a named
/// object is reopened through /dev/shm and locked.
#[test]
fn ofd_foreign_proc_falls_back_to_the_shm_name() {
    if !unshare_works(&["--mount", "--propagation", "private"]) {
        return;
    }
    let obj = Shm::create("foreignproc");
    let byte = endpoint_byte(11);
    let mut child = procs::start(
        ENTRY,
        &["unshare", "--mount", "--propagation", "private"],
        "hold_foreign_proc",
        &[
            ("OBJ", obj.name.clone()),
            ("INDEX", "11".into()),
            ("PARENT_MNTNS", ns_link("mnt")),
        ],
    );
    let fields = child.ready();
    println!("(b'') child reports {fields:?}");
    assert_eq!(fields.get("proc_self"), format!("err:{}", libc::ENOENT));
    assert!(fields.get("without_name").starts_with("err:"));
    assert!(fields.get("memfd_reopen").starts_with("err:"));
    assert_eq!(obj.probe(byte), LockState::Held);
    child.kill();
    let took = obj
        .wait_free(byte, Duration::from_secs(1))
        .expect("lock still held 1 s after SIGKILL");
    child.reap();
    println!("(b'') held through the /dev/shm fallback; free {took:?} after SIGKILL");
}

/// (c) A child whose main thread has exited while another thread runs and holds the lock:
/// `/proc/<pid>/stat` says `Z` (a pid-based check would call it dead), the lock says held.
#[test]
fn ofd_main_thread_exit_keeps_the_lock() {
    let obj = Shm::create("mainexit");
    let byte = endpoint_byte(12);
    let mut child = procs::start(
        ENTRY,
        &[],
        "hold_main_exits",
        &[("OBJ", obj.name.clone()), ("INDEX", "12".into())],
    );
    child.ready();
    let pid = child.pid();
    let t = Instant::now();
    while proc_state(pid) != Some('Z') && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(proc_state(pid), Some('Z'), "main thread did not exit");
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    obj.assert_held_for(
        byte,
        Duration::from_millis(300),
        "process with a live thread",
    );
    assert_eq!(proc_state(pid), Some('Z'));
    child.kill();
    let took = obj
        .wait_free(byte, Duration::from_secs(1))
        .expect("lock still held 1 s after SIGKILL");
    assert_eq!(child.reap().signal(), Some(libc::SIGKILL));
    println!(
        "(c) /proc/{pid}/stat state Z with {threads} tasks: lock held; free {took:?} after SIGKILL"
    );
}

/// (d) fork shares the description: the lock stays held while the child has it; an
/// `OwnLock` dropped in the child releases nothing; dropped in the owner it unlocks at once;
/// exec drops the child's share. Runs in a child process of its own, where no other test's
/// thread holds descriptions that a fork would share.
#[test]
fn ofd_fork_and_exec_semantics() {
    let obj = Shm::create("fork");
    let byte = endpoint_byte(20);
    let child = procs::start(
        ENTRY,
        &[],
        "fork_semantics",
        &[("OBJ", obj.name.clone()), ("INDEX", "20".into())],
    );
    let report = child.finish();
    let line = report
        .iter()
        .find_map(|l| l.find("(d)").map(|at| &l[at..]))
        .expect("child's report");
    println!("{line}");
    assert_eq!(obj.probe(byte), LockState::Free);
}

/// The body of (d), in a child process; `fd` is its own description for probing.
fn fork_semantics(name: &str, byte: u64) {
    let fd = shm::open(name, shm::OFlags::RDWR, Mode::empty()).expect("open");
    let probe = |byte| probe(fd.as_fd(), byte).expect("probe");

    // 1. A bare description locked, then forked: closing the parent's fd leaves the child's.
    let desc = reopen(fd.as_fd(), None).unwrap();
    assert!(try_lock(desc.as_fd(), byte, LockKind::Write).unwrap());
    let mut child = Forked::start(|| {});
    drop(desc);
    assert_held_for(
        fd.as_fd(),
        byte,
        Duration::from_millis(100),
        "forked child shares the lock",
    );
    child.kill_and_reap();
    let after_child = wait_free(fd.as_fd(), byte, Duration::from_secs(1))
        .expect("free once the forked child is gone");

    // 2. An OwnLock dropped in the forked child: the parent's lock stays.
    let own = OwnLock::acquire(fd.as_fd(), byte, None).unwrap().unwrap();
    let (r, w) = pipe();
    let mut own_slot = Some(own);
    let child_copy = &mut own_slot;
    let _child = Forked::start(|| {
        // Drop in the child: getpid and close only.
        drop(child_copy.take());
        let _ = rustix::io::write(&w, b"x");
    });
    let mut buf = [0u8; 1];
    assert_eq!(rustix::io::read(&r, &mut buf).unwrap(), 1);
    let own = own_slot.take().expect("parent's copy");
    assert_eq!(probe(byte), LockState::Held);

    // 3. A new fork shares the description, yet dropping the OwnLock in the owner unlocks at
    // once.
    let mut own_slot = Some(own);
    let mut child = Forked::start(|| {});
    drop(own_slot.take());
    assert_eq!(probe(byte), LockState::Free);
    child.kill_and_reap();

    // 4. exec: the description is close-on-exec, so a spawned program does not hold it.
    let desc = reopen(fd.as_fd(), None).unwrap();
    assert!(try_lock(desc.as_fd(), byte, LockKind::Write).unwrap());
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    // `spawn` returns once the exec has succeeded.
    let targets: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", sleeper.id()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    let exec_fds = targets.len();
    let holds_object = targets.iter().any(|t| t.contains(&name[1..]));
    drop(desc);
    let after_exec = probe(byte);
    // Kill (by pid) and reap before asserting.
    sleeper.kill().expect("kill sleep");
    sleeper.wait().expect("reap sleep");
    assert!(
        !holds_object,
        "exec'd child has the object open: {targets:?}"
    );
    assert_eq!(after_exec, LockState::Free, "exec'd child holds it");
    println!(
        "\n(d) fork: held after the parent closed, free {after_child:?} after the child died; \
         OwnLock dropped in a forked child: still held; dropped in the owner with a forked \
         child alive: free at once; exec'd child ({exec_fds} fds, none the object): free"
    );
}
