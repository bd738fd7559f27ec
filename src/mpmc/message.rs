//! Reading in place: the received message a receiver lends out until it is dropped, and the
//! receiving iterators.

use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::time::Duration;

use super::Receiver;
use super::receiver::Taken;
use crate::error::{Corruption, RecvError, RecvTimeoutError, TryRecvError};
use crate::sync::Deadline;

impl Receiver {
    #[inline]
    pub(super) fn message(&mut self, t: Taken) -> Message<'_> {
        let ring = &self.h.ring;
        let off = ring.payload(t.pos);
        // SAFETY: the payload of a claimed message lies in the region (index masked, length
        // checked against max_message <= slot_size - 16); it was published to us and no one
        // writes the slot until we release it, which happens when the guard (borrowing the
        // receiver mutably) drops.
        let data = unsafe { ring.region.slice(off, t.len) };
        Message {
            data: NonNull::from(data),
            receiver: self,
            pos: t.pos,
        }
    }

    /// Receives the next message, waiting while the ring is empty. The returned guard derefs
    /// to the payload, which stays in its slot (zero copy) until the guard is dropped.
    ///
    /// # Errors
    /// [`RecvError::Disconnected`] once every sender is gone and everything they sent has
    /// been received (end of stream); [`RecvError::Corrupted`].
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// tx.send(b"one")?;
    /// tx.send(b"two")?;
    /// drop(tx);
    /// assert_eq!(&*rx.recv()?, b"one");
    /// assert_eq!(&*rx.recv()?, b"two");
    /// assert_eq!(rx.recv().unwrap_err(), shmring::RecvError::Disconnected);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn recv(&mut self) -> Result<Message<'_>, RecvError> {
        match self.recv_deadline(Deadline::never()) {
            Ok(t) => Ok(self.message(t)),
            Err(RecvTimeoutError::Corrupted(c)) => Err(RecvError::Corrupted(c)),
            // Without a deadline only end of stream ends the wait.
            Err(_) => Err(RecvError::Disconnected),
        }
    }

    /// Receives the next message if one is there.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] when nothing is there (more might arrive),
    /// [`TryRecvError::Disconnected`] at end of stream.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// assert_eq!(rx.try_recv().unwrap_err(), shmring::TryRecvError::Empty);
    /// tx.send(b"now")?;
    /// assert_eq!(&*rx.try_recv()?, b"now");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_recv(&mut self) -> Result<Message<'_>, TryRecvError> {
        let t = match self.take_fast() {
            Some(t) => t,
            None => self.try_recv_slow()?,
        };
        Ok(self.message(t))
    }

    /// Receives the next message, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] if nothing arrived in time, otherwise as
    /// [`recv`](Receiver::recv).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, mut rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// let e = rx.recv_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(e, shmring::RecvTimeoutError::Timeout);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message<'_>, RecvTimeoutError> {
        let t = self.recv_deadline(Deadline::after(timeout))?;
        Ok(self.message(t))
    }

    /// An iterator that receives messages (copied into `Vec`s), waiting for each, until end
    /// of stream. Corruption is yielded as an error rather than ending the stream silently.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// for w in ["a", "b", "c"] {
    ///     tx.send(w.as_bytes())?;
    /// }
    /// drop(tx);
    /// let all = rx.iter().collect::<Result<Vec<Vec<u8>>, _>>()?;
    /// assert_eq!(all, [b"a", b"b", b"c"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&mut self) -> Iter<'_> {
        Iter {
            receiver: self,
            blocking: true,
            done: false,
        }
    }

    /// An iterator over the messages that are in the ring now, without waiting.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// tx.send(b"a")?;
    /// tx.send(b"b")?;
    /// assert_eq!(rx.try_iter().count(), 2);
    /// assert!(rx.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_iter(&mut self) -> Iter<'_> {
        Iter {
            receiver: self,
            blocking: false,
            done: false,
        }
    }
}

/// A received message, still in its slot. Derefs to its payload; the slot is released to
/// the senders when the guard is dropped.
///
/// # Reading a message from a peer you do not trust
///
/// The bytes are read in place, in memory the other process can write. A peer that follows
/// the protocol never touches them until they are released, and then `Deref` (a `&[u8]`) is
/// all you need. A peer that does not follow it can change them while you look: a value you
/// checked may differ when you use it. For such a peer, copy the message out first with
/// [`copy_to`](Message::copy_to) or [`to_vec_volatile`](Message::to_vec_volatile) (volatile
/// reads, as rust-vmm's `vm-memory` reads guest memory) and validate and use the copy. The
/// ring itself never trusts these bytes: only the lengths and indices it checked decide where
/// it reads and writes.
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

impl Message<'_> {
    /// Copies the message into `dst` with volatile reads (see "Reading a message from a
    /// peer you do not trust") and returns how many bytes were copied: the message's length,
    /// or `dst.len()` if that is shorter.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// tx.send(b"snapshot")?;
    /// let msg = rx.recv()?;
    /// let mut buf = [0u8; 64];
    /// let n = msg.copy_to(&mut buf);
    /// assert_eq!(&buf[..n], b"snapshot");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        // SAFETY: the payload lies inside the mapping (validated when it was received), which
        // stays mapped while this guard borrows the handle.
        unsafe { crate::sync::region::copy_out_volatile(self.data, dst) }
    }

    /// The message copied into a new `Vec` with volatile reads (see "Reading a message from
    /// a peer you do not trust").
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// tx.send(b"owned")?;
    /// assert_eq!(rx.recv()?.to_vec_volatile(), b"owned");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_vec_volatile(&self) -> Vec<u8> {
        let mut v = vec![0; self.data.len()];
        self.copy_to(&mut v);
        v
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
        // A message inherited by a forked child is still the parent's, which reads it and
        // releases it itself: releasing it here would let a sender overwrite it under the
        // parent.
        if !r.h.ep.inherited() {
            r.release(self.pos);
        }
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
            Err(e) => {
                self.done = true;
                e.corruption().map(Err)
            }
        }
    }
}

impl std::iter::FusedIterator for Iter<'_> {}
