//! Byte streams over rings: `std::io::Write` for the sending ends and a
//! [`ByteReader`] (`std::io::Read`) for the receiving ends, so that code written for pipes or
//! sockets can use a ring. (With feature `tokio`: `AsyncWrite` for the async sending ends and
//! `evented::AsyncByteReader` for `AsyncRead`.)
//!
//! A stream of bytes is cut into records: each `write` sends one message of at most the
//! ring's [`max_message`](crate::spsc::Producer::max_message) bytes (and returns how many it
//! took, as `write` may); `write_all` sends as many as it needs. The reader hands the bytes of
//! each message out in order, across as many `read`s as the caller's buffer needs, so message
//! boundaries do not matter to it (a message of 0 bytes carries nothing and is skipped). End of
//! stream (the sending side closed or died, and everything was read) is a `read` of 0 bytes;
//! a receiving side that is gone is a `BrokenPipe` error on `write`.
//!
//! ```
//! use std::io::{Read, Write};
//! let (mut tx, rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
//! let writer = std::thread::spawn(move || {
//!     for _ in 0..100 {
//!         tx.write_all(b"0123456789").unwrap();
//!     }
//!     // dropping the producer ends the stream
//! });
//! let mut text = String::new();
//! shmring::io::ByteReader::new(rx).read_to_string(&mut text)?;
//! assert_eq!(text.len(), 1000);
//! writer.join().unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, Read, Write};

use crate::error::RecvError;
use crate::{mpmc, spsc};

/// A receiving end that a [`ByteReader`] can read from: an SPSC [`Consumer`](spsc::Consumer)
/// or an MPMC [`Receiver`](mpmc::Receiver).
pub trait RecvEnd: sealed::Sealed {
    /// Receives the next message (waiting for it) and hands it to `f`.
    ///
    /// # Errors
    /// As the end's `recv`.
    fn recv_with(&mut self, f: &mut dyn FnMut(&[u8])) -> Result<(), RecvError>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::spsc::Consumer {}
    impl Sealed for crate::mpmc::Receiver {}
}

impl RecvEnd for spsc::Consumer {
    fn recv_with(&mut self, f: &mut dyn FnMut(&[u8])) -> Result<(), RecvError> {
        f(&self.recv()?);
        Ok(())
    }
}

impl RecvEnd for mpmc::Receiver {
    fn recv_with(&mut self, f: &mut dyn FnMut(&[u8])) -> Result<(), RecvError> {
        f(&self.recv()?);
        Ok(())
    }
}

/// The bytes of the messages a receiving end gets, as a `std::io::Read` (see the module docs).
/// Keeps the part of a message that did not fit the caller's buffer for the next `read`.
#[derive(Debug)]
pub struct ByteReader<C> {
    end: C,
    /// Bytes of the last message not yet read, from `at`.
    rest: Vec<u8>,
    at: usize,
}

impl<C: RecvEnd> ByteReader<C> {
    /// Reads the messages of `end` as one stream of bytes.
    pub fn new(end: C) -> ByteReader<C> {
        ByteReader {
            end,
            rest: Vec::new(),
            at: 0,
        }
    }

    /// The receiving end back; bytes read from the ring but not yet from this reader are lost.
    pub fn into_inner(self) -> C {
        self.end
    }
}

/// Copies as much of `msg` into `out` as fits and keeps the rest in `rest`; the bytes copied.
fn split_into(msg: &[u8], out: &mut [u8], rest: &mut Vec<u8>) -> usize {
    let n = msg.len().min(out.len());
    out[..n].copy_from_slice(&msg[..n]);
    rest.clear();
    rest.extend_from_slice(&msg[n..]);
    n
}

/// What a receive error means to a byte stream: end of stream, or bad data.
pub(crate) fn stream_error(e: RecvError) -> io::Result<()> {
    match e {
        RecvError::Disconnected => Ok(()),
        RecvError::Corrupted(c) => Err(io::Error::new(io::ErrorKind::InvalidData, c)),
    }
}

impl<C: RecvEnd> Read for ByteReader<C> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.at < self.rest.len() {
                let n = (self.rest.len() - self.at).min(out.len());
                out[..n].copy_from_slice(&self.rest[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            let (rest, mut n) = (&mut self.rest, 0);
            match self
                .end
                .recv_with(&mut |msg| n = split_into(msg, out, rest))
            {
                Ok(()) => {
                    self.at = 0;
                    if n > 0 {
                        return Ok(n);
                    }
                }
                Err(e) => return stream_error(e).map(|()| 0),
            }
        }
    }
}

/// Each `write` sends one message of up to [`max_message`](spsc::Producer::max_message)
/// bytes, waiting while the ring is full; `flush` does nothing (every message is published
/// when written). `BrokenPipe` once the consumer is gone.
impl Write for spsc::Producer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.max_message());
        if n == 0 {
            return Ok(0);
        }
        self.send(&buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// As for [`spsc::Producer`]: each `write` sends one message of up to
/// [`max_message`](mpmc::Sender::max_message) bytes. With several receivers, each gets whole
/// messages, so the stream is split between them at message boundaries.
impl Write for mpmc::Sender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.max_message());
        if n == 0 {
            return Ok(0);
        }
        self.send(&buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
