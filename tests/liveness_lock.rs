//! Endpoint liveness from OFD locks, with real processes: a lock held by another process is
//! seen as held while that process lives and free right after it is killed (before it is
//! reaped), also across pid namespaces, also when its main thread has exited; `fork` shares
//! the lock, `exec` drops the child's share; `/proc/self/fd` reopening and its fallback.
//!
//! Children are this test binary started again (`child_entry` with a role in the
//! environment), directly or under `unshare`. Every test kills only the processes it started,
//! by pid (or pidfd), and unlinks its shared-memory objects on drop.

#[allow(dead_code)]
#[path = "../src/shm/lock.rs"]
mod lock;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lock::{LockKind, LockState, OwnLock, endpoint_byte, probe, reopen, try_lock};
use rustix::fs::Mode;
use rustix::shm;

const ENTRY: &str = "child_entry";
const ROLE_VAR: &str = "SHMRING_OFD_ROLE";
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

/// A child started through `Command` (this binary, or `unshare` running it); SIGKILLed by pid
/// and reaped on drop unless reaped before.
struct Started {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
}

impl Started {
    fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// SIGKILL to this child only (`Child::kill` signals its pid).
    fn kill(&mut self) {
        self.child
            .as_mut()
            .expect("child")
            .kill()
            .expect("kill child");
    }

    fn reap(mut self) -> std::process::ExitStatus {
        self.child
            .take()
            .expect("child")
            .wait()
            .expect("wait child")
    }

    /// Waits for the child to exit, asserts it succeeded and returns its output lines.
    fn finish(mut self) -> Vec<String> {
        let status = self
            .child
            .take()
            .expect("child")
            .wait()
            .expect("wait child");
        let lines: Vec<String> = self.lines.iter().collect();
        assert!(
            status.success(),
            "child failed: {status}; output:\n{}",
            lines.join("\n")
        );
        lines
    }

    /// Waits for the child's `READY key=value ...` line and returns its fields.
    fn ready(&mut self) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    // libtest's "test child_entry ... " may precede it on the line.
                    if let Some(at) = line.find("READY ") {
                        return line[at + 6..]
                            .split_whitespace()
                            .filter_map(|kv| kv.split_once('='))
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect();
                    }
                }
                Err(e) => {
                    self.kill();
                    let status = self.child.take().expect("child").wait();
                    panic!("child not ready ({e:?}); status {status:?}");
                }
            }
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("child did not report {key}"))
}

/// Starts `wrapper... <this test binary> child_entry` with `role` and `env`.
fn start(wrapper: &[&str], role: &str, env: &[(&str, String)]) -> Started {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = match wrapper.split_first() {
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.args([
        ENTRY,
        "--exact",
        "--nocapture",
        "--ignored",
        "--test-threads=1",
    ])
    .env(ROLE_VAR, role)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Started {
        child: Some(child),
        lines,
    }
}

/// Whether `unshare` with these options works here; prints why not otherwise.
fn unshare_works(opts: &[&str]) -> bool {
    match Command::new("unshare").args(opts).arg("true").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            println!(
                "SKIP: `unshare {} true` failed ({}): {}",
                opts.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            println!("SKIP: cannot run unshare: {e}");
            false
        }
    }
}

/// State letter of `/proc/<pid>/stat` (field 3), or `None` if there is no such entry.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// `/proc/self/ns/<kind>`, or `unknown` where `/proc/self` does not resolve.
fn ns_link(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// A process referred to by a pidfd: signals reach exactly that process, never a reuse of
/// its pid.
struct PidFd(OwnedFd);

impl PidFd {
    fn open(pid: u32) -> PidFd {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        assert!(
            fd >= 0,
            "pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: the fd was just returned by the kernel and is owned by nobody else.
        PidFd(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
    }

    fn sigkill(&self) {
        // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        assert!(
            r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH),
            "pidfd_send_signal: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Whether the process has exited, waiting up to `limit`.
    fn exited_within(&self, limit: Duration) -> bool {
        let mut p = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut p, 1, limit.as_millis() as libc::c_int) };
        n == 1
    }
}

/// The only child of `parent`: from `/proc/<pid>/task/<pid>/children`, or by the parent pid
/// field of every `/proc/<pid>/stat` where that file is missing.
fn only_child_of(parent: u32) -> u32 {
    let pids: Vec<u32> =
        match std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")) {
            Ok(list) => list
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect(),
            Err(_) => std::fs::read_dir("/proc")
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&pid| {
                    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                        return false;
                    };
                    let Some(close) = stat.rfind(')') else {
                        return false;
                    };
                    // Fields after the command: state, ppid, ...
                    stat[close + 1..].split_whitespace().nth(1) == Some(&parent.to_string())
                })
                .collect(),
        };
    assert_eq!(pids.len(), 1, "children of {parent}: {pids:?}");
    pids[0]
}

// ---------------------------------------------------------------------------------------
// Children

/// Dispatcher run in child processes; does nothing unless started by `start`.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
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

/// Prints `READY pid=.. pidns=.. mntns=.. <extra>` on one line.
fn ready(extra: &[(&str, String)]) {
    let mut line = format!(
        "READY pid={} pidns={} mntns={}",
        std::process::id(),
        ns_link("pid"),
        ns_link("mnt")
    );
    for (k, v) in extra {
        line.push_str(&format!(" {k}={v}"));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Takes the lock, then makes the process's main thread exit while this thread (libtest runs
/// each test on a thread of its own; the main thread only waits for it) keeps running.
///
/// The main thread is made to exit by a signal aimed at it (`tgkill`) whose handler calls
/// the `exit` system call, which ends the calling thread only (`exit_group` ends them all).
/// `pthread_exit` cannot be called on the main thread from here, and called there it would
/// force-unwind through libtest's Rust frames (undefined behaviour); the kernel-side result,
/// a thread-group leader that has exited while other threads run, is the same.
fn hold_then_exit_main_thread(name: &str, byte: u64) {
    extern "C" fn exit_this_thread(_: libc::c_int) {
        // SAFETY: the `exit` system call ends the calling thread (the main thread, where the
        // signal was aimed) and never returns; async-signal-safe.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
    }

    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    assert_ne!(
        pid, tid,
        "expected libtest to run the role off the main thread"
    );
    let fd = shm::open(name, shm::OFlags::RDWR, Mode::empty()).expect("open");
    let own = OwnLock::acquire(fd.as_fd(), byte, None)
        .expect("reopen")
        .expect("byte free");

    // SAFETY: a zeroed sigaction is valid; the handler has the signature `sa_handler` needs
    // (no SA_SIGINFO) and only makes a system call.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = exit_this_thread as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    // SAFETY: tgkill with this process's pid and its main thread's tid (= pid).
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, pid, libc::SIGUSR1) };
    assert_eq!(r, 0, "tgkill: {}", std::io::Error::last_os_error());
    let t = Instant::now();
    while proc_state(pid as u32) != Some('Z') {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "main thread did not exit"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    ready(&[("main_thread", "exited".to_string())]);
    std::thread::sleep(CHILD_LIFETIME);
    drop(own);
    std::process::exit(0);
}

/// In a private mount namespace (started under `unshare --mount`): mounts over `/proc` a procfs
/// belonging to a new pid namespace that this process is not in, so `/proc/self` fails here,
/// then takes the lock through the shm-name fallback.
fn hold_with_foreign_proc(name: &str, byte: u64) {
    let parent_mnt = std::env::var("PARENT_MNTNS").expect("PARENT_MNTNS");
    assert_ne!(
        ns_link("mnt"),
        parent_mnt,
        "not in a private mount namespace: refusing to mount over /proc"
    );
    // SAFETY: unshare with a flag; affects only the pid namespace of future children.
    let r = unsafe { libc::unshare(libc::CLONE_NEWPID) };
    assert_eq!(
        r,
        0,
        "unshare(CLONE_NEWPID): {}",
        std::io::Error::last_os_error()
    );
    let source = c"proc";
    let target = c"/proc";
    // SAFETY: fork; the child only calls async-signal-safe functions (mount, _exit) on
    // strings prepared before the fork.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: valid NUL-terminated strings, null data; `_exit` never returns.
        unsafe {
            let r = libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                source.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            );
            libc::_exit(if r == 0 { 0 } else { 1 });
        }
    }
    assert!(child > 0, "fork: {}", std::io::Error::last_os_error());
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    let r = unsafe { libc::waitpid(child, &mut status, 0) };
    assert_eq!(r, child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "mounting proc in the new pid namespace failed: status {status}"
    );
    let proc_self = match std::fs::read_link("/proc/self") {
        Ok(p) => format!("ok:{}", p.display()),
        Err(e) => format!("err:{}", e.raw_os_error().unwrap_or(0)),
    };

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
    let mut child = start(
        &[],
        "hold",
        &[("OBJ", obj.name.clone()), ("INDEX", "5".into())],
    );
    let fields = child.ready();
    let pid = child.pid();
    assert_eq!(field(&fields, "pid"), pid.to_string());
    assert_eq!(obj.probe(byte), LockState::Held);
    // Neither the neighbours nor the creation byte are taken.
    assert_eq!(obj.probe(byte + 1), LockState::Free);
    assert_eq!(obj.probe(lock::CREATION_BYTE), LockState::Free);
    obj.assert_held_for(byte, Duration::from_millis(200), "live child");

    child.kill();
    let took = obj
        .wait_free(byte, Duration::from_secs(1))
        .expect("lock still held 1 s after SIGKILL");
    let state = proc_state(pid);
    println!("(a) held while alive; free {took:?} after SIGKILL; /proc/{pid}/stat state {state:?}");
    assert_eq!(state, Some('Z'), "not reaped yet, so a zombie");
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
    let mut wrapper = start(
        &["unshare", "--pid", "--fork"],
        "hold",
        &[("OBJ", obj.name.clone()), ("INDEX", "9".into())],
    );
    let fields = wrapper.ready();
    // The child sees itself as pid 1 of a namespace that is not ours: a pid-based check in
    // our namespace would look at our own pid 1.
    assert_eq!(field(&fields, "pid"), "1");
    assert_ne!(field(&fields, "pidns"), ns_link("pid"));
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
        field(&fields, "pidns")
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
    let mut wrapper = start(
        &args,
        "hold",
        &[("OBJ", obj.name.clone()), ("INDEX", "10".into())],
    );
    let fields = wrapper.ready();
    assert_eq!(field(&fields, "pid"), "1");
    assert_ne!(field(&fields, "pidns"), ns_link("pid"));
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
    let mut child = start(
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
    assert_eq!(field(&fields, "proc_self"), format!("err:{}", libc::ENOENT));
    assert!(field(&fields, "without_name").starts_with("err:"));
    assert!(field(&fields, "memfd_reopen").starts_with("err:"));
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
    let mut child = start(
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
    let child = start(
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

/// A child forked (without exec) from this process; SIGKILLed by pid and reaped on drop.
struct Forked(libc::pid_t);

impl Forked {
    /// Forks; the child runs `f` (async-signal-safe calls only), then sleeps until killed.
    fn start(f: impl FnOnce()) -> Forked {
        // SAFETY: fork; the child runs only `f`, which makes async-signal-safe calls, and
        // `pause`, and never returns into the test harness.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            f();
            loop {
                // SAFETY: sleeps until a signal; the parent kills this process.
                unsafe { libc::pause() };
            }
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        Forked(pid)
    }

    fn kill_and_reap(&mut self) {
        if self.0 > 0 {
            // SAFETY: signals and reaps our own child, by pid, which it still is (not reaped).
            unsafe {
                libc::kill(self.0, libc::SIGKILL);
                libc::waitpid(self.0, std::ptr::null_mut(), 0);
            }
            self.0 = 0;
        }
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// A pipe whose read end waits for one byte (the forked child's "done").
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds into the array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}
