//! POSIX message queues (`mq_open(3)`), one per direction, with the system's default queue
//! depth (`/proc/sys/fs/mqueue/msg_max`, at most 10). Sizes the system refuses
//! (`msgsize_max`, `RLIMIT_MSGQUEUE`) are reported as not applicable, with the reason.

use std::ffi::CString;
use std::io;

use serde_json::{Value, json};

use super::{Ctx, ParentEnd, Setup, Transport, Unavailable, arg_str, os_err};
use crate::bench::harness::{self, Job, Link, ParentResult, SideReport, Test};
use crate::bench::payload::{AlignedBuf, stamp, verify};
use crate::bench::sys;

/// POSIX message queues.
pub struct PosixMq;

/// An open queue descriptor, closed on drop.
struct Mqd(libc::mqd_t);

impl Drop for Mqd {
    fn drop(&mut self) {
        // SAFETY: the descriptor was returned by mq_open and is closed once, here.
        unsafe { libc::mq_close(self.0) };
    }
}

/// Queue names removed on drop.
struct Names(Vec<CString>);

impl Drop for Names {
    fn drop(&mut self) {
        for n in &self.0 {
            // SAFETY: `n` is a NUL-terminated name; a missing queue is only an error code.
            unsafe { libc::mq_unlink(n.as_ptr()) };
        }
    }
}

fn cname(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("queue name {s:?} contains NUL"))
}

fn depth() -> libc::c_long {
    sys::read_trimmed("/proc/sys/fs/mqueue/msg_max")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
        .clamp(1, 10)
}

fn create(name: &CString, size: usize) -> Result<Mqd, Unavailable> {
    // SAFETY: `mq_attr` is plain data; zero is a valid starting value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = depth();
    attr.mq_msgsize = size as libc::c_long;
    // SAFETY: `name` is NUL-terminated and `attr` a valid attribute block for the call.
    let q = unsafe {
        libc::mq_open(
            name.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC,
            0o600 as libc::mode_t,
            &attr as *const libc::mq_attr,
        )
    };
    if q == -1 as libc::mqd_t {
        let e = io::Error::last_os_error();
        let msgsize_max = sys::read_trimmed("/proc/sys/fs/mqueue/msgsize_max").unwrap_or_default();
        let why = match e.raw_os_error() {
            Some(libc::EINVAL) => format!(
                "{size}-byte messages exceed /proc/sys/fs/mqueue/msgsize_max = {msgsize_max} (EINVAL)"
            ),
            Some(libc::EMFILE) => format!(
                "{} messages of {size} bytes exceed the per-user RLIMIT_MSGQUEUE (EMFILE)",
                attr.mq_maxmsg
            ),
            Some(libc::ENOMEM) | Some(libc::ENOSPC) => {
                format!("the system refused a queue of {size}-byte messages ({e})")
            }
            _ => return Err(Unavailable::Failed(os_err("mq_open", e))),
        };
        return Err(Unavailable::NotApplicable(why));
    }
    Ok(Mqd(q))
}

fn open(name: &str) -> Result<Mqd, String> {
    let c = cname(name)?;
    // SAFETY: `c` is NUL-terminated; no attribute block is read without O_CREAT.
    let q = unsafe { libc::mq_open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if q == -1 as libc::mqd_t {
        return Err(os_err(
            &format!("mq_open {name}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(Mqd(q))
}

/// An absolute CLOCK_REALTIME time `d` from now (message-queue timeouts are absolute).
fn deadline_after(d: std::time::Duration) -> libc::timespec {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + d;
    libc::timespec {
        tv_sec: now.as_secs() as libc::time_t,
        tv_nsec: now.subsec_nanos() as libc::c_long,
    }
}

struct MqLink {
    tx: Option<Mqd>,
    rx: Option<Mqd>,
    deadline: libc::timespec,
    out: AlignedBuf,
    inp: AlignedBuf,
}

impl Link for MqLink {
    #[inline]
    fn send(&mut self, word: u64, size: usize) -> Result<(), String> {
        let q = self.tx.as_ref().ok_or("no sending queue on this side")?.0;
        let b = &mut self.out.bytes_mut()[..size];
        stamp(b, word);
        loop {
            // SAFETY: `b` is valid for reads of `size` bytes, `deadline` a valid timespec.
            let rc = unsafe { libc::mq_timedsend(q, b.as_ptr().cast(), size, 0, &self.deadline) };
            if rc == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ETIMEDOUT) => {
                    return Err("mq_send: the peer stopped receiving (job time limit)".into());
                }
                _ => return Err(os_err("mq_send", e)),
            }
        }
    }

    #[inline]
    fn recv(&mut self, size: usize) -> Result<u64, String> {
        let q = self.rx.as_ref().ok_or("no receiving queue on this side")?.0;
        let b = &mut self.inp.bytes_mut()[..size];
        loop {
            // SAFETY: `b` is valid for writes of `size` bytes (the queue's message size, as
            // mq_receive requires); the priority pointer may be null.
            let n = unsafe {
                libc::mq_timedreceive(
                    q,
                    b.as_mut_ptr().cast(),
                    size,
                    std::ptr::null_mut(),
                    &self.deadline,
                )
            };
            if n >= 0 {
                return verify(&b[..n as usize], size);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ETIMEDOUT) => {
                    return Err("mq_receive: the peer stopped sending (job time limit)".into());
                }
                _ => return Err(os_err("mq_receive", e)),
            }
        }
    }
}

fn link(tx: Option<Mqd>, rx: Option<Mqd>, job: &Job) -> MqLink {
    MqLink {
        tx,
        rx,
        deadline: deadline_after(job.limit()),
        out: AlignedBuf::new(job.size),
        inp: AlignedBuf::new(job.size),
    }
}

struct MqEnd {
    tx: Option<Mqd>,
    rx: Option<Mqd>,
    names: Names,
}

impl ParentEnd for MqEnd {
    fn run(&mut self, job: &Job) -> Result<ParentResult, String> {
        // The peer has opened both queues: the names can go.
        for n in self.names.0.drain(..) {
            // SAFETY: `n` is a NUL-terminated name.
            unsafe { libc::mq_unlink(n.as_ptr()) };
        }
        let mut l = link(self.tx.take(), self.rx.take(), job);
        harness::drive(&mut l, job)
    }
}

impl Transport for PosixMq {
    fn name(&self) -> &'static str {
        "mq"
    }

    fn about(&self) -> &'static str {
        "POSIX message queue (mq_timedsend/mq_timedreceive), queue depth min(msg_max, 10), one queue per direction"
    }

    fn prepare(&self, ctx: &Ctx, job: &Job) -> Result<Setup, Unavailable> {
        let mut names = Names(Vec::new());
        let a = ctx.unique("mq-a");
        let ca = cname(&a)?;
        let tx = create(&ca, job.size)?;
        names.0.push(ca);
        let mut args = json!({ "a": a, "b": null });
        let mut rx = None;
        if job.test == Test::Latency {
            let b = ctx.unique("mq-b");
            let cb = cname(&b)?;
            rx = Some(create(&cb, job.size)?);
            names.0.push(cb);
            args["b"] = json!(b);
        }
        Ok(Setup {
            args,
            pass: Vec::new(),
            end: Box::new(MqEnd {
                tx: Some(tx),
                rx,
                names,
            }),
        })
    }

    fn peer(&self, job: &Job, args: &Value, ready: &mut dyn FnMut()) -> Result<SideReport, String> {
        let rx = open(arg_str(args, "a")?)?;
        let tx = match args.get("b").and_then(Value::as_str) {
            Some(b) => Some(open(b)?),
            None => None,
        };
        ready();
        let mut l = link(tx, Some(rx), job);
        harness::serve(&mut l, job)
    }
}
