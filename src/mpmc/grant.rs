//! Writing in place: a sender's grant of one claimed slot, from `reserve` to `commit`.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::Duration;

use super::Sender;
use super::handle::NoSlot;
use crate::error::{ClaimError, CommitError, SendError, SendTimeoutError, TrySendError};
use crate::sync::Deadline;

impl Sender {
    /// Claims a slot for a message of up to `len` bytes and returns it for writing in place
    /// (zero copy); waits while the ring is full. Nothing is published until
    /// [`Grant::commit`]; dropping the grant publishes nothing (the slot is marked
    /// empty and receivers skip it).
    ///
    /// The grant's bytes hold whatever the slot held before, not zeros. Receivers that reach
    /// the slot wait for the grant: commit it soon.
    ///
    /// # Errors
    /// As [`send`](Sender::send) (the handed-back value is `()`).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// let mut g = tx.reserve(16)?;
    /// g[..5].copy_from_slice(b"hello");
    /// g.commit(5)?;
    /// assert_eq!(&*rx.recv()?, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_>, SendError<()>> {
        let pos = self
            .claim(len, Deadline::never())
            .map_err(|e| e.into_send(()))?;
        Ok(self.grant(pos, len))
    }

    /// Claims a slot for up to `len` bytes if one is free now.
    ///
    /// # Errors
    /// As [`try_send`](Sender::try_send).
    ///
    /// ```
    /// let (mut tx, _rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default().slots(2))?;
    /// tx.send(b"a")?;
    /// let g = tx.try_reserve(8)?;
    /// drop(g); // publishes nothing, but the slot is used up until a receiver skips it
    /// assert!(tx.try_reserve(8).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_reserve(&mut self, len: usize) -> Result<Grant<'_>, TrySendError<()>> {
        self.check_size(len).map_err(|e| e.into_try_send(()))?;
        match self.try_claim() {
            Ok(pos) => Ok(self.grant(pos, len)),
            Err(NoSlot::Busy) => Err(self.check_after_busy().into_try_send(())),
            Err(e) => Err(ClaimError::from(e).into_try_send(())),
        }
    }

    /// Claims a slot for up to `len` bytes, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`send_timeout`](Sender::send_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (mut tx, _rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// let g = tx.reserve_timeout(8, Duration::from_millis(10))?;
    /// g.commit(0)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<Grant<'_>, SendTimeoutError<()>> {
        let pos = self
            .claim(len, Deadline::after(timeout))
            .map_err(|e| e.into_send_timeout(()))?;
        Ok(self.grant(pos, len))
    }

    pub(super) fn grant(&mut self, pos: u64, len: usize) -> Grant<'_> {
        let ring = &self.h.ring;
        // SAFETY: the payload of a claimed slot lies in the region (`len <= max_message`) and
        // is ours alone until published; the grant borrows the sender mutably, so no second
        // claim of this endpoint can overlap it.
        let buf = unsafe { ring.region.slice_mut(ring.payload(pos), len) };
        Grant {
            buf: NonNull::from(buf),
            sender: self,
            pos,
            done: false,
        }
    }
}

/// A slot claimed by a sender, for writing a message in place. Derefs to the reserved bytes.
/// Publish with [`commit`](Grant::commit); dropping the grant publishes nothing.
#[must_use = "dropping a grant without `commit` publishes nothing"]
pub struct Grant<'a> {
    pub(super) sender: &'a mut Sender,
    pub(super) pos: u64,
    pub(super) buf: NonNull<[u8]>,
    pub(super) done: bool,
}

impl fmt::Debug for Grant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("len", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl Grant<'_> {
    /// Publishes the first `len` bytes of the grant as one message.
    ///
    /// # Errors
    /// [`CommitError::TooLong`] if `len` exceeds the grant, [`CommitError::Disconnected`] if
    /// every receiver went away meanwhile. Nothing is published in either case (the slot is
    /// skipped). [`CommitError::Corrupted`] in a forked child that inherited the grant
    /// ([`Corruption::is_inherited`](crate::Corruption::is_inherited)): nothing is published
    /// and the slot is left to the parent, which may still commit it.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// let mut g = tx.reserve(8)?;
    /// g[..3].copy_from_slice(b"abc");
    /// g.commit(3)?;
    /// assert_eq!(&*rx.recv()?, b"abc");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit(mut self, len: usize) -> Result<(), CommitError> {
        self.done = true;
        if self.sender.h.ep.inherited() {
            return Err(CommitError::Corrupted(self.sender.h.ep.inherited_error()));
        }
        let granted = self.buf.len();
        if len > granted {
            self.sender.abandon(self.pos);
            return Err(CommitError::TooLong { len, granted });
        }
        if self.sender.h.peers_closed() {
            self.sender.abandon(self.pos);
            return Err(CommitError::Disconnected);
        }
        self.sender.publish(self.pos, len);
        Ok(())
    }

    /// Size of the grant in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the grant holds no bytes (a reservation of 0).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

impl Deref for Grant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `buf` is the claimed slot's payload, ours alone while the grant (which
        // borrows the sender mutably) lives.
        unsafe { self.buf.as_ref() }
    }
}

impl DerefMut for Grant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `deref`; `&mut self` makes the access unique.
        unsafe { self.buf.as_mut() }
    }
}

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        // An inherited grant's slot is the parent's, which may still commit it.
        if !self.done && !self.sender.h.ep.inherited() {
            self.sender.abandon(self.pos);
        }
    }
}
