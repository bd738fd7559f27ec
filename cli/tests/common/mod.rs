//! Helpers of the tool's tests: the binary, unique ring names removed on drop, child
//! processes killed by pid and reaped on drop, and commands run with input and a watchdog.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The `shmring` binary under test.
pub fn shmring() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmring"))
}

/// A name unique to this process, test and call (so concurrent tests and test runs never
/// meet); the object is unlinked on drop, also when the test fails.
pub struct Name(pub String);

impl Name {
    pub fn new(tag: &str) -> Name {
        static N: AtomicUsize = AtomicUsize::new(0);
        Name(format!(
            "{}{tag}-{}",
            prefix(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn path(&self) -> String {
        format!("/dev/shm{}", self.0)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

/// The prefix of every name this test process makes.
pub fn prefix() -> String {
    format!("/shmring-clitest-{}-", std::process::id())
}

/// A started `shmring` process; killed (SIGKILL, by its pid) and reaped on drop unless it
/// was waited for.
pub struct Kid(pub Option<Child>);

impl Kid {
    pub fn spawn(args: &[&str], stdin: bool, stdout: bool) -> Kid {
        let child = shmring()
            .args(args)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(if stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shmring");
        Kid(Some(child))
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child already reaped")
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL to this child only, then reap it.
    pub fn kill(&mut self) -> ExitStatus {
        let c = self.child();
        let _ = c.kill();
        c.wait().expect("reap")
    }

    /// Waits (at most `limit`, else kills it and fails the test) and returns its output.
    pub fn wait(mut self, limit: Duration) -> Output {
        let mut child = self.0.take().expect("child already reaped");
        drop(child.stdin.take());
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let out = std::thread::spawn(move || read_all(stdout));
        let err = std::thread::spawn(move || read_all(stderr));
        let until = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                panic!("shmring did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn read_all(r: Option<impl Read>) -> Vec<u8> {
    let mut v = Vec::new();
    if let Some(mut r) = r {
        let _ = r.read_to_end(&mut v);
    }
    v
}

/// Runs `shmring args` with `input` on its standard input; fails the test if it runs for
/// more than a minute.
pub fn run_with(args: &[&str], input: &[u8]) -> Output {
    let mut kid = Kid::spawn(args, true, true);
    let mut stdin = kid.child().stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        // The command may stop reading early (that is some tests' point).
        let _ = stdin.write_all(&input);
    });
    let out = kid.wait(Duration::from_secs(60));
    feeder.join().unwrap();
    out
}

/// Runs `shmring args` with empty input.
pub fn run(args: &[&str]) -> Output {
    run_with(args, b"")
}

/// The exit status as a number (panics if killed by a signal).
pub fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {out:?}"))
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Checks a failure: its exit status, and exactly one line on stderr that mentions `what`,
/// without a panic or backtrace.
pub fn assert_fails(out: &Output, status: i32, what: &str) {
    let err = stderr(out);
    assert_eq!(code(out), status, "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err:?}");
    assert!(err.starts_with("shmring: error: "), "{err:?}");
    assert!(err.contains(what), "{err:?} should mention {what:?}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert_eq!(code(out), 0, "stderr: {}", stderr(out));
    stdout(out)
}

/// Polls `f` every 10 ms for up to 30 s (a watchdog for something that must happen, not a
/// measurement).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < until, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `stat --json` of a ring, parsed.
pub fn stat_json(name: &str) -> serde_json::Value {
    let out = run(&["stat", name, "--json"]);
    serde_json::from_str(&ok(&out)).expect("stat --json prints JSON")
}
