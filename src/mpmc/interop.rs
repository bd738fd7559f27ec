//! MPMC rings inside a `shared_memory::Shmem` (cargo feature `shared_memory`); see
//! [`interop`](crate::interop).

use super::handle::Handle;
use super::ring::{Role, geometry};
use super::{Config, Receiver, Sender};
use crate::error::OpenError;
use crate::geometry::MpmcRules;
use crate::shm::{self, Place};

/// Bytes a mapping needs for an MPMC ring made as `config` says.
pub(crate) fn mapping_len(config: &Config) -> Result<usize, OpenError> {
    let len = geometry(config)?.object_len();
    usize::try_from(len)
        .map_err(|_| OpenError::InvalidConfig(format!("{len} bytes do not fit in memory")))
}

fn create(shmem: shared_memory::Shmem, config: &Config, role: Role) -> Result<Handle, OpenError> {
    Handle::create(Place::Foreign(shm::foreign_segment(shmem)?), config, role)
}

fn attach(shmem: shared_memory::Shmem, role: Role) -> Result<Handle, OpenError> {
    let opened = shm::open_segment::<MpmcRules>(shm::foreign_segment(shmem)?)?;
    Handle::attach(opened, role)
}

impl Sender {
    /// Creates an MPMC ring inside `shmem`, a mapping made by the `shared_memory` crate, and
    /// returns a sender of it; other processes open the same `Shmem` (by its `os_id`) and
    /// call [`Sender::open_in`] or [`Receiver::open_in`]. The mapping must be at least
    /// [`interop::mpmc_mapping_len`](crate::interop::mpmc_mapping_len) bytes; its first that
    /// many bytes are overwritten. Handles keep `shmem` alive (a [`try_clone`](Sender::try_clone)
    /// shares it). See [`interop`](crate::interop) for what such a ring can and cannot do.
    ///
    /// # Errors
    /// As [`spsc::Producer::create_in`](crate::spsc::Producer::create_in).
    ///
    /// ```
    /// use shared_memory::ShmemConf;
    /// use shmring::{interop, mpmc};
    /// let config = mpmc::Config::default().slots(64);
    /// let shmem = ShmemConf::new().size(interop::mpmc_mapping_len(&config)?).create()?;
    /// let os_id = shmem.get_os_id().to_owned();
    /// let mut tx = mpmc::Sender::create_in(shmem, config)?;
    /// let mut rx = mpmc::Receiver::open_in(ShmemConf::new().os_id(&os_id).open()?)?;
    /// tx.send(b"job")?;
    /// assert_eq!(&*rx.recv()?, b"job");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_in(
        shmem: shared_memory::Shmem,
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<Sender, OpenError> {
        Ok(Sender {
            h: create(shmem, config.borrow(), Role::Sender)?,
        })
    }

    /// Attaches a new sender to the ring inside `shmem`.
    ///
    /// # Errors
    /// As [`open`](Sender::open), and [`OpenError::Untrusted`] as for
    /// [`create_in`](Sender::create_in).
    pub fn open_in(shmem: shared_memory::Shmem) -> Result<Sender, OpenError> {
        Ok(Sender {
            h: attach(shmem, Role::Sender)?,
        })
    }
}

impl Receiver {
    /// Creates an MPMC ring inside `shmem` and returns a receiver of it; see
    /// [`Sender::create_in`].
    ///
    /// # Errors
    /// As [`Sender::create_in`].
    pub fn create_in(
        shmem: shared_memory::Shmem,
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<Receiver, OpenError> {
        Ok(Receiver {
            h: create(shmem, config.borrow(), Role::Receiver)?,
        })
    }

    /// Attaches a new receiver to the ring inside `shmem`.
    ///
    /// # Errors
    /// As [`open`](Receiver::open), and [`OpenError::Untrusted`] as for
    /// [`Sender::create_in`].
    pub fn open_in(shmem: shared_memory::Shmem) -> Result<Receiver, OpenError> {
        Ok(Receiver {
            h: attach(shmem, Role::Receiver)?,
        })
    }
}
