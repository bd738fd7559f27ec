//! Helpers shared by the integration tests: unique ring names removed on drop, child
//! processes (re-executions of the test binary) killed and reaped on drop, and deterministic
//! message contents that a receiver can regenerate and compare byte for byte.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A shared-memory name unique to this process, test and call; unlinked on drop (also when
/// the test fails).
pub struct RingName(pub String);

impl RingName {
    pub fn new(tag: &str) -> RingName {
        static N: AtomicUsize = AtomicUsize::new(0);
        RingName(format!(
            "/shmring-test-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Path of the object in /dev/shm, for tests that tamper with it.
    pub fn dev_shm_path(&self) -> String {
        format!("/dev/shm{}", self.0)
    }
}

impl Drop for RingName {
    fn drop(&mut self) {
        let _ = shmring::unlink(&self.0);
    }
}

/// A child process started by a test; killed (by pid, via `Child::kill`) and reaped on drop
/// unless it was waited for.
pub struct ChildProc(pub Option<Child>);

impl ChildProc {
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Sends SIGKILL to this child only.
    pub fn kill(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
        }
    }

    /// Waits for the child and returns its stdout; panics (failing the test) if it failed.
    pub fn finish(mut self) -> String {
        let child = self.0.take().expect("child already finished");
        let out = child.wait_with_output().expect("wait for child");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "child failed: {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Reaps a child that was killed.
    pub fn reap(mut self) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("child already finished");
        child.wait().expect("wait for child")
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Environment variable that selects a child role.
pub const ROLE_VAR: &str = "SHMRING_TEST_ROLE";

/// Starts this test binary again, running only the ignored test `entry`, with the given
/// role and extra environment.
pub fn spawn_child(entry: &str, role: &str, env: &[(&str, String)]) -> ChildProc {
    let mut cmd = child_command(entry, role, env);
    ChildProc(Some(cmd.spawn().expect("spawn child")))
}

/// The command `spawn_child` runs (stdin null, stdout and stderr piped), for a test that
/// needs other pipes before it spawns the child into a [`ChildProc`].
pub fn child_command(entry: &str, role: &str, env: &[(&str, String)]) -> Command {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        entry,
        "--exact",
        "--nocapture",
        "--ignored",
        "--test-threads=1",
    ])
    .env(ROLE_VAR, role)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Reads a required environment variable in a child.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child needs {name}"))
}

/// splitmix64: a fast, well-mixed function of the sequence number.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Length of message `seq` in 1..=max.
pub fn msg_len(seq: u64, max: usize) -> usize {
    (mix(seq ^ 0x5555) % max as u64) as usize + 1
}

/// Fills `buf` with the contents of message `seq`: the sequence number (little endian, cut
/// to the buffer) followed by pseudo-random bytes derived from it.
pub fn fill_msg(seq: u64, buf: &mut [u8]) {
    let head = seq.to_le_bytes();
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&head[..n]);
    let mut state = mix(seq);
    for chunk in buf[n..].chunks_mut(8) {
        state = mix(state);
        let b = state.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Checks that `got` is exactly message `seq` (length, sequence number and every byte);
/// `scratch` avoids an allocation per message.
pub fn check_msg(seq: u64, max: usize, got: &[u8], scratch: &mut Vec<u8>) {
    let len = msg_len(seq, max);
    assert_eq!(
        got.len(),
        len,
        "message {seq}: wrong length (lost, duplicated or reordered message?)"
    );
    scratch.resize(len, 0);
    fill_msg(seq, scratch);
    if got != &scratch[..] {
        let n = got.len().min(8);
        let mut head = [0u8; 8];
        head[..n].copy_from_slice(&got[..n]);
        panic!(
            "message {seq}: contents differ (its sequence field says {})",
            u64::from_le_bytes(head)
        );
    }
}

/// Pins the calling thread to one CPU (best effort; returns whether it worked).
pub fn pin_to_cpu(cpu: usize) -> bool {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).is_ok()
}

/// Overwrites bytes of a named shared-memory object at `offset` (as a hostile peer could).
pub fn patch(name: &RingName, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(name.dev_shm_path())
        .expect("open object for patching");
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Forks; the child runs `child` (which must only drop things: no locks, no allocation)
/// and exits with `_exit(0)`; the parent waits for it and checks it exited cleanly.
pub fn fork_and_wait(child: impl FnOnce()) {
    // SAFETY: the child runs `child` (documented to only drop handles: unmapping and closing
    // fds) and ends with `_exit`, without touching the parent's locks or allocator state.
    match unsafe { libc::fork() } {
        -1 => panic!("fork failed"),
        0 => {
            child();
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(0) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for the child we just forked.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert_eq!(status, 0, "forked child failed");
        }
    }
}
/// A tmpfs memfd holding `bytes`, with `seals` (none: unsealed).
pub fn memfd_with(bytes: &[u8], seals: rustix::fs::SealFlags) -> std::os::fd::OwnedFd {
    use std::io::Write;
    let fd = rustix::fs::memfd_create(
        "shmring-test",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .expect("memfd_create");
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).expect("write memfd");
    let fd = std::os::fd::OwnedFd::from(f);
    if !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&fd, seals).expect("seal memfd");
    }
    fd
}

pub mod procs;
