//! Typed messages: plain-old-data values and slices of them, sent and received by value or
//! written and read in place (cargo feature `bytemuck`).
//!
//! A message of either ring kind is a run of bytes. For a type `T:`[`Pod`] (any bit pattern is
//! a valid `T`, no padding, no pointers: see [`bytemuck::Pod`]) those bytes *are* a `T`, so
//! the handles gain typed calls with the same names on both ring kinds:
//!
//! | sending (`spsc::Producer`, `mpmc::Sender`) | receiving (`spsc::Message`, `mpmc::Message`) |
//! |---|---|
//! | `send_value(&T)`, `try_send_value`, `send_value_timeout`: copy one value in | `read_value::<T>()`: copy one value out (volatile reads, any alignment) |
//! | `send_values(&[T])`, `try_send_values`: copy a slice in | `read_values::<T>()`: copy a slice out into a `Vec<T>` |
//! | `reserve_value::<T>()`: a zeroed `T` in the ring, written in place, [`ValueGrant::commit`] | `as_value::<T>()`: a `&T` in place |
//! | `reserve_values::<T>(n)`: `n` zeroed values in place, [`ValuesGrant::commit`] | `as_values::<T>()`: a `&[T]` in place |
//!
//! `Pod` is what makes this sound between processes: a peer that crashed half-way through a
//! write, or that writes garbage on purpose, can only ever leave some bit pattern behind,
//! and every bit pattern is a `T`. The ring never reads these bytes itself.
//!
//! # Size and alignment
//!
//! Every call that views a message as `T` checks its length first (exactly `size_of::<T>()`
//! bytes for a value, a whole multiple of it for a slice) and returns
//! [`TypedError::Size`] otherwise. Calls that work in place also check the *actual address*
//! of the payload against `align_of::<T>()` and return [`TypedError::Alignment`] when it
//! does not fit. How payloads are aligned is a property of the ring's record format, not a
//! promise of this API: today an SPSC payload follows an 8-byte record header (so it is
//! 8-byte aligned) and an MPMC payload starts 16 bytes into a 64-byte aligned slot (16-byte
//! aligned). Types aligned to at most 8 bytes — integers, floats, `#[repr(C)]` structs of
//! them — therefore work in place on both kinds. For a type with a larger alignment, use
//! the copying calls (`send_value` and `read_value` never care about alignment), or be ready
//! for `Alignment`.
//!
//! # Reading in place from a peer you do not trust
//!
//! `as_value` and `as_values` lend out the message's bytes where they lie, in memory the
//! other process can still write (see "Reading a message from a peer you do not trust" on
//! [`spsc::Message`](crate::spsc::Message)). A `T` cannot become invalid that way, but a
//! field you checked may differ when you use it. With a peer you do not trust, take a
//! snapshot with `read_value` / `read_values` (volatile reads into memory you own) and check
//! and use that.
//!
//! ```
//! use shmring::spsc;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut tx, mut rx) = spsc::channel(&spsc::Config::default())?;
//!
//! tx.send_value(&[1.5f64, 2.5])?;                  // any Pod: arrays, integers, derived structs
//! let mut g = tx.reserve_value::<[u32; 4]>()?;     // a zeroed value in the ring...
//! g[2] = 7;                                        // ...written in place...
//! g.commit()?;                                     // ...and published
//!
//! assert_eq!(rx.recv()?.read_value::<[f64; 2]>()?, [1.5, 2.5]);
//! let msg = rx.recv()?;
//! let v: &[u32; 4] = msg.as_value()?;              // read in place: size and alignment checked
//! assert_eq!(v, &[0, 0, 7, 0]);
//! assert!(msg.as_value::<u64>().is_err());         // 16 bytes are not one u64
//! assert_eq!(msg.as_values::<u64>()?.len(), 2);    // but they are two
//! # Ok(())
//! # }
//! ```

mod recv;
mod send;

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

pub use bytemuck::{Pod, Zeroable};

use crate::error::CommitError;

/// Why a message cannot be viewed as a `T` or a `[T]`. (A zero-sized `T` never fits: it
/// carries nothing.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypedError {
    /// The message's length does not fit the type: it is not `size_of::<T>()` (one value)
    /// or not a whole multiple of it (a slice).
    #[error("a message of {len} bytes does not hold {} of {size} bytes", if *.slice { "whole values" } else { "exactly one value" })]
    Size {
        /// The message's length in bytes.
        len: usize,
        /// `size_of::<T>()`.
        size: usize,
        /// Whether a slice (any number of values) was asked for.
        slice: bool,
    },
    /// The payload's address is not a multiple of `align_of::<T>()`, so it cannot be used
    /// in place as a `T` (copy it with `read_value` / `send_value` instead).
    #[error("payload at {addr:#x} is not aligned to {align} bytes")]
    Alignment {
        /// The payload's address.
        addr: usize,
        /// `align_of::<T>()`.
        align: usize,
    },
}

impl From<TypedError> for std::io::Error {
    fn from(e: TypedError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// Error of a typed reservation ([`reserve_value`](crate::spsc::Producer::reserve_value),
/// [`reserve_values`](crate::spsc::Producer::reserve_values) and their `try_` forms): the
/// reservation itself failed (`E` is the error the byte-level call returns), or it succeeded
/// but its payload cannot hold the type (the reserved room is given back unpublished).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReserveError<E> {
    /// The reservation failed: `E` says why, as for the byte-level call.
    #[error(transparent)]
    Send(E),
    /// The reserved payload cannot hold the type in place (see [`TypedError`]).
    #[error(transparent)]
    Typed(TypedError),
}

impl<E: Into<std::io::Error>> From<ReserveError<E>> for std::io::Error {
    fn from(e: ReserveError<E>) -> std::io::Error {
        match e {
            ReserveError::Send(e) => e.into(),
            ReserveError::Typed(e) => e.into(),
        }
    }
}

/// The bytes of `len` values of `T` (`None` when that is more than a `usize`).
fn bytes_for<T>(count: usize) -> Option<usize> {
    count.checked_mul(size_of::<T>())
}

/// Checks that `bytes` holds exactly one `T` (or, with `slice`, whole `T`s) and, with
/// `in_place`, that it starts at an address aligned for `T`.
fn check<T: Pod>(bytes: &[u8], slice: bool, in_place: bool) -> Result<(), TypedError> {
    let size = size_of::<T>();
    // A zero-sized type carries nothing: no message is one (or whole ones) of it.
    let fits = size != 0
        && if slice {
            bytes.len() % size == 0
        } else {
            bytes.len() == size
        };
    if !fits {
        return Err(TypedError::Size {
            len: bytes.len(),
            size,
            slice,
        });
    }
    let addr = bytes.as_ptr() as usize;
    let align = align_of::<T>();
    if in_place && addr % align != 0 {
        return Err(TypedError::Alignment { addr, align });
    }
    Ok(())
}

/// The part of a grant of bytes that typed grants need. Implemented by
/// [`spsc::Grant`](crate::spsc::Grant) and [`mpmc::Grant`](crate::mpmc::Grant) only
/// (sealed).
pub trait ByteGrant: DerefMut<Target = [u8]> + sealed::Sealed {
    /// Publishes the first `len` bytes, as the grant's own `commit`.
    ///
    /// # Errors
    /// As the grant's own `commit`.
    fn commit_bytes(self, len: usize) -> Result<(), CommitError>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::spsc::Grant<'_> {}
    impl Sealed for crate::mpmc::Grant<'_> {}
}

impl ByteGrant for crate::spsc::Grant<'_> {
    fn commit_bytes(self, len: usize) -> Result<(), CommitError> {
        self.commit(len)
    }
}

impl ByteGrant for crate::mpmc::Grant<'_> {
    fn commit_bytes(self, len: usize) -> Result<(), CommitError> {
        self.commit(len)
    }
}

/// Room for one `T` in the ring, zeroed and aligned for `T`, to be written in place. Derefs
/// to the `T`. Publish with [`commit`](ValueGrant::commit); dropping it publishes nothing,
/// as for the byte grant `G` it wraps.
#[must_use = "dropping a grant without `commit` publishes nothing"]
pub struct ValueGrant<G, T> {
    grant: G,
    _value: PhantomData<T>,
}

impl<G: ByteGrant, T: Pod> ValueGrant<G, T> {
    /// Checks `grant` (exactly `size_of::<T>()` bytes) and zeroes it.
    pub(crate) fn new(mut grant: G) -> Result<Self, TypedError> {
        check::<T>(&grant, false, true)?;
        grant.fill(0);
        Ok(ValueGrant {
            grant,
            _value: PhantomData,
        })
    }

    /// Publishes the value as one message of `size_of::<T>()` bytes.
    ///
    /// # Errors
    /// [`CommitError::Disconnected`] if the receiving side went away meanwhile (nothing is
    /// published).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// let mut g = tx.reserve_value::<u64>()?;
    /// *g = 42;
    /// g.commit()?;
    /// assert_eq!(*rx.recv()?.as_value::<u64>()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit(self) -> Result<(), CommitError> {
        self.grant.commit_bytes(size_of::<T>())
    }
}

impl<G: ByteGrant, T: Pod> Deref for ValueGrant<G, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Size and alignment were checked when the grant was made; the bytes do not move.
        bytemuck::from_bytes(&self.grant)
    }
}

impl<G: ByteGrant, T: Pod> DerefMut for ValueGrant<G, T> {
    fn deref_mut(&mut self) -> &mut T {
        bytemuck::from_bytes_mut(&mut self.grant)
    }
}

impl<G, T> fmt::Debug for ValueGrant<G, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueGrant")
            .field("type", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

/// Room for `n` values of `T` in the ring, zeroed and aligned for `T`, to be written in
/// place. Derefs to the `[T]`. Publish some or all of them with
/// [`commit`](ValuesGrant::commit); dropping it publishes nothing.
#[must_use = "dropping a grant without `commit` publishes nothing"]
pub struct ValuesGrant<G, T> {
    grant: G,
    _value: PhantomData<T>,
}

impl<G: ByteGrant, T: Pod> ValuesGrant<G, T> {
    /// Checks `grant` (whole `T`s) and zeroes it.
    pub(crate) fn new(mut grant: G) -> Result<Self, TypedError> {
        check::<T>(&grant, true, true)?;
        grant.fill(0);
        Ok(ValuesGrant {
            grant,
            _value: PhantomData,
        })
    }

    /// Publishes the first `count` values as one message of `count * size_of::<T>()` bytes.
    ///
    /// # Errors
    /// [`CommitError::TooLong`] (in bytes) if `count` exceeds the grant,
    /// [`CommitError::Disconnected`] if the receiving side went away meanwhile. Nothing is
    /// published in either case.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// let mut g = tx.reserve_values::<u32>(8)?;
    /// for (i, v) in g.iter_mut().enumerate().take(3) {
    ///     *v = i as u32 * 10;
    /// }
    /// g.commit(3)?;
    /// assert_eq!(rx.recv()?.as_values::<u32>()?, &[0, 10, 20]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit(self, count: usize) -> Result<(), CommitError> {
        let len = bytes_for::<T>(count).unwrap_or(usize::MAX);
        self.grant.commit_bytes(len)
    }
}

impl<G: ByteGrant, T: Pod> Deref for ValuesGrant<G, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // Whole values and alignment were checked when the grant was made.
        bytemuck::cast_slice(&self.grant)
    }
}

impl<G: ByteGrant, T: Pod> DerefMut for ValuesGrant<G, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        bytemuck::cast_slice_mut(&mut self.grant)
    }
}

impl<G: ByteGrant, T> fmt::Debug for ValuesGrant<G, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValuesGrant")
            .field("type", &std::any::type_name::<T>())
            .field("bytes", &self.grant.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
