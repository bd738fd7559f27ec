//! shmring SPSC rings: per-message send/recv in each wait strategy, batched publish with
//! batched release, and zero copy (reserve/commit on one side, borrow on the other).
//!
//! A round trip uses two rings (one per direction); a stream uses one. The rings are named
//! (`/shmring-bench-<pid>-<n>-a`), created by the parent and opened by the peer; the parent
//! removes the names as soon as the peer has attached, and on any error.

use serde_json::{Value, json};
use shmring::spsc::{Consumer, Producer};
use shmring::{TryRecvError, WaitStrategy};

use super::{Ctx, Family, ParentEnd, Setup, Transport, Unavailable, arg_str};
use crate::bench::harness::{self, Job, Link, ParentResult, SideReport, Test};
use crate::bench::payload::{AlignedBuf, stamp, verify};

/// How messages go in and out of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `send(&[u8])` copies in; `recv()` then a copy out into the caller's buffer (what a
    /// `read(2)` would give).
    Copy,
    /// As `Copy`, but bursts of messages go through `Producer::batch()` (one publish per
    /// burst) and the receiver releases with `Consumer::drain`.
    Batch,
    /// `reserve(n)` and writing in place, `commit`; the receiver checks the message in place
    /// through the `recv()` guard.
    ZeroCopy,
    /// As `Batch`, but each burst goes through `Producer::send_many` (one check and one
    /// publish for a slice of messages).
    Many,
}

/// A shmring SPSC transport.
pub struct Spsc {
    name: &'static str,
    about: &'static str,
    strategy: WaitStrategy,
    mode: Mode,
}

pub static SPSC_SPIN: Spsc = Spsc {
    name: "shmring-spin",
    about: "SPSC ring, send/recv per message (copy in, copy out), WaitStrategy::Spin",
    strategy: WaitStrategy::Spin,
    mode: Mode::Copy,
};
pub static SPSC_BLOCK: Spsc = Spsc {
    name: "shmring-block",
    about: "SPSC ring, send/recv per message (copy in, copy out), WaitStrategy::Block (futex at once)",
    strategy: WaitStrategy::Block,
    mode: Mode::Copy,
};
pub static SPSC_ADAPTIVE: Spsc = Spsc {
    name: "shmring-adaptive",
    about: "SPSC ring, send/recv per message (copy in, copy out), WaitStrategy::Adaptive (spin, then futex)",
    strategy: WaitStrategy::Adaptive,
    mode: Mode::Copy,
};
pub static SPSC_BATCH: Spsc = Spsc {
    name: "shmring-batch",
    about: "SPSC ring, Producer::batch() (one publish per burst of up to 64 messages) and Consumer::drain (one release per drain), adaptive",
    strategy: WaitStrategy::Adaptive,
    mode: Mode::Batch,
};
pub static SPSC_MANY: Spsc = Spsc {
    name: "shmring-many",
    about: "SPSC ring, Producer::send_many (a slice of up to 64 messages per call: one check, one publish) and Consumer::drain, adaptive",
    strategy: WaitStrategy::Adaptive,
    mode: Mode::Many,
};
pub static SPSC_ZERO_COPY: Spsc = Spsc {
    name: "shmring-zerocopy",
    about: "SPSC ring, reserve/commit writing the check words in place, receiver checks in place (payload bytes are not copied), adaptive",
    strategy: WaitStrategy::Adaptive,
    mode: Mode::ZeroCopy,
};

/// Ring capacity for messages of `size` bytes: 1 MiB, or four messages' worth if larger.
fn capacity_for(size: usize) -> usize {
    (size.saturating_mul(4)).next_power_of_two().max(1 << 20)
}

/// Names to remove when dropped (a failed job leaves nothing behind in /dev/shm).
struct Names(Vec<String>);

impl Names {
    fn unlink_now(&mut self) -> Result<(), String> {
        let mut first_err = None;
        for n in self.0.drain(..) {
            if let Err(e) = shmring::unlink(&n)
                && first_err.is_none()
            {
                first_err = Some(format!("unlink {n}: {e}"));
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for n in &self.0 {
            // Best effort: the name may already be gone.
            let _ = shmring::unlink(n);
        }
    }
}

struct ShmLink {
    tx: Option<Producer>,
    rx: Option<Consumer>,
    buf: AlignedBuf,
    /// `Many`: a burst's messages, back to back.
    burst: Vec<u8>,
    mode: Mode,
}

impl ShmLink {
    fn new(tx: Option<Producer>, rx: Option<Consumer>, size: usize, mode: Mode) -> ShmLink {
        ShmLink {
            tx,
            rx,
            buf: AlignedBuf::new(size),
            burst: Vec::new(),
            mode,
        }
    }

    /// `Many`: stamps up to 64 messages into `burst` and hands them to `send_many` as one
    /// slice, calling again for what did not fit.
    fn send_slices(&mut self, first: u64, n: u64, size: usize) -> Result<(), String> {
        let tx = self.tx.as_mut().ok_or("no producer on this side")?;
        let mut w = first;
        while w < first + n {
            let k = (first + n - w).min(64) as usize;
            self.burst.resize(k * size, 0);
            for (i, chunk) in self.burst.chunks_mut(size).enumerate() {
                stamp(chunk, w + i as u64);
            }
            let mut refs: [&[u8]; 64] = [&[]; 64];
            for (r, chunk) in refs.iter_mut().zip(self.burst.chunks(size)) {
                *r = chunk;
            }
            let mut sent = 0;
            while sent < k {
                sent += tx
                    .send_many(&refs[sent..k])
                    .map_err(|e| format!("send_many: {e}"))?;
            }
            w += k as u64;
        }
        Ok(())
    }
}

fn copy_out(buf: &mut AlignedBuf, msg: &[u8], size: usize) -> Result<u64, String> {
    let n = msg.len();
    if n != size {
        return Err(format!(
            "received a {n}-byte message, expected {size} bytes"
        ));
    }
    let dst = &mut buf.bytes_mut()[..n];
    dst.copy_from_slice(msg);
    verify(dst, size)
}

impl Link for ShmLink {
    #[inline]
    fn send(&mut self, word: u64, size: usize) -> Result<(), String> {
        let tx = self.tx.as_mut().ok_or("no producer on this side")?;
        match self.mode {
            Mode::Copy | Mode::Batch | Mode::Many => {
                let b = &mut self.buf.bytes_mut()[..size];
                stamp(b, word);
                tx.send(b).map_err(|e| format!("send: {e}"))
            }
            Mode::ZeroCopy => {
                let mut g = tx.reserve(size).map_err(|e| format!("reserve: {e}"))?;
                stamp(&mut g[..size], word);
                g.commit(size).map_err(|e| format!("commit: {e}"))
            }
        }
    }

    #[inline]
    fn recv(&mut self, size: usize) -> Result<u64, String> {
        let rx = self.rx.as_mut().ok_or("no consumer on this side")?;
        let m = rx.recv().map_err(|e| format!("recv: {e}"))?;
        match self.mode {
            Mode::Copy | Mode::Batch | Mode::Many => copy_out(&mut self.buf, &m, size),
            Mode::ZeroCopy => verify(&m, size),
        }
    }

    fn send_burst(&mut self, first: u64, n: u64, size: usize) -> Result<(), String> {
        if self.mode == Mode::Many && size > 0 {
            return self.send_slices(first, n, size);
        }
        if self.mode != Mode::Batch {
            for w in first..first + n {
                self.send(w, size)?;
            }
            return Ok(());
        }
        let tx = self.tx.as_mut().ok_or("no producer on this side")?;
        let mut batch = tx.batch();
        for w in first..first + n {
            let b = &mut self.buf.bytes_mut()[..size];
            stamp(b, w);
            batch.send(b).map_err(|e| format!("batch send: {e}"))?;
        }
        batch.publish();
        Ok(())
    }

    fn recv_some<F: FnMut(u64) -> Result<bool, String>>(
        &mut self,
        size: usize,
        f: &mut F,
    ) -> Result<bool, String> {
        if !matches!(self.mode, Mode::Batch | Mode::Many) {
            let w = self.recv(size)?;
            return f(w);
        }
        let ShmLink { rx, buf, .. } = self;
        let rx = rx.as_mut().ok_or("no consumer on this side")?;
        let mut stop = false;
        let mut err = None;
        let drained = rx.drain(256, |m| {
            if stop || err.is_some() {
                return;
            }
            match copy_out(buf, m, size).and_then(&mut *f) {
                Ok(s) => stop = s,
                Err(e) => err = Some(e),
            }
        });
        match drained {
            Ok(_) => {}
            Err(TryRecvError::Empty) => {
                // Nothing waiting: block for one message, then drain again next time.
                let m = rx.recv().map_err(|e| format!("recv: {e}"))?;
                let w = copy_out(buf, &m, size)?;
                drop(m);
                return f(w);
            }
            Err(e) => return Err(format!("drain: {e}")),
        }
        match err {
            Some(e) => Err(e),
            None => Ok(stop),
        }
    }
}

struct ShmEnd {
    link: ShmLink,
    names: Names,
}

impl ParentEnd for ShmEnd {
    fn run(&mut self, job: &Job) -> Result<ParentResult, String> {
        // The peer has attached to every ring: the names can go.
        self.names.unlink_now()?;
        harness::drive(&mut self.link, job)
    }
}

impl Transport for Spsc {
    fn name(&self) -> &'static str {
        self.name
    }

    fn about(&self) -> &'static str {
        self.about
    }

    fn family(&self) -> Family {
        Family::Shmring
    }

    fn not_applicable(&self, test: Test, _size: usize) -> Option<String> {
        (matches!(self.mode, Mode::Batch | Mode::Many) && test == Test::Latency)
            .then(|| "a ping-pong has one message in flight: nothing to batch".to_owned())
    }

    fn prepare(&self, ctx: &Ctx, job: &Job) -> Result<Setup, Unavailable> {
        let config = shmring::spsc::Config::default()
            .capacity_bytes(capacity_for(job.size))
            .wait_strategy(self.strategy);
        let mut names = Names(Vec::new());
        let a = ctx.unique("a");
        let tx = Producer::create(&a, config).map_err(|e| format!("create {a}: {e}"))?;
        names.0.push(a.clone());
        let (rx, b) = if job.test == Test::Latency {
            let b = ctx.unique("b");
            let rx = Consumer::create(&b, config).map_err(|e| format!("create {b}: {e}"))?;
            names.0.push(b.clone());
            (Some(rx), Value::String(b))
        } else {
            (None, Value::Null)
        };
        Ok(Setup {
            args: json!({ "a": a, "b": b }),
            pass: Vec::new(),
            end: Box::new(ShmEnd {
                link: ShmLink::new(Some(tx), rx, job.size, self.mode),
                names,
            }),
        })
    }

    fn peer(&self, job: &Job, args: &Value, ready: &mut dyn FnMut()) -> Result<SideReport, String> {
        let a = arg_str(args, "a")?;
        let mut rx = Consumer::open(a).map_err(|e| format!("open {a}: {e}"))?;
        rx.set_wait_strategy(self.strategy);
        let tx = if job.test == Test::Latency {
            let b = arg_str(args, "b")?;
            let mut tx = Producer::open(b).map_err(|e| format!("open {b}: {e}"))?;
            tx.set_wait_strategy(self.strategy);
            Some(tx)
        } else {
            None
        };
        ready();
        let mut link = ShmLink::new(tx, Some(rx), job.size, self.mode);
        harness::serve(&mut link, job)
    }
}
