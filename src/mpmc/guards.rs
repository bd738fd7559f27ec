//! What the MPMC handles lend out: a claimed slot to write in place, a received message read
//! in place, and the receiving iterator.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use super::{Receiver, Sender};
use crate::error::{CommitError, Corruption, RecvError};

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
    /// skipped).
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
        if !self.done {
            self.sender.abandon(self.pos);
        }
    }
}

/// A received message, still in its slot. Derefs to its payload; the slot is released to
/// the senders when the guard is dropped.
#[must_use = "dropping the message releases its slot"]
pub struct Message<'a> {
    pub(super) receiver: &'a mut Receiver,
    pub(super) pos: u64,
    pub(super) data: NonNull<[u8]>,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("len", &self.len()).finish()
    }
}

impl Deref for Message<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the payload is published to us and not released while the guard lives.
        unsafe { self.data.as_ref() }
    }
}

impl Drop for Message<'_> {
    #[inline]
    fn drop(&mut self) {
        let r = &mut *self.receiver;
        // Marks the end of our read for loom's race detector.
        r.h.ring
            .region
            .track_read(r.h.ring.payload(self.pos), self.data.len());
        r.release(self.pos);
    }
}

/// Iterator returned by [`Receiver::iter`]. Ends at end of stream, or at corruption (then
/// [`Iter::error`] says what was wrong).
#[derive(Debug)]
pub struct Iter<'a> {
    pub(super) receiver: &'a mut Receiver,
    pub(super) error: Option<Corruption>,
}

impl Iter<'_> {
    /// The corruption that ended the iteration, if any.
    ///
    /// ```
    /// let (tx, mut rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// drop(tx);
    /// let mut it = rx.iter();
    /// assert!(it.next().is_none());
    /// assert!(it.error().is_none());
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn error(&self) -> Option<Corruption> {
        self.error
    }
}

impl Iterator for Iter<'_> {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        match self.receiver.recv() {
            Ok(m) => Some(m.to_vec()),
            Err(RecvError::Disconnected) => None,
            Err(RecvError::Corrupted(c)) => {
                self.error = Some(c);
                None
            }
        }
    }
}
