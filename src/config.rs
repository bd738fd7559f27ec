//! Ring configuration: one builder per ring kind, whose setters say their units.

use crate::error::OpenError;
use crate::geometry::{MAX_ENDPOINTS, SLOT_HEADER, check_mpmc, check_spsc, max_message_for};
use crate::sync::waiter::WaitStrategy;

/// How to build an SPSC ring ([`shmring::spsc::Config`](crate::spsc::Config)). Start from
/// `Config::default()` and adjust:
///
/// ```
/// use shmring::{WaitStrategy, spsc};
/// let config = spsc::Config::default()
///     .capacity_bytes(1 << 20)        // data region, a power of two
///     .max_message_bytes(64 * 1024)   // refuse larger messages
///     .mode(0o600)                    // permissions of a named object
///     .wait_strategy(WaitStrategy::Adaptive);
/// let (mut tx, mut rx) = spsc::channel(&config)?;
/// assert_eq!(tx.capacity(), 1 << 20);
/// assert_eq!(rx.max_message(), 64 * 1024);
/// # Ok::<(), shmring::OpenError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpscConfig {
    pub(crate) capacity: usize,
    pub(crate) max_message: Option<usize>,
    pub(crate) mode: u32,
    pub(crate) wait_strategy: WaitStrategy,
}

impl Default for SpscConfig {
    /// 1 MiB of data region, the largest message the capacity allows, mode 0600, adaptive
    /// waiting.
    fn default() -> Self {
        SpscConfig {
            capacity: 1 << 20,
            max_message: None,
            mode: 0o600,
            wait_strategy: WaitStrategy::Adaptive,
        }
    }
}

impl SpscConfig {
    /// Size of the data region in bytes: a power of two, at least 32
    /// ([`spsc::MIN_CAPACITY`](crate::spsc::MIN_CAPACITY)).
    pub fn capacity_bytes(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Largest message payload the ring accepts, in bytes. Defaults to, and may not exceed,
    /// `capacity / 2 - 8` (so that a message always fits, wherever the ring's position is).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message = Some(bytes);
        self
    }

    /// Permission bits of a named object (default 0600: owner only).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How the creating handle waits when it must (default: spin briefly, then sleep).
    pub fn wait_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.wait_strategy = strategy;
        self
    }

    /// Validated geometry: (capacity, max message).
    pub(crate) fn spsc_geometry(&self) -> Result<(u64, u64), OpenError> {
        let cap = self.capacity as u64;
        let limit = max_message_for(self.capacity).min(u32::MAX as usize);
        let max = self.max_message.unwrap_or(limit) as u64;
        check_spsc(cap, max)
            .map_err(|c| OpenError::InvalidConfig(format!("{c} (capacity {cap} bytes)")))?;
        check_mode(self.mode)?;
        Ok((cap, max))
    }
}

/// How to build an MPMC ring ([`shmring::mpmc::Config`](crate::mpmc::Config)). Start from
/// `Config::default()` and adjust:
///
/// ```
/// use shmring::mpmc;
/// let config = mpmc::Config::default()
///     .slots(256)                 // messages in flight at most, a power of two
///     .max_message_bytes(200)     // payload per message
///     .endpoints(16);             // senders + receivers attached at once, at most
/// let (tx, _rx) = mpmc::channel(&config)?;
/// assert_eq!(tx.capacity(), 256);
/// assert_eq!(tx.max_message(), 200);
/// # Ok::<(), shmring::OpenError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MpmcConfig {
    pub(crate) slots: usize,
    pub(crate) max_message: usize,
    pub(crate) endpoints: usize,
    pub(crate) mode: u32,
    pub(crate) wait_strategy: WaitStrategy,
}

impl Default for MpmcConfig {
    /// 1024 slots for messages of up to 112 bytes (one 128-byte slot each), a registry of 64
    /// endpoints, mode 0600, adaptive waiting.
    fn default() -> Self {
        MpmcConfig {
            slots: 1024,
            max_message: 128 - SLOT_HEADER,
            endpoints: MAX_ENDPOINTS,
            mode: 0o600,
            wait_strategy: WaitStrategy::Adaptive,
        }
    }
}

impl MpmcConfig {
    /// Number of slots, that is of messages in flight at most: a power of two, at least 2.
    pub fn slots(mut self, slots: usize) -> Self {
        self.slots = slots;
        self
    }

    /// Largest message payload, in bytes (at most 16 MiB - 16). Each slot takes this plus a
    /// 16-byte header, rounded up to a multiple of 64 bytes (so every slot starts on a cache
    /// line): 48 bytes of payload fill one line.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// Entries of the endpoint registry (default and maximum 64, at least 2): how many
    /// senders and receivers may be attached at once, over all processes. Every handle,
    /// `try_clone`s included, takes one entry while it lives.
    pub fn endpoints(mut self, entries: usize) -> Self {
        self.endpoints = entries;
        self
    }

    /// Permission bits of a named object (default 0600: owner only).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How the creating handle waits when it must (default: spin briefly, then sleep).
    pub fn wait_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.wait_strategy = strategy;
        self
    }

    /// Validated geometry: (slots, slot size, max message, registry entries).
    pub(crate) fn mpmc_geometry(&self) -> Result<(u64, u32, u32, u32), OpenError> {
        let max_message = self.max_message;
        let slot_size = max_message
            .checked_add(SLOT_HEADER + 63)
            .map(|v| v / 64 * 64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                OpenError::InvalidConfig(format!("max message of {max_message} bytes is too large"))
            })?;
        let slots = self.slots as u64;
        check_mpmc(slots, slot_size, max_message as u32).map_err(|c| {
            OpenError::InvalidConfig(format!("{c} ({slots} slots of {slot_size} bytes)"))
        })?;
        if self.endpoints < 2 || self.endpoints > MAX_ENDPOINTS {
            return Err(OpenError::InvalidConfig(format!(
                "endpoint registry of {} entries: must lie in 2..=64",
                self.endpoints
            )));
        }
        check_mode(self.mode)?;
        Ok((slots, slot_size, max_message as u32, self.endpoints as u32))
    }
}

fn check_mode(mode: u32) -> Result<(), OpenError> {
    if mode & !0o777 != 0 {
        return Err(OpenError::InvalidConfig(format!(
            "mode {mode:o} has bits outside 0o777"
        )));
    }
    Ok(())
}
