//! Rings inside a [`shared_memory::Shmem`] mapping that a program already has (cargo feature
//! `shared_memory`).
//!
//! A program that shares memory with the `shared_memory` crate can put a ring in it instead
//! of creating a shmring object: [`spsc::Producer::create_in`](crate::spsc::Producer::create_in)
//! (and `Consumer::create_in`, `mpmc::Sender::create_in`, `mpmc::Receiver::create_in`) lays
//! a ring out at the start of the `Shmem` it is given, and the other processes, having
//! opened the same `Shmem` by its `os_id`, attach with `open_in`. The handles are the usual
//! ones: sending, receiving, blocking, closing and the typed calls behave exactly as for a
//! named ring. Size the `Shmem` with [`spsc_mapping_len`] / [`mpmc_mapping_len`].
//!
//! ```
//! use shared_memory::ShmemConf;
//! use shmring::{interop, spsc};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = spsc::Config::default().capacity_bytes(1 << 16);
//! let shmem = ShmemConf::new().size(interop::spsc_mapping_len(&config)?).create()?;
//! let os_id = shmem.get_os_id().to_owned();
//! let mut rx = spsc::Consumer::create_in(shmem, config)?;
//!
//! // Another process opens the Shmem by its os_id and attaches.
//! let mut tx = spsc::Producer::open_in(ShmemConf::new().os_id(&os_id).open()?)?;
//! tx.send(b"through a Shmem")?;
//! assert_eq!(&*rx.recv()?, b"through a Shmem");
//! # Ok(())
//! # }
//! ```
//!
//! # What is checked
//!
//! The mapping must start on a page boundary and be large enough for the ring: a mapping too
//! small is [`OpenError::TooSmall`] (also when opening: the ring's geometry is validated
//! against the mapping as for any ring). Creating refuses a mapping that already holds a
//! ring ([`OpenError::AlreadyExists`]); otherwise it overwrites the first
//! `*_mapping_len` bytes, whatever they held, and reserves them (`fallocate`), so that a
//! full `/dev/shm` is [`OpenError::NoSpace`] at once rather than a `SIGBUS` later. Opening
//! validates the header, the layout version, the kind and the geometry before it trusts
//! anything, exactly as opening by name does.
//!
//! # Limits, and why
//!
//! - **No sealing.** A `Shmem` is a named POSIX object (`shm_open`), which cannot be sealed
//!   against resizing: any process allowed to open it read-write can truncate it. As for a
//!   named ring, the mapping is registered with shmring's `SIGBUS` guard, so truncation is
//!   survived and reported as `Corrupted` ([`Corruption::is_truncation`](crate::Corruption::is_truncation)),
//!   never a crash. The anonymous rings (`create_anonymous`, a sealed memfd) are the ones
//!   nobody can resize.
//! - **No descriptor to pass.** `shared_memory` keeps its descriptor to itself, and the object
//!   is reached by its `os_id`, so such a ring cannot be handed over with `SCM_RIGHTS` or
//!   attached with `from_fd`; other processes open the `Shmem` by name. shmring opens the
//!   object once more by that name for a descriptor of its own (for the liveness locks, below),
//!   under the same rules as opening a named ring: the object must belong to this user and
//!   not be writable by others (otherwise [`OpenError::Untrusted`]), and the mapping must be
//!   of that very object (checked in `/proc/self/maps`: device, inode, offset 0), since the
//!   name could meanwhile name another one. So the object's name must still exist when a
//!   handle is made: the `Shmem` that created it (its *owner*) removes it when dropped.
//! - **Liveness is the same as for named rings**: every endpoint holds its OFD lock on that
//!   descriptor, so a peer that dies, however it dies, is noticed within a wait slice, and
//!   MPMC slots a dead endpoint held are recovered. The lock is tied to the object, not to
//!   the name: it keeps working after the name is removed.
//! - **The `Shmem` lives as long as the ring's handles.** It is moved into the ring and
//!   dropped with the last handle of this process (MPMC clones share it); dropping the
//!   owner's `Shmem` unmaps it and removes the object's name, as `shared_memory` always does.
//!   Other processes keep their mappings.
//! - **The mapping is `shared_memory`'s.** `ShmemConf::open` maps the whole object, as large
//!   as it is by then: a peer that grows the object (sparsely, at no cost to itself) makes
//!   every later opener map all of it, before shmring is handed the `Shmem`. A ring opened by
//!   name or descriptor maps only the ring its header describes, whatever the object's size.
//!
//! [`OpenError::TooSmall`]: crate::OpenError::TooSmall
//! [`OpenError::AlreadyExists`]: crate::OpenError::AlreadyExists
//! [`OpenError::NoSpace`]: crate::OpenError::NoSpace
//! [`OpenError::Untrusted`]: crate::OpenError::Untrusted

pub use shared_memory::Shmem;

use crate::error::OpenError;

/// Bytes a `Shmem` needs to hold an SPSC ring made as `config` says (the header page, the
/// control block and the data region, rounded up to whole pages).
///
/// # Errors
/// [`OpenError::InvalidConfig`] when `config` describes no
/// valid ring.
///
/// ```
/// let config = shmring::spsc::Config::default().capacity_bytes(1 << 20);
/// assert!(shmring::interop::spsc_mapping_len(&config)? > 1 << 20);
/// # Ok::<(), shmring::OpenError>(())
/// ```
pub fn spsc_mapping_len(config: &crate::spsc::Config) -> Result<usize, OpenError> {
    crate::spsc::interop::mapping_len(config)
}

/// Bytes a `Shmem` needs to hold an MPMC ring made as `config` says.
///
/// # Errors
/// [`OpenError::InvalidConfig`] when `config` describes no
/// valid ring.
///
/// ```
/// let config = shmring::mpmc::Config::default().slots(128).max_message_bytes(240);
/// assert!(shmring::interop::mpmc_mapping_len(&config)? >= 128 * 256);
/// # Ok::<(), shmring::OpenError>(())
/// ```
pub fn mpmc_mapping_len(config: &crate::mpmc::Config) -> Result<usize, OpenError> {
    crate::mpmc::interop::mapping_len(config)
}
