//! Every example runs as the README says and does what it claims: each is started as its own
//! process (with the arguments the README gives), must exit successfully within a bound,
//! must print its result line, and must leave no shared-memory name or socket behind.
//!
//! How the examples are found: `cargo test` builds every example of the package (to check
//! that they compile) next to the test binaries, in `target/<profile>/examples/`, and this
//! test binary lives in `target/<profile>/deps/`; so the examples are found from
//! [`std::env::current_exe`], without building anything here. A run that builds only this
//! test (`cargo test --test examples`) does not build the examples: build them first with
//! `cargo build --examples --all-features` (the test says so when one is missing). The
//! examples that need the `bytemuck` feature are tested only when it is on.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{ChildProc, RingName};

/// How long an example may take (they take well under a second when the machine is idle;
/// two cores shared with other builds can make that many times longer).
const BOUND: Duration = Duration::from_secs(120);

/// The example binary `name` that `cargo test` built alongside this test.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "example {name} not found at {}: `cargo test` builds the examples; after `cargo test \
         --test examples` alone, run `cargo build --examples --all-features` first",
        path.display()
    );
    path
}

/// What an example printed, and how it ended.
struct Run {
    pid: u32,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Panics (failing the test) unless the example succeeded and printed every one of
    /// `lines` (substrings) on its standard output.
    fn expect_success(&self, lines: &[&str]) {
        assert!(
            self.status.success(),
            "example failed: {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        for line in lines {
            assert!(
                self.stdout.contains(line),
                "missing {line:?} in stdout:\n{}\nstderr:\n{}",
                self.stdout,
                self.stderr
            );
        }
    }
}

/// Starts the example `name` with `args`.
fn start(name: &str, args: &[&str]) -> ChildProc {
    let child = Command::new(example(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start example {name}: {e}"));
    ChildProc(Some(child))
}

/// Waits for a started example (at most [`BOUND`]; past it, kills it by its pid and fails).
fn finish(mut proc: ChildProc) -> Run {
    let deadline = Instant::now() + BOUND;
    let pid = proc.pid();
    let child = proc.0.as_mut().expect("running");
    // The examples print a few lines: the pipes cannot fill up before they exit.
    loop {
        if child.try_wait().expect("wait for example").is_some() {
            break;
        }
        if Instant::now() > deadline {
            proc.kill();
            panic!("example (pid {pid}) still running after {BOUND:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut child = proc.0.take().expect("running");
    // Exited already: this returns its status at once.
    let status = child.wait().expect("wait for example");
    let (mut stdout, mut stderr) = (String::new(), String::new());
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout).expect("read stdout");
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr).expect("read stderr");
    }
    Run {
        pid,
        status,
        stdout,
        stderr,
    }
}

fn run(name: &str, args: &[&str]) -> Run {
    finish(start(name, args))
}

/// Panics if the shared-memory object `name` still exists.
fn assert_unlinked(name: &str) {
    let path = format!("/dev/shm{name}");
    assert!(!Path::new(&path).exists(), "{path} left behind");
}

#[test]
fn producer_and_consumer_move_every_message_in_order() {
    let name = RingName::new("example-pc");
    // The consumer may start first: it waits for the ring to be created.
    let consumer = start("consumer", &[name.as_str()]);
    let producer = run("producer", &[name.as_str(), "20000"]);
    producer.expect_success(&[]);
    assert!(
        producer.stderr.contains("20000"),
        "producer: {}",
        producer.stderr
    );
    let consumer = finish(consumer);
    consumer.expect_success(&[]);
    // The consumer prints the number of messages it checked, and nothing else.
    assert_eq!(consumer.stdout.trim(), "20000", "{}", consumer.stderr);
    assert_unlinked(name.as_str());
}

#[test]
fn worker_pool_answers_every_job_once() {
    let out = run("worker_pool", &[]);
    out.expect_success(&[
        "20000 jobs done by 3 worker processes",
        "longest: 17647 takes 278 Collatz steps",
    ]);
    assert_unlinked(&format!("/shmring-pool-jobs-{}", out.pid));
    assert_unlinked(&format!("/shmring-pool-results-{}", out.pid));
}

#[cfg(feature = "bytemuck")]
#[test]
fn request_reply_answers_every_typed_call() {
    let out = run("request_reply", &[]);
    out.expect_success(&[
        "3 + 4 = 7",
        "1 / 0 = error",
        "10000 calls answered and checked",
    ]);
    assert!(
        out.stderr.contains("server: 10000 requests served"),
        "{}",
        out.stderr
    );
    assert_unlinked(&format!("/shmring-rpc-requests-{}", out.pid));
    assert_unlinked(&format!("/shmring-rpc-replies-{}", out.pid));
}

#[cfg(feature = "bytemuck")]
#[test]
fn zero_copy_reads_every_frame_in_place() {
    let out = run("zero_copy", &[]);
    out.expect_success(&[
        "reader: 100000 frames read in place, every checksum right",
        "writer: 100000 frames of 4016 bytes written in place",
    ]);
    assert_unlinked(&format!("/shmring-zero-copy-{}", out.pid));
}

#[test]
fn fork_anonymous_reaches_the_forked_child() {
    let out = run("fork_anonymous", &[]);
    out.expect_success(&[
        "child: 1000000 messages received in order over an anonymous ring",
        "parent: 1000000 messages to a forked child",
    ]);
}

#[test]
fn pass_fd_hands_the_ring_to_an_unrelated_process() {
    let out = run("pass_fd", &[]);
    out.expect_success(&[
        "receiver: 1000000 messages in order over a descriptor received on a socket",
        "sender: 1000000 messages",
    ]);
    let socket = std::env::temp_dir().join(format!("shmring-pass-fd-{}.sock", out.pid));
    assert!(!socket.exists(), "{} left behind", socket.display());
}
