//! Ring configuration: one builder per ring kind, whose setters say their units; and how to
//! open a named ring.

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

/// How the `open_with` calls of every handle ([`spsc::Producer::open_with`],
/// [`spsc::Consumer::open_with`], [`mpmc::Sender::open_with`], [`mpmc::Receiver::open_with`])
/// open a named ring. `open(name)` uses the default; `open_timeout(name, t)` the default with
/// a [`timeout`](OpenOptions::timeout).
///
/// By default a ring is opened only if this process can trust it not to be truncated or
/// rewritten by a third party: the object must be owned by this process's effective user and
/// give no write permission to its group or to others (`mode & 0o022 == 0`), else opening
/// fails with [`OpenError::Untrusted`]. [`allow_other_users`](OpenOptions::allow_other_users)
/// lifts that. A name that is a symbolic link is always refused (`O_NOFOLLOW`), and so is an
/// object that is not a regular file.
///
/// [`spsc::Producer::open_with`]: crate::spsc::Producer::open_with
/// [`spsc::Consumer::open_with`]: crate::spsc::Consumer::open_with
/// [`mpmc::Sender::open_with`]: crate::mpmc::Sender::open_with
/// [`mpmc::Receiver::open_with`]: crate::mpmc::Receiver::open_with
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
/// use std::time::Duration;
/// use shmring::{spsc, OpenOptions};
/// let name = format!("/shmring-doc-open-with-{}", std::process::id());
/// let _tx = spsc::Producer::create(&name, spsc::Config::default())?;
/// // Made group-writable (as `Config::mode(0o660)` would with a umask that lets it through).
/// let mode = std::fs::Permissions::from_mode(0o660);
/// std::fs::set_permissions(format!("/dev/shm{name}"), mode)?;
/// // Refused unless other users are trusted too.
/// assert!(matches!(
///     spsc::Consumer::open(&name),
///     Err(shmring::OpenError::Untrusted { .. })
/// ));
/// let options = OpenOptions::default()
///     .allow_other_users(true)
///     .timeout(Duration::from_secs(1));
/// let rx = spsc::Consumer::open_with(&name, options)?;
/// shmring::unlink(&name)?;
/// # drop(rx);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    pub(crate) allow_other_users: bool,
    pub(crate) timeout: Option<std::time::Duration>,
}

impl OpenOptions {
    /// Whether to open an object owned by another user, or that users other than its owner
    /// may write (group or others write permission). Any of them can then truncate the ring
    /// (survived: it is reported as corruption) or write garbage into it. Default: `false`.
    pub fn allow_other_users(mut self, allow: bool) -> Self {
        self.allow_other_users = allow;
        self
    }

    /// How long to wait for the ring to be created if it does not exist yet (for a process
    /// that may start before its peer). Default: not at all (`NotFound` at once).
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}
