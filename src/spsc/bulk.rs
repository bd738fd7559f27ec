//! Moving many messages per call: the producer's `send_many` (one check and one publish for
//! a slice of messages) and the consumer's `drain` / `recv_many` (one release for all the
//! messages handed out).

use super::consumer::Consumer;
use super::producer::{Claim, Producer};
use crate::error::{
    ClaimError, RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError,
};
use crate::sync::Deadline;
use crate::sync::waiter::Poll;

impl Producer {
    /// Sends as many of `msgs` as fit in the ring now, in order, and publishes them together
    /// (one Release store, at most one wake-up); returns how many were sent. Waits only
    /// while not even the first fits.
    ///
    /// The slice counterpart of [`send`](Producer::send): a loop of `send` pays one check of
    /// the ring's state and one publication per message, this pays them once per call.
    ///
    /// # Errors
    /// As [`send`](Producer::send), for the first message only: once one message is sent,
    /// a message that does not fit (or is too large, or a consumer that went away) ends the
    /// call and the count says where; the next call reports it.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// let words: Vec<[u8; 8]> = (0u64..100).map(u64::to_le_bytes).collect();
    /// let mut sent = 0;
    /// while sent < words.len() {
    ///     sent += tx.send_many(&words[sent..])?;
    /// }
    /// let mut got = Vec::new();
    /// while got.len() < 100 {
    ///     rx.recv_many(usize::MAX, |m| got.push(u64::from_le_bytes(m.try_into().unwrap())))?;
    /// }
    /// assert_eq!(got, (0..100).collect::<Vec<_>>());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_many<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<usize, SendError> {
        let Some(first) = msgs.first() else {
            return Ok(0);
        };
        let claim = self
            .claim(first.as_ref().len(), Deadline::never())
            .map_err(|e| e.into_send(()))?;
        Ok(self.publish_many(claim, first.as_ref(), &msgs[1..]))
    }

    /// Sends as many of `msgs` as fit in the ring now, without waiting, and publishes them
    /// together; returns how many were sent.
    ///
    /// # Errors
    /// As [`try_send`](Producer::try_send) when not even the first message could be sent
    /// (`Full` if it does not fit now).
    ///
    /// ```
    /// use shmring::{spsc, TrySendError};
    /// let (mut tx, _rx) = spsc::channel(&spsc::Config::default().capacity_bytes(64))?;
    /// // 16-byte records: three fit (a ring keeps 8 bytes free after its last record).
    /// assert_eq!(tx.try_send_many(&[b"a", b"b", b"c", b"d"])?, 3);
    /// assert!(matches!(tx.try_send_many(&[b"d"]), Err(TrySendError::Full(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_send_many<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<usize, TrySendError> {
        let Some(first) = msgs.first() else {
            return Ok(0);
        };
        let claim = self
            .try_claim_once(first.as_ref().len())
            .map_err(|e: ClaimError| e.into_try_send(()))?;
        Ok(self.publish_many(claim, first.as_ref(), &msgs[1..]))
    }

    /// Writes `first` into `claim` (the room claimed for it), then as many of `rest` as fit,
    /// and publishes them together; returns how many were written.
    #[inline]
    fn publish_many<M: AsRef<[u8]>>(&mut self, claim: Claim, first: &[u8], rest: &[M]) -> usize {
        self.write_payload(claim, first);
        self.write_record(claim, first.len() as u64);
        let n = 1 + self.write_more(rest);
        self.flush();
        n
    }

    /// Writes (without publishing) as many of `msgs` as fit; the ring's state was checked
    /// for the message before them, so each costs only its claim and its copy.
    #[inline]
    fn write_more<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> usize {
        let mut n = 0;
        for m in msgs {
            let m = m.as_ref();
            let len = m.len() as u64;
            if len > self.ring.max_message {
                break;
            }
            match self.claim_space(len, false) {
                Ok(claim) => {
                    self.write_payload(claim, m);
                    self.write_record(claim, len);
                    n += 1;
                }
                // Full, or a corrupted index (reported by the next call).
                Err(_) => break,
            }
        }
        n
    }
}

impl Consumer {
    /// Hands up to `max` waiting messages to `f`, in order, without waiting, and releases
    /// their space with a single index store. Returns how many messages were handled. One
    /// call takes at most a ring's worth of bytes (what can be waiting at once), so a
    /// producer that keeps sending cannot keep it going for ever.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if no message was waiting, [`TryRecvError::Disconnected`] at
    /// end of stream (only when nothing was handled).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// tx.send(b"a")?;
    /// tx.send(b"bc")?;
    /// let mut total = 0;
    /// assert_eq!(rx.drain(10, |m| total += m.len())?, 2);
    /// assert_eq!(total, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize, TryRecvError> {
        if max == 0 {
            return Ok(0);
        }
        // Publishes what was consumed even if `f` panics, so neither side waits for space or
        // records that the other has already handed over.
        struct Release<'c> {
            consumer: &'c mut Consumer,
        }
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                if self.consumer.head != self.consumer.released {
                    self.consumer.store_head();
                }
            }
        }
        let start = self.head;
        let guard = Release { consumer: self };
        let c = &mut *guard.consumer;
        let mut n = 0;
        let mut outcome = Ok(());
        // At most one ring's worth of bytes per call: a producer that keeps publishing cannot
        // keep us here for ever.
        let cap = c.ring.capacity;
        while n < max && c.head.wrapping_sub(start) < cap {
            match c.poll_record() {
                Poll::Ready(Ok(p)) => {
                    // SAFETY: validated by `peek`; the record stays ours until `store_head`.
                    let data = unsafe { c.ring.region.slice(p.off as usize, p.len as usize) };
                    let early = cfg!(shmring_mutant = "release_before_read");
                    if early {
                        // Mutant: the space is given back before the message is read.
                        c.head = c.head.wrapping_add(p.advance);
                        c.store_head();
                    }
                    f(data);
                    c.ring.region.track_read(p.off as usize, p.len as usize);
                    if !early {
                        // Counted only once `f` returned: a panicking callback leaves its
                        // message in the ring.
                        c.head = c.head.wrapping_add(p.advance);
                        // A producer asking for room gets it now, not at the end of the
                        // drain (`f` may take long).
                        if c.room_wanted() {
                            c.store_head();
                        }
                    }
                    n += 1;
                }
                Poll::Ready(Err(e)) => {
                    outcome = Err(e);
                    break;
                }
                Poll::Pending => break,
            }
        }
        drop(guard);
        match outcome {
            Err(RecvError::Corrupted(c)) => Err(TryRecvError::Corrupted(c)),
            _ if n > 0 => Ok(n),
            Err(RecvError::Disconnected) => Err(TryRecvError::Disconnected),
            Ok(()) => Err(self.empty_or_ended()),
        }
    }

    /// Waits for at least one message, then hands up to `max` waiting messages to `f` and
    /// releases their space with a single index store, as [`drain`](Consumer::drain) does.
    /// Returns how many messages were handled (at least one, unless `max` is 0).
    ///
    /// # Errors
    /// [`RecvError::Disconnected`] at end of stream (as [`recv`](Consumer::recv)).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// tx.send_many(&[b"x", b"y"])?;
    /// drop(tx);
    /// let mut seen = Vec::new();
    /// assert_eq!(rx.recv_many(10, |m| seen.push(m.to_vec()))?, 2);
    /// assert_eq!(seen, [b"x", b"y"]);
    /// assert_eq!(rx.recv_many(10, |_| ()).unwrap_err(), shmring::RecvError::Disconnected);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_many(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize, RecvError> {
        if max == 0 {
            return Ok(0);
        }
        match self.recv_deadline(Deadline::never()) {
            Ok(_) => {}
            Err(RecvTimeoutError::Corrupted(c)) => return Err(RecvError::Corrupted(c)),
            // Without a deadline only end of stream ends the wait.
            Err(_) => return Err(RecvError::Disconnected),
        }
        match self.drain(max, f) {
            Ok(n) => Ok(n),
            Err(TryRecvError::Corrupted(c)) => Err(RecvError::Corrupted(c)),
            Err(_) => Err(RecvError::Disconnected),
        }
    }
}
