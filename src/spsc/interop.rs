//! SPSC rings inside a `shared_memory::Shmem` (cargo feature `shared_memory`); see
//! [`interop`](crate::interop).

use super::ring::{CONSUMER_SLOT, PRODUCER_SLOT, Ring};
use super::{Config, Consumer, Producer};
use crate::error::OpenError;
use crate::geometry::SpscRules;
use crate::shm::{self, Place};
use crate::storage::{ROLE_CONSUMER, ROLE_PRODUCER};
use crate::sync::waiter::WaitStrategy;

/// Bytes a mapping needs for an SPSC ring made as `config` says.
pub(crate) fn mapping_len(config: &Config) -> Result<usize, OpenError> {
    let len = Ring::geometry(config)?.object_len();
    usize::try_from(len)
        .map_err(|_| OpenError::InvalidConfig(format!("{len} bytes do not fit in memory")))
}

/// Opens the ring in `shmem` for the endpoint `slot`.
fn attach(
    shmem: shared_memory::Shmem,
    slot: usize,
    role: u32,
    what: &'static str,
) -> Result<(Ring, crate::storage::Presence), OpenError> {
    let opened = shm::open_segment::<SpscRules>(shm::foreign_segment(shmem)?)?;
    Ring::attach(opened, slot, role, what)
}

impl Producer {
    /// Creates an SPSC ring inside `shmem`, a mapping made by the `shared_memory` crate, and
    /// returns its producer; the consumer opens the same `Shmem` (by its `os_id`) in another
    /// process and calls [`Consumer::open_in`]. The mapping must be at least
    /// [`interop::spsc_mapping_len`](crate::interop::spsc_mapping_len) bytes; its first that
    /// many bytes are overwritten. The handle keeps `shmem` alive: it is dropped (unmapped,
    /// and unlinked if it is the owner) with the last handle. See [`interop`](crate::interop)
    /// for what such a ring can and cannot do.
    ///
    /// # Errors
    /// [`OpenError::TooSmall`] for a mapping too small for `config`,
    /// [`OpenError::AlreadyExists`] if a ring is there already (or being created there),
    /// [`OpenError::Untrusted`] if the object is not this user's alone or the mapping is
    /// not the object its name now names; otherwise as [`create`](Producer::create).
    ///
    /// ```
    /// use shared_memory::ShmemConf;
    /// use shmring::{interop, spsc};
    /// let config = spsc::Config::default().capacity_bytes(1 << 16);
    /// let shmem = ShmemConf::new().size(interop::spsc_mapping_len(&config)?).create()?;
    /// let os_id = shmem.get_os_id().to_owned(); // what the other process opens
    /// let mut tx = spsc::Producer::create_in(shmem, config)?;
    ///
    /// // In the other process:
    /// let mut rx = spsc::Consumer::open_in(ShmemConf::new().os_id(&os_id).open()?)?;
    /// tx.send(b"hello")?;
    /// assert_eq!(&*rx.recv()?, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_in(
        shmem: shared_memory::Shmem,
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<Producer, OpenError> {
        let config = config.borrow();
        let seg = shm::foreign_segment(shmem)?;
        let (ring, presence) = Ring::create(
            Place::Foreign(seg),
            config,
            Some((PRODUCER_SLOT, ROLE_PRODUCER)),
        )?;
        Ok(Producer::new(ring, config.wait_strategy, presence))
    }

    /// Opens the producer end of the ring inside `shmem` (created with
    /// [`Consumer::create_in`]).
    ///
    /// # Errors
    /// As [`open`](Producer::open), and [`OpenError::Untrusted`] as for
    /// [`create_in`](Producer::create_in).
    pub fn open_in(shmem: shared_memory::Shmem) -> Result<Producer, OpenError> {
        let (ring, presence) = attach(shmem, PRODUCER_SLOT, ROLE_PRODUCER, "producer")?;
        Ok(Producer::new(ring, WaitStrategy::default(), Some(presence)))
    }
}

impl Consumer {
    /// Creates an SPSC ring inside `shmem` and returns its consumer; see
    /// [`Producer::create_in`].
    ///
    /// # Errors
    /// As [`Producer::create_in`].
    pub fn create_in(
        shmem: shared_memory::Shmem,
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<Consumer, OpenError> {
        let config = config.borrow();
        let seg = shm::foreign_segment(shmem)?;
        let (ring, presence) = Ring::create(
            Place::Foreign(seg),
            config,
            Some((CONSUMER_SLOT, ROLE_CONSUMER)),
        )?;
        Ok(Consumer::new(ring, config.wait_strategy, presence))
    }

    /// Opens the consumer end of the ring inside `shmem` (created with
    /// [`Producer::create_in`]).
    ///
    /// # Errors
    /// As [`open`](Consumer::open), and [`OpenError::Untrusted`] as for
    /// [`Producer::create_in`].
    pub fn open_in(shmem: shared_memory::Shmem) -> Result<Consumer, OpenError> {
        let (ring, presence) = attach(shmem, CONSUMER_SLOT, ROLE_CONSUMER, "consumer")?;
        Ok(Consumer::new(ring, WaitStrategy::default(), Some(presence)))
    }
}
