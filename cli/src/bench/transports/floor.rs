//! The machine's floor, measured in the same run as everything else:
//!
//! - `floor-spin`: two processes bounce one cache line of a shared memfd page: the parent
//!   stores an odd counter, the peer waits for it and stores the next even one, the parent
//!   waits for that. Nothing else (no ring, no indices, no copies): what any cross-core
//!   handoff costs at least. Timed per round trip exactly as the transports are.
//! - `floor-memcpy`: one process copying a message of each size between two 64-byte-aligned
//!   buffers (`copy_from_slice`, i.e. memcpy): the cost of the one copy a transport that
//!   copies in must make.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use super::{Ctx, Family, ParentEnd, Setup, Transport, Unavailable, arg_int, os_err};
use crate::bench::harness::{self, Job, ParentResult, SideReport, Test, burst_for};
use crate::bench::payload::AlignedBuf;
use crate::bench::sys::{self, Switches};

/// Value that ends the peer's loop.
const STOP: u64 = u64::MAX;
const PAGE: usize = 4096;

/// A shared mapping of one page of a memfd, unmapped on drop.
struct SharedPage {
    ptr: NonNull<u8>,
}

impl SharedPage {
    fn map(fd: &OwnedFd) -> Result<SharedPage, String> {
        // SAFETY: a fresh shared mapping of an fd we own; the kernel picks the address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_err("mmap", io::Error::last_os_error()));
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or("mmap returned null")?;
        Ok(SharedPage { ptr })
    }

    /// The word at offset 0 (the cache line both processes bounce).
    fn line(&self) -> &AtomicU64 {
        // SAFETY: the mapping is page aligned, PAGE bytes long and lives as long as `self`;
        // every access from either process goes through this atomic, so a peer's writes are
        // only ever seen as some u64 value, which the loops check.
        unsafe { &*self.ptr.as_ptr().cast::<AtomicU64>() }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`; no reference outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), PAGE) };
    }
}

fn memfd_page() -> Result<OwnedFd, String> {
    // SAFETY: the name is a NUL-terminated literal.
    let fd = unsafe { libc::memfd_create(c"shmring-bench-floor".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(os_err("memfd_create", io::Error::last_os_error()));
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ftruncate on the descriptor we own.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), PAGE as libc::off_t) } != 0 {
        return Err(os_err("ftruncate", io::Error::last_os_error()));
    }
    Ok(fd)
}

/// Spins until the line holds `want`; errors on a value that cannot occur, or when stuck.
#[inline]
fn wait_for(line: &AtomicU64, want: u64, mine: u64, limit: Instant) -> Result<(), String> {
    let mut spins = 0u32;
    loop {
        let v = line.load(Ordering::Acquire);
        if v == want {
            return Ok(());
        }
        if v != mine {
            return Err(format!(
                "cache-line ping-pong: expected {want} (or our own {mine}), found {v}"
            ));
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1 << 16) && Instant::now() > limit {
            return Err("cache-line ping-pong: the peer stopped answering".into());
        }
    }
}

/// The bare cache-line ping-pong.
pub struct SpinFloor;

struct SpinEnd {
    page: SharedPage,
}

impl ParentEnd for SpinEnd {
    fn run(&mut self, job: &Job) -> Result<ParentResult, String> {
        let line = self.page.line();
        let limit = Instant::now() + job.limit();
        // Round trip k: we store 2k+1, the peer answers 2k+2.
        let mut k = 0u64;
        let trip = |k: u64| -> Result<(), String> {
            line.store(2 * k + 1, Ordering::Release);
            wait_for(line, 2 * k + 2, 2 * k + 1, limit)
        };
        let warm_end = Instant::now() + job.warmup();
        while Instant::now() < warm_end {
            trip(k)?;
            k += 1;
        }
        let mut hist = harness::new_histogram();
        let sw0 = Switches::now();
        let t0 = Instant::now();
        let end = t0 + job.duration();
        let mut prev = t0;
        let mut n = 0u64;
        loop {
            trip(k)?;
            k += 1;
            n += 1;
            let now = Instant::now();
            hist.saturating_record((now - prev).as_nanos() as u64);
            prev = now;
            if now >= end {
                break;
            }
        }
        let sw = Switches::now().since(sw0);
        line.store(STOP, Ordering::Release);
        Ok(ParentResult {
            side: SideReport {
                msgs: n,
                elapsed_ns: (prev - t0).as_nanos() as u64,
                vcsw: sw.voluntary,
                ivcsw: sw.involuntary,
            },
            hist: Some(hist),
        })
    }
}

impl Transport for SpinFloor {
    fn name(&self) -> &'static str {
        "floor-spin"
    }

    fn about(&self) -> &'static str {
        "floor: one cache line of a shared memfd page bounced between the two processes by spinning (Acquire/Release); no ring"
    }

    fn family(&self) -> Family {
        Family::Floor
    }

    fn not_applicable(&self, test: Test, size: usize) -> Option<String> {
        if test == Test::Throughput {
            return Some(
                "the spin floor is a round trip; the throughput floor is floor-memcpy".into(),
            );
        }
        (size != 8).then(|| {
            "the spin floor moves one 8-byte word in one cache line; its 8 B figure is the floor for every size".into()
        })
    }

    fn prepare(&self, _ctx: &Ctx, _job: &Job) -> Result<Setup, Unavailable> {
        let fd = memfd_page()?;
        let page = SharedPage::map(&fd)?;
        sys::set_inheritable(fd.as_fd()).map_err(|e| os_err("fcntl", e))?;
        Ok(Setup {
            args: json!({ "fd": fd.as_raw_fd() }),
            pass: vec![fd],
            end: Box::new(SpinEnd { page }),
        })
    }

    fn peer(&self, job: &Job, args: &Value, ready: &mut dyn FnMut()) -> Result<SideReport, String> {
        let fd = sys::claim_inherited(arg_int(args, "fd")?)?;
        let page = SharedPage::map(&fd)?;
        let line = page.line();
        let limit = Instant::now() + job.limit();
        ready();
        let sw0 = Switches::now();
        let t0 = Instant::now();
        let mut k = 0u64;
        let mut spins = 0u32;
        loop {
            let v = line.load(Ordering::Acquire);
            if v == 2 * k + 1 {
                line.store(2 * k + 2, Ordering::Release);
                k += 1;
                continue;
            }
            if v == STOP {
                break;
            }
            if v != 2 * k {
                return Err(format!(
                    "cache-line ping-pong: expected {} (or our own {}), found {v}",
                    2 * k + 1,
                    2 * k
                ));
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1 << 16) && Instant::now() > limit {
                return Err("cache-line ping-pong: the parent stopped answering".into());
            }
        }
        let sw = Switches::now().since(sw0);
        Ok(SideReport {
            msgs: k,
            elapsed_ns: t0.elapsed().as_nanos() as u64,
            vcsw: sw.voluntary,
            ivcsw: sw.involuntary,
        })
    }
}

/// memcpy bandwidth per message size, to a destination `offset` bytes past a cache line.
pub struct MemcpyFloor {
    name: &'static str,
    about: &'static str,
    offset: usize,
}

pub static MEMCPY: MemcpyFloor = MemcpyFloor {
    name: "floor-memcpy",
    about: "floor: memcpy of one message in one process, source and destination 64-byte aligned (the copy a copying transport makes at least once)",
    offset: 0,
};
pub static MEMCPY_PLUS_8: MemcpyFloor = MemcpyFloor {
    name: "floor-memcpy+8",
    about: "memcpy as floor-memcpy but to a destination 8 bytes past a 64-byte line, where a payload behind an 8-byte record header lands (for comparison; ratios use floor-memcpy)",
    offset: 8,
};

impl Transport for MemcpyFloor {
    fn name(&self) -> &'static str {
        self.name
    }

    fn about(&self) -> &'static str {
        self.about
    }

    fn family(&self) -> Family {
        Family::Floor
    }

    fn not_applicable(&self, test: Test, _size: usize) -> Option<String> {
        (test == Test::Latency)
            .then(|| "memcpy has no round trip; the latency floor is floor-spin".into())
    }

    fn in_process(&self, job: &Job) -> Option<Result<ParentResult, String>> {
        let size = job.size;
        let src = {
            let mut b = AlignedBuf::new(size);
            for (i, x) in b.bytes_mut().iter_mut().enumerate() {
                *x = i as u8;
            }
            b
        };
        let mut dst = AlignedBuf::new(size + self.offset);
        let off = self.offset;
        let burst = burst_for(size);
        let mut copy = |n: u64| {
            for _ in 0..n {
                let s = std::hint::black_box(src.bytes());
                dst.bytes_mut()[off..].copy_from_slice(s);
                std::hint::black_box(dst.bytes_mut());
            }
        };
        let warm_end = Instant::now() + job.warmup();
        while Instant::now() < warm_end {
            copy(burst);
        }
        let sw0 = Switches::now();
        let t0 = Instant::now();
        let end = t0 + job.duration();
        let mut n = 0u64;
        loop {
            copy(burst);
            n += burst;
            if Instant::now() >= end {
                break;
            }
        }
        let elapsed = t0.elapsed();
        let sw = Switches::now().since(sw0);
        Some(Ok(ParentResult {
            side: SideReport {
                msgs: n,
                elapsed_ns: elapsed.as_nanos() as u64,
                vcsw: sw.voluntary,
                ivcsw: sw.involuntary,
            },
            hist: None,
        }))
    }

    fn prepare(&self, _ctx: &Ctx, _job: &Job) -> Result<Setup, Unavailable> {
        Err(Unavailable::Failed("floor-memcpy runs in-process".into()))
    }

    fn peer(&self, _: &Job, _: &Value, _: &mut dyn FnMut()) -> Result<SideReport, String> {
        Err("floor-memcpy has no peer".into())
    }
}
