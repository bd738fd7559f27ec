//! What the MPMC handles lend out: a claimed slot to write in place, a received message read
//! in place, and the receiving iterator.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use super::{Receiver, Sender};
use crate::error::{CommitError, Corruption, TryRecvError};

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

/// Iterator returned by [`Receiver::iter`] (waits for each message) and [`Receiver::try_iter`]
/// (takes only the messages there now). Yields each message copied into a `Vec`; ends at end
/// of stream (and, for `try_iter`, when the ring is empty). Corruption is not the end of the
/// stream: it is yielded as `Some(Err(..))`, once, and then the iterator ends.
#[derive(Debug)]
#[must_use = "iterators do nothing unless consumed"]
pub struct Iter<'a> {
    pub(super) receiver: &'a mut Receiver,
    pub(super) blocking: bool,
    pub(super) done: bool,
}

impl Iterator for Iter<'_> {
    type Item = Result<Vec<u8>, Corruption>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let got = if self.blocking {
            self.receiver.recv().map_err(TryRecvError::from)
        } else {
            self.receiver.try_recv()
        };
        match got {
            Ok(m) => Some(Ok(m.to_vec())),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                self.done = true;
                None
            }
            Err(TryRecvError::Corrupted(c)) => {
                self.done = true;
                Some(Err(c))
            }
        }
    }
}

impl std::iter::FusedIterator for Iter<'_> {}
