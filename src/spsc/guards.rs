//! What the SPSC handles lend out: a grant of room to write in place, a batch of unpublished
//! messages, a received message read in place, and the receiving iterator.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use super::producer::Claim;
use super::{Consumer, Producer};
use crate::error::{CommitError, Corruption, SendError, TryRecvError, TrySendError};
use crate::sync::Deadline;
use crate::sync::Ordering;

/// Room in the ring, reserved for writing a message in place. Derefs to the reserved bytes.
/// Publish with [`commit`](Grant::commit); dropping the grant publishes nothing.
#[must_use = "dropping a grant without `commit` publishes nothing"]
pub struct Grant<'a> {
    pub(super) producer: &'a mut Producer,
    pub(super) claim: Claim,
    pub(super) buf: NonNull<[u8]>,
}

impl fmt::Debug for Grant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("len", &self.claim.len)
            .finish_non_exhaustive()
    }
}

impl Grant<'_> {
    /// Publishes the first `len` bytes of the grant as one message.
    ///
    /// # Errors
    /// [`CommitError::TooLong`] if `len` exceeds the grant, [`CommitError::Disconnected`] if
    /// the consumer went away meanwhile (nothing is published in either case).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// let mut g = tx.reserve(8)?;
    /// g[..3].copy_from_slice(b"abc");
    /// assert!(g.commit(3).is_ok());
    /// assert_eq!(&*rx.recv()?, b"abc");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit(self, len: usize) -> Result<(), CommitError> {
        if len as u64 > self.claim.len {
            return Err(CommitError::TooLong {
                len,
                granted: self.claim.len as usize,
            });
        }
        let p = self.producer;
        if p.ring.ctrl().wait.consumer_closed.load(Ordering::Acquire) != 0 {
            return Err(CommitError::Disconnected);
        }
        p.publish(self.claim, len as u64);
        Ok(())
    }

    /// Size of the grant in bytes.
    pub fn len(&self) -> usize {
        self.claim.len as usize
    }

    /// Whether the grant holds no bytes (a reservation of 0).
    pub fn is_empty(&self) -> bool {
        self.claim.len == 0
    }
}

impl Deref for Grant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `buf` is the claimed range, exclusively ours while the grant (which borrows
        // the producer mutably) lives.
        unsafe { self.buf.as_ref() }
    }
}

impl DerefMut for Grant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `deref`; `&mut self` makes the access unique.
        unsafe { self.buf.as_mut() }
    }
}

/// Messages written but not yet published; see [`Producer::batch`]. Dropping the batch
/// publishes what it holds.
#[must_use = "dropping a batch publishes what it holds"]
pub struct Batch<'a> {
    pub(super) producer: &'a mut Producer,
}

impl fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field(
                "unpublished_bytes",
                &(self.producer.tail - self.producer.published),
            )
            .finish()
    }
}

impl Batch<'_> {
    /// Writes a message into the batch if there is room now (it is published later).
    ///
    /// # Errors
    /// As [`Producer::try_send`]; on `Full` the messages already in the batch stay pending
    /// (call [`Batch::publish`] or use [`Batch::send`]).
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        let p = &mut *self.producer;
        match p.try_claim_once(msg.len()) {
            Ok(claim) => {
                p.write_payload(claim, msg);
                p.write_record(claim, msg.len() as u64);
                Ok(())
            }
            Err(e) => Err(e.into_try_send(())),
        }
    }

    /// Writes a message into the batch; if the ring is full, publishes the batch so far and
    /// waits for room.
    ///
    /// # Errors
    /// As [`Producer::send`].
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let p = &mut *self.producer;
        match p.claim(msg.len(), Deadline::never()) {
            Ok(claim) => {
                p.write_payload(claim, msg);
                p.write_record(claim, msg.len() as u64);
                Ok(())
            }
            Err(e) => Err(e.into_send(())),
        }
    }

    /// Publishes the messages written so far.
    pub fn publish(&mut self) {
        self.producer.flush();
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.producer.flush();
    }
}

/// A received message, still in the ring. Derefs to its payload; its space is released to
/// the producer when the guard is dropped.
///
/// The bytes are read in place, in memory the producer's process can write. A producer that
/// follows the protocol never touches them until they are released; if the peer is not
/// trusted, copy the message before validating it (a hostile peer could change it between
/// the check and the use).
#[must_use = "dropping the message releases its space"]
pub struct Message<'a> {
    pub(super) consumer: &'a mut Consumer,
    pub(super) data: NonNull<[u8]>,
    /// Region offset of the payload.
    pub(super) off: usize,
    pub(super) advance: u64,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("len", &self.len()).finish()
    }
}

impl Deref for Message<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the payload is published and not released while the guard lives.
        unsafe { self.data.as_ref() }
    }
}

impl Drop for Message<'_> {
    #[inline]
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        // Marks the end of our read for loom's race detector.
        c.ring.region.track_read(self.off, self.data.len());
        c.release(self.advance);
    }
}

/// Iterator returned by [`Consumer::iter`] (waits for each message) and [`Consumer::try_iter`]
/// (takes only the messages there now). Yields each message copied into a `Vec`; ends at end
/// of stream (and, for `try_iter`, when the ring is empty). Corruption is not the end of the
/// stream: it is yielded as `Some(Err(..))`, once, and then the iterator ends.
#[derive(Debug)]
#[must_use = "iterators do nothing unless consumed"]
pub struct Iter<'a> {
    pub(super) consumer: &'a mut Consumer,
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
            self.consumer.recv().map_err(TryRecvError::from)
        } else {
            self.consumer.try_recv()
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
