//! # shmring
//!
//! Lock-free message rings in POSIX shared memory, for processes on one Linux host.
//!
//! A producer process and a consumer process exchange variable-length messages through a
//! bounded ring laid out in a shared-memory object. The fast path makes no system call: the
//! producer writes a record and publishes it with one Release store, the consumer reads it in
//! place. A side that has nothing to do spins briefly and then sleeps on a futex; the other
//! side enters the kernel to wake it only if it announced that it sleeps. Closing either end
//! (or dying) gives the other end pipe-like errors: end of stream or broken pipe.
//!
//! ```
//! use shmring::spsc;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let name = format!("/shmring-doc-{}", std::process::id());
//! let mut tx = spsc::Producer::create(&name, shmring::spsc::Config::default().capacity_bytes(1 << 16))?;
//!
//! // The consumer normally lives in another process; it opens the ring by name.
//! let child = std::thread::spawn({
//!     let name = name.clone();
//!     move || -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
//!         let mut rx = spsc::Consumer::open(&name)?;
//!         let mut sum = 0;
//!         for msg in rx.iter() {                   // ends at end of stream
//!             let msg = msg?;                       // corruption is an error, not the end
//!             let mut word = [0u8; 8];
//!             word.copy_from_slice(&msg[..8]);
//!             sum += u64::from_le_bytes(word);
//!         }
//!         Ok(sum)
//!     }
//! });
//!
//! for i in 1..=100u64 {
//!     tx.send(&i.to_le_bytes())?;                // blocks while the ring is full
//! }
//! let mut grant = tx.reserve(8)?;                 // or write in place
//! grant.copy_from_slice(&1000u64.to_le_bytes());
//! grant.commit(8)?;
//! drop(tx);                                       // end of stream
//!
//! assert_eq!(child.join().unwrap().unwrap(), 5050 + 1000);
//! shmring::unlink(&name)?;
//! # Ok(())
//! # }
//! ```
//!
//! See the `spsc` module for the algorithm and its guarantees, the `mpmc` module for rings
//! with any number of senders and receivers (in any number of processes, surviving the crash
//! of any of them), and `examples/` for real processes. Linux only.

#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(any(target_os = "linux", target_os = "android")))]
compile_error!("shmring supports Linux only (it needs futex, memfd and /proc)");

/// The README's examples, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

mod config;
mod endpoint;
mod error;
mod geometry;
mod mutant;
mod shm;
mod storage;
mod sync;

pub mod evented;
#[cfg(feature = "shared_memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "shared_memory")))]
pub mod interop;
pub mod io;
pub mod mpmc;
pub mod spsc;
#[cfg(feature = "bytemuck")]
#[cfg_attr(docsrs, doc(cfg(feature = "bytemuck")))]
pub mod typed;

pub use config::OpenOptions;
pub use error::{
    CommitError, Corruption, OpenError, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};
pub use shm::{
    EndpointInfo, EndpointState, MAX_NAME_LEN, RingInfo, RingKind, Traffic, inspect, is_stale,
    unlink, unlink_if_stale, validate_name,
};
pub use sync::waiter::{WaitStats, WaitStrategy};
