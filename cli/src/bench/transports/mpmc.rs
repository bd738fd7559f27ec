//! shmring MPMC ring used by one sender and one receiver: the fixed-slot Vyukov ring, with
//! `send` (copy in) and the `recv()` guard plus a copy out, adaptive waiting. A round trip
//! uses two rings. Names are removed once the peer has attached, and on any error.

use serde_json::{Value, json};
use shmring::WaitStrategy;
use shmring::mpmc::{Receiver, Sender};

use super::{Ctx, Family, ParentEnd, Setup, Transport, Unavailable, arg_str};
use crate::bench::harness::{self, Job, Link, ParentResult, SideReport, Test};
use crate::bench::payload::{AlignedBuf, stamp, verify};

/// The MPMC transport.
pub struct Mpmc;

/// Slot size for `size`-byte messages (16-byte slot header, 64-byte multiple), and a slot
/// count giving about 1 MiB of slots (at least 4).
fn geometry(size: usize) -> (usize, usize) {
    let slot = (size + 16).div_ceil(64) * 64;
    let slots = ((1usize << 20) / slot).max(4);
    let slots = if slots.is_power_of_two() {
        slots
    } else {
        slots.next_power_of_two() / 2
    };
    (slot, slots.max(4))
}

/// Names removed when dropped.
struct Names(Vec<String>);

impl Drop for Names {
    fn drop(&mut self) {
        for n in &self.0 {
            // Best effort: the name may already be gone.
            let _ = shmring::unlink(n);
        }
    }
}

struct MpmcLink {
    tx: Option<Sender>,
    rx: Option<Receiver>,
    out: AlignedBuf,
    inp: AlignedBuf,
}

impl Link for MpmcLink {
    #[inline]
    fn send(&mut self, word: u64, size: usize) -> Result<(), String> {
        let tx = self.tx.as_mut().ok_or("no sender on this side")?;
        let b = &mut self.out.bytes_mut()[..size];
        stamp(b, word);
        tx.send(b).map_err(|e| format!("send: {e}"))
    }

    #[inline]
    fn recv(&mut self, size: usize) -> Result<u64, String> {
        let rx = self.rx.as_mut().ok_or("no receiver on this side")?;
        let m = rx.recv().map_err(|e| format!("recv: {e}"))?;
        let n = m.len();
        if n != size {
            return Err(format!(
                "received a {n}-byte message, expected {size} bytes"
            ));
        }
        let dst = &mut self.inp.bytes_mut()[..n];
        dst.copy_from_slice(&m);
        drop(m);
        verify(dst, size)
    }
}

struct MpmcEnd {
    link: MpmcLink,
    names: Names,
}

impl ParentEnd for MpmcEnd {
    fn run(&mut self, job: &Job) -> Result<ParentResult, String> {
        for n in self.names.0.drain(..) {
            shmring::unlink(&n).map_err(|e| format!("unlink {n}: {e}"))?;
        }
        harness::drive(&mut self.link, job)
    }
}

impl Transport for Mpmc {
    fn name(&self) -> &'static str {
        "shmring-mpmc"
    }

    fn about(&self) -> &'static str {
        "MPMC ring (fixed slots, Vyukov) with one sender and one receiver, send/recv per message (copy in, copy out), adaptive"
    }

    fn family(&self) -> Family {
        Family::Shmring
    }

    fn prepare(&self, ctx: &Ctx, job: &Job) -> Result<Setup, Unavailable> {
        let (slot, slots) = geometry(job.size);
        let config = shmring::mpmc::Config::default()
            .slots(slots)
            .max_message_bytes(slot - 16)
            .endpoints(4)
            .wait_strategy(WaitStrategy::Adaptive);
        let mut names = Names(Vec::new());
        let a = ctx.unique("mpmc-a");
        let tx = Sender::create(&a, config).map_err(|e| format!("create {a}: {e}"))?;
        names.0.push(a.clone());
        let mut args = json!({ "a": a, "b": null });
        let mut rx = None;
        if job.test == Test::Latency {
            let b = ctx.unique("mpmc-b");
            rx = Some(Receiver::create(&b, config).map_err(|e| format!("create {b}: {e}"))?);
            names.0.push(b.clone());
            args["b"] = json!(b);
        }
        Ok(Setup {
            args,
            pass: Vec::new(),
            end: Box::new(MpmcEnd {
                link: MpmcLink {
                    tx: Some(tx),
                    rx,
                    out: AlignedBuf::new(job.size),
                    inp: AlignedBuf::new(job.size),
                },
                names,
            }),
        })
    }

    fn peer(&self, job: &Job, args: &Value, ready: &mut dyn FnMut()) -> Result<SideReport, String> {
        let a = arg_str(args, "a")?;
        let mut rx = Receiver::open(a).map_err(|e| format!("open {a}: {e}"))?;
        rx.set_wait_strategy(WaitStrategy::Adaptive);
        let tx = match args.get("b").and_then(Value::as_str) {
            Some(b) => {
                let mut tx = Sender::open(b).map_err(|e| format!("open {b}: {e}"))?;
                tx.set_wait_strategy(WaitStrategy::Adaptive);
                Some(tx)
            }
            None => None,
        };
        ready();
        let mut link = MpmcLink {
            tx,
            rx: Some(rx),
            out: AlignedBuf::new(job.size),
            inp: AlignedBuf::new(job.size),
        };
        harness::serve(&mut link, job)
    }
}
