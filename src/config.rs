//! Ring configuration.

use crate::error::OpenError;
use crate::sync::waiter::WaitStrategy;

/// How to build a ring. Start from `Config::default()` and adjust:
///
/// ```
/// use shmring::{Config, WaitStrategy};
/// let c = Config::default()
///     .capacity(1 << 20)        // bytes of data region (SPSC), a power of two
///     .max_message(64 * 1024)   // refuse larger messages
///     .mode(0o600)              // permissions of a named object
///     .wait_strategy(WaitStrategy::Adaptive);
/// assert_eq!(c.get_capacity(), 1 << 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub(crate) capacity: usize,
    pub(crate) max_message: Option<usize>,
    pub(crate) mode: u32,
    pub(crate) wait_strategy: WaitStrategy,
    pub(crate) slots: usize,
    pub(crate) slot_size: Option<usize>,
    pub(crate) endpoints: usize,
}

impl Default for Config {
    /// 1 MiB of data region, the largest message the capacity allows, mode 0600, adaptive
    /// waiting; for MPMC rings 1024 slots of 128 bytes and a registry of 64 endpoints.
    fn default() -> Self {
        Config {
            capacity: 1 << 20,
            max_message: None,
            mode: 0o600,
            wait_strategy: WaitStrategy::Adaptive,
            slots: 1024,
            slot_size: None,
            endpoints: crate::geometry::MAX_ENDPOINTS,
        }
    }
}

impl Config {
    /// Size of the data region in bytes (SPSC). Must be a power of two, at least 32.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Largest message the ring accepts. SPSC: defaults to, and may not exceed,
    /// `capacity / 2 - 8` bytes (so that a message always fits, whatever the ring's
    /// position). MPMC: defaults to, and may not exceed, the slot's payload
    /// (`slot_size - 16`).
    pub fn max_message(mut self, bytes: usize) -> Self {
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

    /// The configured capacity.
    pub fn get_capacity(&self) -> usize {
        self.capacity
    }

    /// Number of slots of an MPMC ring (default 1024). Must be a power of two, at least 2.
    /// SPSC rings ignore it (they use [`capacity`](Config::capacity)).
    ///
    /// ```
    /// let c = shmring::Config::default().slots(64).slot_size(256);
    /// assert_eq!(c.get_slots(), 64);
    /// ```
    pub fn slots(mut self, slots: usize) -> Self {
        self.slots = slots;
        self
    }

    /// Bytes per slot of an MPMC ring, its 16-byte slot header included: a multiple of 64 (so
    /// every slot starts on a cache line), at least 64, at most 16 MiB. A message may hold up
    /// to `slot_size - 16` bytes. Default: the smallest multiple of 64 that holds
    /// [`max_message`](Config::max_message) if that is set, else 128.
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = Some(bytes);
        self
    }

    /// Entries of an MPMC ring's endpoint registry (default and maximum 64, at least 2): how
    /// many senders and receivers may be attached at once, over all processes. Every handle,
    /// clones included, takes one entry while it lives.
    pub fn endpoints(mut self, entries: usize) -> Self {
        self.endpoints = entries;
        self
    }

    /// The configured number of MPMC slots.
    pub fn get_slots(&self) -> usize {
        self.slots
    }

    /// Validated MPMC geometry: (slots, slot size, max message, registry entries).
    pub(crate) fn mpmc_geometry(&self) -> Result<(u64, u32, u32, u32), OpenError> {
        let slot_size = match (self.slot_size, self.max_message) {
            (Some(s), _) => s,
            (None, Some(m)) => m
                .checked_add(crate::geometry::SLOT_HEADER + 63)
                .map_or(usize::MAX, |v| v / 64 * 64),
            (None, None) => 128,
        };
        let slot_size = u32::try_from(slot_size)
            .map_err(|_| OpenError::InvalidConfig(format!("slot size {slot_size} is too large")))?;
        let payload = (slot_size as usize).saturating_sub(crate::geometry::SLOT_HEADER);
        let max_message = self.max_message.unwrap_or(payload);
        if max_message > payload {
            return Err(OpenError::InvalidConfig(format!(
                "max message {max_message} does not fit in a slot of {slot_size} bytes \
                 (the slot header takes 16 bytes)"
            )));
        }
        let slots = self.slots as u64;
        crate::geometry::check_mpmc(slots, slot_size, max_message as u32).map_err(|c| {
            OpenError::InvalidConfig(format!("{c} ({slots} slots of {slot_size} bytes)"))
        })?;
        if self.endpoints < 2 || self.endpoints > crate::geometry::MAX_ENDPOINTS {
            return Err(OpenError::InvalidConfig(format!(
                "endpoint registry of {} entries: must lie in 2..=64",
                self.endpoints
            )));
        }
        if self.mode & !0o777 != 0 {
            return Err(OpenError::InvalidConfig(format!(
                "mode {:o} has bits outside 0o777",
                self.mode
            )));
        }
        Ok((slots, slot_size, max_message as u32, self.endpoints as u32))
    }

    /// Validated SPSC geometry: (capacity, max message).
    pub(crate) fn spsc_geometry(&self) -> Result<(u64, u64), OpenError> {
        let cap = self.capacity as u64;
        let limit = crate::geometry::max_message_for(self.capacity).min(u32::MAX as usize);
        let max = self.max_message.unwrap_or(limit) as u64;
        crate::geometry::check_spsc(cap, max)
            .map_err(|c| OpenError::InvalidConfig(format!("{c} (capacity {cap} bytes)")))?;
        if self.mode & !0o777 != 0 {
            return Err(OpenError::InvalidConfig(format!(
                "mode {:o} has bits outside 0o777",
                self.mode
            )));
        }
        Ok((cap, max))
    }
}
