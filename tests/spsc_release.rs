//! A producer blocked on a full ring gets the room a consumer in another process released,
//! although the consumer released less than a quarter of the ring and then stopped reading
//! (it keeps its end open, busy elsewhere). The consumer stores its index lazily, once per
//! quarter ring, unless the producer asks for room at once; these tests fail if it does not.
//!
//! Every case runs for k = 1 … a quarter ring of released messages, for `send`,
//! `send_timeout`, `reserve`, `send_many` and the async `send`, in two orders: the consumer
//! releases first and the producer calls later, and the producer is already blocked when the
//! consumer releases.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{ChildProc, RingName, child_command, env};
use shmring::{WaitStrategy, spsc};

const ENTRY: &str = "child_entry";
/// A 4 KiB ring of 56-byte messages (64-byte records, which tile the ring, so the message
/// after a full ring needs no padding at the wrap and the room of one record is enough for
/// it): 63 fit (the producer keeps 8 bytes free after its last record), and a quarter of
/// the ring (1 KiB) is 16 records.
const CAPACITY: usize = 4096;
const MSG: usize = 56;
const FITS: usize = (CAPACITY - 8) / (MSG + 8);
const QUARTER: usize = CAPACITY / 4 / (MSG + 8);
/// How long a call that should succeed at once may take before the test calls it stuck.
const STUCK: Duration = Duration::from_secs(5);

/// Dispatcher run in child processes; does nothing unless started by the tests below.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child_entry() {
    let Ok(role) = std::env::var(common::ROLE_VAR) else {
        return;
    };
    assert_eq!(role, "take_k_then_stop");
    let name = env("RING");
    let k: usize = env("K").parse().unwrap();
    let mut rx = spsc::Consumer::open(&name).expect("open consumer");
    println!("\nSHMRING-CHILD-OPEN");
    // Wait for the parent's word (a line on stdin) before reading.
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("read go");
    for i in 0..k {
        let m = rx.recv().expect("recv");
        assert_eq!(&*m, &msg(i as u8)[..], "message {i}");
    }
    println!("\nSHMRING-CHILD-TOOK {k}");
    // Stop reading, keep the end open.
    std::thread::sleep(Duration::from_secs(600));
    drop(rx);
}

fn msg(i: u8) -> [u8; MSG] {
    [i; MSG]
}

/// A consumer process, opened on `name`, that reads `k` messages when told to.
struct Reader {
    /// Killed and reaped on drop: the consumer never exits by itself.
    _child: ChildProc,
    stdout: BufReader<std::process::ChildStdout>,
    stdin: std::process::ChildStdin,
}

impl Reader {
    fn start(name: &RingName, k: usize) -> Reader {
        let mut cmd = child_command(
            ENTRY,
            "take_k_then_stop",
            &[("RING", name.0.clone()), ("K", k.to_string())],
        );
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn consumer");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stdin = child.stdin.take().unwrap();
        let mut r = Reader {
            _child: ChildProc(Some(child)),
            stdout,
            stdin,
        };
        r.wait_for("SHMRING-CHILD-OPEN");
        r
    }

    fn wait_for(&mut self, what: &str) {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).expect("child stdout");
            assert!(n > 0, "consumer exited before it printed {what}");
            if line.contains(what) {
                return;
            }
        }
    }

    /// Lets the consumer read its messages; with `wait`, returns once it has released them.
    fn go(&mut self, wait: bool) {
        self.stdin.write_all(b"go\n").unwrap();
        self.stdin.flush().unwrap();
        if wait {
            self.wait_for("SHMRING-CHILD-TOOK");
        }
    }
}

/// A producer-side call that must find room for one more message.
#[derive(Clone, Copy, Debug)]
enum Call {
    Send,
    SendTimeout,
    Reserve,
    SendMany,
    #[cfg(feature = "tokio")]
    AsyncSend,
}

fn calls() -> Vec<Call> {
    vec![
        Call::Send,
        Call::SendTimeout,
        Call::Reserve,
        Call::SendMany,
        #[cfg(feature = "tokio")]
        Call::AsyncSend,
    ]
}

impl Call {
    /// Sends one more message (the `FITS`-th) into the full ring.
    fn run(self, mut tx: spsc::Producer) -> Result<(), String> {
        let m = msg(FITS as u8);
        match self {
            Call::Send => tx.send(&m).map_err(|e| e.to_string()),
            // As in the report this reproduces: three seconds, which lazy release never met.
            Call::SendTimeout => tx
                .send_timeout(&m, Duration::from_secs(3))
                .map_err(|e| e.to_string()),
            Call::Reserve => {
                let mut g = tx.reserve(MSG).map_err(|e| e.to_string())?;
                g.copy_from_slice(&m);
                g.commit(MSG).map_err(|e| e.to_string())
            }
            Call::SendMany => match tx.send_many(&[m]) {
                Ok(1) => Ok(()),
                Ok(n) => Err(format!("send_many sent {n}")),
                Err(e) => Err(e.to_string()),
            },
            #[cfg(feature = "tokio")]
            Call::AsyncSend => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let mut tx =
                        shmring::evented::AsyncProducer::new(tx).map_err(|e| e.to_string())?;
                    tx.send(&m).await.map_err(|e| e.to_string())
                })
            }
        }
    }
}

/// A 4 KiB ring filled with `FITS` messages by `send`, which never found it full (and so
/// never waited: the producer must have asked for room before it needed it).
fn full_ring(tag: &str, strategy: WaitStrategy) -> (RingName, spsc::Producer) {
    let name = RingName::new(tag);
    let mut tx = spsc::Producer::create(
        name.as_str(),
        spsc::Config::default()
            .capacity_bytes(CAPACITY)
            .max_message_bytes(MSG)
            .wait_strategy(strategy),
    )
    .expect("create ring");
    for i in 0..FITS {
        tx.send(&msg(i as u8)).expect("fill");
    }
    (name, tx)
}

/// Runs `call` on another thread; returns its outcome, or an error if it is still blocked
/// after `STUCK`.
fn within(call: Call, tx: spsc::Producer) -> mpsc::Receiver<Result<(), String>> {
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(call.run(tx));
    });
    outcome
}

fn expect_done(outcome: &mpsc::Receiver<Result<(), String>>, what: &str) {
    match outcome.recv_timeout(STUCK) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{what}: failed: {e}"),
        Err(_) => panic!("{what}: still waiting for room after {STUCK:?}"),
    }
}

#[test]
fn released_before_the_call_is_room_for_it() {
    assert_eq!((FITS, QUARTER), (63, 16));
    for call in calls() {
        for k in 1..=QUARTER {
            let (name, tx) = full_ring("rel-before", WaitStrategy::Adaptive);
            let mut reader = Reader::start(&name, k);
            reader.go(true);
            let what = format!("{call:?} after the consumer released {k}");
            expect_done(&within(call, tx), &what);
            drop(reader);
        }
    }
}

#[test]
fn released_while_the_producer_waits_wakes_it() {
    for strategy in [
        WaitStrategy::Adaptive,
        WaitStrategy::Block,
        WaitStrategy::Spin,
    ] {
        for call in calls() {
            for k in 1..=QUARTER {
                let (name, tx) = full_ring("rel-during", strategy);
                let mut reader = Reader::start(&name, k);
                let outcome = within(call, tx);
                // Let the producer find the ring full and wait (spinning, asleep or parked).
                std::thread::sleep(Duration::from_millis(20));
                assert!(
                    outcome.try_recv().is_err(),
                    "{call:?} did not wait on a full ring"
                );
                reader.go(false);
                let what = format!("{call:?} ({strategy:?}) while the consumer released {k}");
                expect_done(&outcome, &what);
                drop(reader);
            }
        }
    }
}
