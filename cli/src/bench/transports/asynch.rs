//! Async ends in an event loop: shmring's async SPSC handles and tokio's `UnixStream`, each on
//! a current-thread tokio runtime in both processes, measured in the same run.
//!
//! The loops of the harness are synchronous; each of its calls is one `block_on` of the
//! runtime (a burst of sends, or up to 256 receives, is one `block_on`), so both rows pay the
//! same entry into the runtime, and everything inside it is the transport's async path: for
//! shmring, `send(..).await` / `recv().await` (spin, yield to the executor, then park on the
//! ring's doorbell); for tokio, `write_all` / `read_exact` on a `UnixStream` (epoll).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use serde_json::{Value, json};
use shmring::evented::{AsyncConsumer, AsyncProducer};
use shmring::spsc::{Consumer, Producer};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::runtime::Runtime;

use super::{Ctx, Family, ParentEnd, Setup, Transport, Unavailable, arg_int, arg_str, os_err};
use crate::bench::harness::{self, Job, Link, ParentResult, SideReport, Test};
use crate::bench::payload::{AlignedBuf, stamp, verify};
use crate::bench::sys;

/// Receives handled per `block_on` in a stream (before the harness looks at the clock).
const RECV_BURST: usize = 256;

fn runtime() -> Result<Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| os_err("tokio runtime", e))
}

/// shmring SPSC rings through the async handles.
pub struct ShmAsync;

struct AsyncShmLink {
    rt: Runtime,
    tx: Option<AsyncProducer>,
    rx: Option<AsyncConsumer>,
    buf: AlignedBuf,
}

fn check_len(msg: &[u8], size: usize) -> Result<(), String> {
    if msg.len() != size {
        return Err(format!(
            "received a {}-byte message, expected {size} bytes",
            msg.len()
        ));
    }
    Ok(())
}

impl Link for AsyncShmLink {
    fn send(&mut self, word: u64, size: usize) -> Result<(), String> {
        self.send_burst(word, 1, size)
    }

    fn recv(&mut self, size: usize) -> Result<u64, String> {
        let AsyncShmLink { rt, rx, buf, .. } = self;
        let rx = rx.as_mut().ok_or("no consumer on this side")?;
        rt.block_on(async {
            let m = rx.recv().await.map_err(|e| format!("recv: {e}"))?;
            check_len(&m, size)?;
            let dst = &mut buf.bytes_mut()[..size];
            dst.copy_from_slice(&m);
            verify(dst, size)
        })
    }

    fn send_burst(&mut self, first: u64, n: u64, size: usize) -> Result<(), String> {
        let AsyncShmLink { rt, tx, buf, .. } = self;
        let tx = tx.as_mut().ok_or("no producer on this side")?;
        rt.block_on(async {
            for w in first..first + n {
                let b = &mut buf.bytes_mut()[..size];
                stamp(b, w);
                tx.send(b).await.map_err(|e| format!("send: {e}"))?;
            }
            Ok(())
        })
    }

    fn recv_some<F: FnMut(u64) -> Result<bool, String>>(
        &mut self,
        size: usize,
        f: &mut F,
    ) -> Result<bool, String> {
        let AsyncShmLink { rt, rx, buf, .. } = self;
        let rx = rx.as_mut().ok_or("no consumer on this side")?;
        rt.block_on(async {
            for _ in 0..RECV_BURST {
                let m = rx.recv().await.map_err(|e| format!("recv: {e}"))?;
                check_len(&m, size)?;
                let dst = &mut buf.bytes_mut()[..size];
                dst.copy_from_slice(&m);
                drop(m);
                if f(verify(dst, size)?)? {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }
}

struct ShmAsyncEnd {
    link: AsyncShmLink,
    names: Vec<String>,
}

impl ParentEnd for ShmAsyncEnd {
    fn run(&mut self, job: &Job) -> Result<ParentResult, String> {
        for n in self.names.drain(..) {
            shmring::unlink(&n).map_err(|e| format!("unlink {n}: {e}"))?;
        }
        harness::drive(&mut self.link, job)
    }
}

impl Drop for ShmAsyncEnd {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = shmring::unlink(n);
        }
    }
}

fn capacity_for(size: usize) -> usize {
    (size.saturating_mul(4)).next_power_of_two().max(1 << 20)
}

impl Transport for ShmAsync {
    fn name(&self) -> &'static str {
        "shmring-async"
    }

    fn about(&self) -> &'static str {
        "SPSC ring through the async handles (AsyncProducer::send / AsyncConsumer::recv .await, copy in, copy out), current-thread tokio runtime in each process, adaptive (spin, yield, park on the doorbell)"
    }

    fn family(&self) -> Family {
        Family::Shmring
    }

    fn prepare(&self, ctx: &Ctx, job: &Job) -> Result<Setup, Unavailable> {
        let config = shmring::spsc::Config::default().capacity_bytes(capacity_for(job.size));
        let rt = runtime()?;
        let a = ctx.unique("a");
        let mut names = Vec::new();
        let tx = Producer::create(&a, config).map_err(|e| format!("create {a}: {e}"))?;
        names.push(a.clone());
        let (rx, b) = if job.test == Test::Latency {
            let b = ctx.unique("b");
            let rx = Consumer::create(&b, config).map_err(|e| format!("create {b}: {e}"))?;
            names.push(b.clone());
            let rx = AsyncConsumer::new(rx).map_err(|e| os_err("async consumer", e))?;
            (Some(rx), Value::String(b))
        } else {
            (None, Value::Null)
        };
        let tx = AsyncProducer::new(tx).map_err(|e| os_err("async producer", e))?;
        Ok(Setup {
            args: json!({ "a": a, "b": b }),
            pass: Vec::new(),
            end: Box::new(ShmAsyncEnd {
                link: AsyncShmLink {
                    rt,
                    tx: Some(tx),
                    rx,
                    buf: AlignedBuf::new(job.size),
                },
                names,
            }),
        })
    }

    fn peer(&self, job: &Job, args: &Value, ready: &mut dyn FnMut()) -> Result<SideReport, String> {
        let rt = runtime()?;
        let a = arg_str(args, "a")?;
        let rx = Consumer::open(a).map_err(|e| format!("open {a}: {e}"))?;
        let rx = AsyncConsumer::new(rx).map_err(|e| os_err("async consumer", e))?;
        let tx = if job.test == Test::Latency {
            let b = arg_str(args, "b")?;
            let tx = Producer::open(b).map_err(|e| format!("open {b}: {e}"))?;
            Some(AsyncProducer::new(tx).map_err(|e| os_err("async producer", e))?)
        } else {
            None
        };
        ready();
        let mut link = AsyncShmLink {
            rt,
            tx,
            rx: Some(rx),
            buf: AlignedBuf::new(job.size),
        };
        harness::serve(&mut link, job)
    }
}

/// tokio's `UnixStream` over a `socketpair(2)`.
pub struct TokioUnix;

struct TokioUnixLink {
    rt: Runtime,
    r: BufReader<tokio::net::unix::OwnedReadHalf>,
    w: tokio::net::unix::OwnedWriteHalf,
    out: AlignedBuf,
    inp: AlignedBuf,
}

impl TokioUnixLink {
    fn new(fd: OwnedFd, size: usize) -> Result<TokioUnixLink, String> {
        let rt = runtime()?;
        let std = std::os::unix::net::UnixStream::from(fd);
        std.set_nonblocking(true)
            .map_err(|e| os_err("O_NONBLOCK", e))?;
        let s = {
            let _guard = rt.enter();
            UnixStream::from_std(std).map_err(|e| os_err("tokio UnixStream", e))?
        };
        let (r, w) = s.into_split();
        Ok(TokioUnixLink {
            rt,
            // As the blocking stream links: the reader reads through a 64 KiB buffer.
            r: BufReader::with_capacity(64 * 1024, r),
            w,
            out: AlignedBuf::new(size),
            inp: AlignedBuf::new(size),
        })
    }
}

impl Link for TokioUnixLink {
    fn send(&mut self, word: u64, size: usize) -> Result<(), String> {
        self.send_burst(word, 1, size)
    }

    fn recv(&mut self, size: usize) -> Result<u64, String> {
        let TokioUnixLink { rt, r, inp, .. } = self;
        rt.block_on(async {
            let b = &mut inp.bytes_mut()[..size];
            r.read_exact(b).await.map_err(|e| os_err("read", e))?;
            verify(b, size)
        })
    }

    fn send_burst(&mut self, first: u64, n: u64, size: usize) -> Result<(), String> {
        let TokioUnixLink { rt, w, out, .. } = self;
        rt.block_on(async {
            for word in first..first + n {
                let b = &mut out.bytes_mut()[..size];
                stamp(b, word);
                w.write_all(b).await.map_err(|e| os_err("write", e))?;
            }
            Ok(())
        })
    }

    fn recv_some<F: FnMut(u64) -> Result<bool, String>>(
        &mut self,
        size: usize,
        f: &mut F,
    ) -> Result<bool, String> {
        let TokioUnixLink { rt, r, inp, .. } = self;
        rt.block_on(async {
            for _ in 0..RECV_BURST {
                let b = &mut inp.bytes_mut()[..size];
                r.read_exact(b).await.map_err(|e| os_err("read", e))?;
                if f(verify(b, size)?)? {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }
}

struct TokioUnixEnd {
    link: TokioUnixLink,
}

impl ParentEnd for TokioUnixEnd {
    fn run(&mut self, job: &Job) -> Result<ParentResult, String> {
        harness::drive(&mut self.link, job)
    }
}

impl Transport for TokioUnix {
    fn name(&self) -> &'static str {
        "tokio-unix"
    }

    fn about(&self) -> &'static str {
        "tokio::net::UnixStream over socketpair(AF_UNIX, SOCK_STREAM), current-thread tokio runtime in each process; write_all per message, read_exact through a 64 KiB BufReader"
    }

    fn prepare(&self, _ctx: &Ctx, job: &Job) -> Result<Setup, Unavailable> {
        let (mine, theirs) =
            sys::socketpair(libc::SOCK_STREAM).map_err(|e| os_err("socketpair", e))?;
        sys::set_inheritable(theirs.as_fd()).map_err(|e| os_err("fcntl", e))?;
        Ok(Setup {
            args: json!({ "fd": theirs.as_raw_fd() }),
            pass: vec![theirs],
            end: Box::new(TokioUnixEnd {
                link: TokioUnixLink::new(mine, job.size)?,
            }),
        })
    }

    fn peer(&self, job: &Job, args: &Value, ready: &mut dyn FnMut()) -> Result<SideReport, String> {
        let fd = sys::claim_inherited(arg_int(args, "fd")?)?;
        let mut link = TokioUnixLink::new(fd, job.size)?;
        ready();
        harness::serve(&mut link, job)
    }
}
