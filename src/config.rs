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
}

impl Default for Config {
    /// 1 MiB of data region, the largest message the capacity allows, mode 0600, adaptive
    /// waiting.
    fn default() -> Self {
        Config {
            capacity: 1 << 20,
            max_message: None,
            mode: 0o600,
            wait_strategy: WaitStrategy::Adaptive,
        }
    }
}

impl Config {
    /// Size of the data region in bytes (SPSC). Must be a power of two, at least 32.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Largest message the ring accepts. Defaults to, and may not exceed,
    /// `capacity / 2 - 8` bytes (so that a message always fits, whatever the ring's
    /// position).
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

    /// Validated SPSC geometry: (capacity, max message).
    pub(crate) fn spsc_geometry(&self) -> Result<(u64, u64), OpenError> {
        let cap = self.capacity as u64;
        let limit = crate::spsc::max_message_for(self.capacity).min(u32::MAX as usize);
        let max = self.max_message.unwrap_or(limit) as u64;
        crate::spsc::check_geometry(cap, max)
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
