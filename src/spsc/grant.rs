//! Writing in place and in bulk: the producer's grant of room for one message, from
//! `reserve` to `commit`, and its batch of messages published together.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::Duration;

use super::Producer;
use super::producer::Claim;
use crate::error::{CommitError, SendError, SendTimeoutError, TrySendError};
use crate::sync::{Deadline, Ordering};

impl Producer {
    /// Starts a batch: messages sent through it are written at once but published together,
    /// with a single index store and at most one wake-up, when the batch is published or
    /// dropped. Useful for many small messages.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// {
    ///     let mut batch = tx.batch();
    ///     for i in 0u8..10 {
    ///         batch.try_send(&[i]).map_err(std::io::Error::from)?;
    ///     }
    ///     assert!(rx.try_recv().is_err()); // nothing published yet
    ///     batch.publish();
    /// }
    /// let mut got = Vec::new();
    /// rx.drain(usize::MAX, |m| got.push(m[0]))?;
    /// assert_eq!(got, (0..10).collect::<Vec<u8>>());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batch(&mut self) -> Batch<'_> {
        Batch { producer: self }
    }

    /// Reserves room for a message of up to `len` bytes and returns it for writing in place
    /// (zero copy); waits while the ring is full. Nothing is published until
    /// [`Grant::commit`]; dropping the grant publishes nothing.
    ///
    /// The grant's bytes hold whatever the region held before (old messages), not zeros.
    ///
    /// # Errors
    /// As [`send`](Producer::send) (the handed-back value is `()`).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// let mut g = tx.reserve(64)?;
    /// let n = {
    ///     use std::io::Write;
    ///     let mut w = &mut g[..];
    ///     write!(w, "written in place").unwrap();
    ///     64 - w.len()
    /// };
    /// g.commit(n)?;
    /// assert_eq!(&*rx.recv()?, b"written in place");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_>, SendError<()>> {
        let claim = self
            .claim(len, Deadline::never())
            .map_err(|e| e.into_send(()))?;
        Ok(self.grant(claim))
    }

    /// Reserves room for up to `len` bytes if there is room now.
    ///
    /// # Errors
    /// As [`try_send`](Producer::try_send).
    pub fn try_reserve(&mut self, len: usize) -> Result<Grant<'_>, TrySendError<()>> {
        match self.try_claim_once(len) {
            Ok(claim) => Ok(self.grant(claim)),
            Err(e) => Err(e.into_try_send(())),
        }
    }

    /// Reserves room for up to `len` bytes, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`send_timeout`](Producer::send_timeout).
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<Grant<'_>, SendTimeoutError<()>> {
        let claim = self
            .claim(len, Deadline::after(timeout))
            .map_err(|e| e.into_send_timeout(()))?;
        Ok(self.grant(claim))
    }

    pub(super) fn grant(&mut self, claim: Claim) -> Grant<'_> {
        // SAFETY: the payload range lies in claimed free space (see `try_claim`), exclusively
        // ours until published; the grant borrows `self` mutably, so no second claim can
        // overlap it.
        let buf = unsafe {
            self.ring
                .region
                .slice_mut(claim.payload(), claim.len as usize)
        };
        Grant {
            producer: self,
            claim,
            buf: NonNull::from(buf),
        }
    }
}

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
    /// the consumer went away meanwhile, [`CommitError::Corrupted`] in a forked child that
    /// inherited the grant ([`Corruption::is_inherited`](crate::Corruption::is_inherited)):
    /// nothing is published in any of these cases.
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
        if p.ep.inherited() {
            // The room is the parent's, which may still commit it.
            return Err(CommitError::Corrupted(p.ep.inherited_error()));
        }
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
                &self.producer.tail.wrapping_sub(self.producer.published),
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
    ///
    /// In a forked child that inherited the batch, this publishes nothing: the messages are
    /// the parent's, which publishes them itself (and sending through the batch fails there,
    /// see [`Corruption::is_inherited`](crate::Corruption::is_inherited)).
    pub fn publish(&mut self) {
        self.producer.flush_own();
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.producer.flush_own();
    }
}

impl Producer {
    /// `flush` for a batch, which a forked child may have inherited: the parent publishes
    /// its own records.
    fn flush_own(&mut self) {
        if !self.ep.inherited() {
            self.flush();
        }
    }
}
