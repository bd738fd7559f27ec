//! Rings in shared memory: the object (named POSIX shm or memfd), its header page and endpoint
//! table, the liveness of the processes in it, and a read-only report.
//!
//! The rings use this module through four calls ([`create`], [`open`], [`open_fd`] and the
//! [`Mapped`] they return) and through the [`Registry`] and
//! [`Backing`] traits of the storage seam. The header's words are std atomics (they live in
//! memory other processes write, and are not part of any loom model); under `--cfg loom`
//! this module still compiles, but refuses to create or open anything, as loom's atomics
//! cannot be placed in a mapping.
//!
//! The endpoint registry protocol (`registry`) is written once, over any table and liveness
//! token: the header's table with OFD locks (`endpoints`), and a table on the seam's atomics
//! with a token word ([`ModelRegistry`], `model`), which is how the loom models check it.

mod census;
mod endpoints;
#[cfg(feature = "shared_memory")]
mod foreign;
mod inspect;
mod layout;
mod local;
mod lock;
mod model;
mod open;
mod peer;
mod registry;
mod segment;
mod sigbus;
mod stale;

pub use census::Traffic;
pub use inspect::{EndpointInfo, EndpointState, RingInfo, RingKind, inspect};
pub(crate) use local::{LocalEnds, ends_of};
pub(crate) use model::ModelRegistry;
pub(crate) use open::{FdTrust, Mapped, Place, create, open_fd, open_with};
pub use segment::{MAX_NAME_LEN, unlink, validate_name};
pub use stale::{is_stale, unlink_if_stale};
#[cfg(feature = "shared_memory")]
pub(crate) use {foreign::segment as foreign_segment, open::open_segment};
