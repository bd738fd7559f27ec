//! Real processes for the liveness and crash tests: children that are this test binary started
//! again (directly or under a wrapper such as `unshare`), with their output lines, a `READY`
//! handshake and commands on their stdin; pidfds for processes that are not our children (a
//! pid namespace's init, a grandchild), SIGKILLed on drop; forked children; and what a child
//! does to itself: make its main thread exit while other threads run, or mount a `/proc` of
//! a pid namespace it is not in.
//!
//! Every process here is ended by its pid while it is still our unreaped child, or through a
//! pidfd (which names exactly one process, never a reuse of its pid).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Environment variable that tells a child which role to play.
pub const ROLE_VAR: &str = "SHMRING_PROC_ROLE";

/// The role of this process if it is a child started by [`start`].
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// A child started through `Command` (this binary, or a wrapper running it); SIGKILLed by
/// pid and reaped on drop unless reaped before.
pub struct Started {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Started {
    /// The child's pid (the wrapper's, if started under one).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// SIGKILL to this child only (`Child::kill` signals its pid, which it still holds: the
    /// child is not reaped before [`reap`](Started::reap) or drop).
    pub fn kill(&mut self) {
        self.child
            .as_mut()
            .expect("child")
            .kill()
            .expect("kill child");
    }

    /// Waits for the child to exit (after [`kill`](Started::kill), or on its own).
    pub fn reap(mut self) -> ExitStatus {
        self.child
            .take()
            .expect("child")
            .wait()
            .expect("wait child")
    }

    /// Waits for the child to exit and reaps it, keeping its stdin open (a process that
    /// inherited it may still read it).
    pub fn wait(&mut self) -> ExitStatus {
        self.child
            .as_mut()
            .expect("child")
            .wait()
            .expect("wait child")
    }

    /// Closes the child's stdin: end of input for whoever reads it.
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// Whether the child has exited (and reaps it if so).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .expect("child")
            .try_wait()
            .expect("try_wait child")
    }

    /// Waits for the child to exit, asserts it succeeded and returns its output lines.
    pub fn finish(mut self) -> Vec<String> {
        drop(self.stdin.take());
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

    /// Waits (up to 30 s) for an output line containing `marker` and returns the rest of the
    /// line after it. libtest's "test child_entry ... " may precede it on the line.
    pub fn wait_for(&mut self, marker: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(at) = line.find(marker) {
                        return line[at + marker.len()..].to_string();
                    }
                }
                Err(e) => {
                    let _ = self.child.as_mut().expect("child").kill();
                    let status = self.child.take().expect("child").wait();
                    panic!("child never printed {marker:?} ({e:?}); status {status:?}");
                }
            }
        }
    }

    /// Waits for the child's `READY key=value ...` line (see [`ready`]) and returns its
    /// fields.
    pub fn ready(&mut self) -> Fields {
        Fields::parse(&self.wait_for("READY "))
    }

    /// Sends one line to the child's stdin (see [`read_command`]).
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("child stdin");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush child stdin");
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

/// `key=value` fields of a child's report line.
#[derive(Debug)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// Parses the `key=value` words of `line` (other words are ignored).
    pub fn parse(line: &str) -> Fields {
        Fields(
            line.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The value of `key`; panics if the child did not report it.
    pub fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("child did not report {key}: {:?}", self.0))
    }
}

/// Starts `wrapper... <this test binary> <entry>` as a child playing `role` (see [`role`]),
/// with `env`. Its stdout is read line by line on a thread of its own; stdin is a pipe
/// ([`Started::send_line`]); stderr is ours, so a child's panic shows in the test's output.
pub fn start(entry: &str, wrapper: &[&str], role: &str, env: &[(&str, String)]) -> Started {
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
        entry,
        "--exact",
        "--nocapture",
        "--ignored",
        "--test-threads=1",
    ])
    .env(ROLE_VAR, role)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn child");
    let stdin = child.stdin.take();
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
        stdin,
        lines,
    }
}

/// In a child: prints `READY pid=.. pidns=.. mntns=.. <extra>` on one line.
pub fn ready(extra: &[(&str, String)]) {
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

/// In a child: the next line sent by [`Started::send_line`], `None` at end of input.
pub fn read_command() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_string()),
    }
}

/// Whether `unshare` with these options works here; prints why not otherwise (the caller
/// then skips its test).
pub fn unshare_works(opts: &[&str]) -> bool {
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
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// `/proc/self/ns/<kind>`, or `unknown` where `/proc/self` does not resolve.
pub fn ns_link(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Where `/proc/self` points (`ok:<pid>`), or why it does not (`err:<errno>`).
pub fn proc_self() -> String {
    match std::fs::read_link("/proc/self") {
        Ok(p) => format!("ok:{}", p.display()),
        Err(e) => format!("err:{}", e.raw_os_error().unwrap_or(0)),
    }
}

/// A process referred to by a pidfd: signals reach exactly that process, never a reuse of
/// its pid. SIGKILLed on drop if it is still running (a process of a test that failed half
/// way must not outlive it).
pub struct PidFd(OwnedFd);

impl PidFd {
    /// A pidfd for `pid`, which must be a process whose pid cannot have been reused yet:
    /// our child, or a child of a process that has not reaped it.
    pub fn open(pid: u32) -> PidFd {
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

    /// SIGKILL to the process (nothing if it has exited already).
    pub fn sigkill(&self) {
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
    pub fn exited_within(&self, limit: Duration) -> bool {
        let mut p = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = limit.as_millis().min(i32::MAX as u128) as libc::c_int;
        loop {
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut p, 1, ms) };
            if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return n == 1;
            }
        }
    }
}

impl Drop for PidFd {
    fn drop(&mut self) {
        if !self.exited_within(Duration::ZERO) {
            self.sigkill();
        }
    }
}

/// The only child of `parent`: from `/proc/<pid>/task/<pid>/children`, or by the parent pid
/// field of every `/proc/<pid>/stat` where that file is missing.
pub fn only_child_of(parent: u32) -> u32 {
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

/// A child forked (without exec) from this process; SIGKILLed by pid and reaped on drop.
pub struct Forked(libc::pid_t);

impl Forked {
    /// Forks; the child runs `f` (async-signal-safe calls only), then sleeps until killed.
    pub fn start(f: impl FnOnce()) -> Forked {
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

    /// The child's pid (0 once reaped).
    pub fn pid(&self) -> u32 {
        self.0 as u32
    }

    pub fn kill_and_reap(&mut self) {
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

/// A pipe (close-on-exec): (read end, write end).
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds into the array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// In a child, on a thread other than the main one: makes the process's main thread exit
/// while the calling thread (libtest runs each test on a thread of its own; the main thread
/// only waits for it) and any others keep running, and returns once `/proc/<pid>/stat` says
/// `Z`, as for a zombie.
///
/// The main thread is made to exit by a signal aimed at it (`tgkill`) whose handler calls
/// the `exit` system call, which ends the calling thread only (`exit_group` ends them all).
/// `pthread_exit` cannot be called on the main thread from here, and called there it would
/// force-unwind through libtest's Rust frames (undefined behaviour); the kernel-side result,
/// a thread-group leader that has exited while other threads run, is the same. The process
/// must end with `std::process::exit` afterwards (returning to libtest would wait for the
/// main thread forever).
pub fn exit_main_thread() {
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
}

/// In a child in a private mount namespace (started under `unshare --mount` or
/// `--mount-proc`; `parent_mntns` is the test's [`ns_link`]`("mnt")`, to refuse to touch
/// the host's `/proc`): mounts over `/proc` a procfs of a new pid namespace that this
/// process is not in, as after `nsenter --mount` into a container without `--pid`. Then
/// `/proc/self` does not resolve here, so nothing can be reopened through
/// `/proc/self/fd`. Returns [`proc_self`] as it is afterwards.
///
/// The new pid namespace exists only for the forked helper that mounts the procfs (its pid
/// 1, which exits at once). This process is put back into its own namespace for children
/// afterwards (`setns`), so it can still start threads (the kernel refuses `CLONE_THREAD`
/// while a process's namespace for children differs from its own).
pub fn mount_foreign_proc(parent_mntns: &str) -> String {
    assert_ne!(
        ns_link("mnt"),
        parent_mntns,
        "not in a private mount namespace: refusing to mount over /proc"
    );
    let own_pidns = std::fs::File::open("/proc/self/ns/pid").expect("open own pid namespace");
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
    // SAFETY: setns with an fd of a pid namespace (our own) and the matching flag.
    let r = unsafe { libc::setns(own_pidns.as_raw_fd(), libc::CLONE_NEWPID) };
    assert_eq!(
        r,
        0,
        "setns back to our pid namespace: {}",
        std::io::Error::last_os_error()
    );
    proc_self()
}
