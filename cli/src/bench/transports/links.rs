//! [`Link`]s over file descriptors: byte streams (pipes, FIFOs, stream sockets, TCP) and
//! message-preserving sockets (seqpacket, datagram).

use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use crate::bench::harness::Link;
use crate::bench::payload::{AlignedBuf, stamp, verify};

/// Buffer of the reading side of a byte stream: a reader of a stream takes what is there and
/// splits it into messages, as any stream protocol does.
const READ_BUFFER: usize = 64 * 1024;

fn io_err(what: &str, e: io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        format!("{what}: the peer closed the stream")
    } else {
        format!("{what}: {e}")
    }
}

/// Fixed-size messages over a byte stream: one `write` per message; the reader reads through
/// a 64 KiB buffer and splits.
pub struct StreamLink<R: Read, W: Write> {
    r: Option<BufReader<R>>,
    w: Option<W>,
    out: AlignedBuf,
    inp: AlignedBuf,
}

impl<R: Read, W: Write> StreamLink<R, W> {
    /// A link reading from `r` and writing to `w` (either may be absent for one-way jobs).
    pub fn new(r: Option<R>, w: Option<W>, size: usize) -> Self {
        StreamLink {
            r: r.map(|r| BufReader::with_capacity(READ_BUFFER, r)),
            w,
            out: AlignedBuf::new(size),
            inp: AlignedBuf::new(size),
        }
    }
}

impl<R: Read, W: Write> Link for StreamLink<R, W> {
    #[inline]
    fn send(&mut self, word: u64, size: usize) -> Result<(), String> {
        let w = self.w.as_mut().ok_or("no writing end on this side")?;
        let b = &mut self.out.bytes_mut()[..size];
        stamp(b, word);
        w.write_all(b).map_err(|e| io_err("write", e))
    }

    #[inline]
    fn recv(&mut self, size: usize) -> Result<u64, String> {
        let r = self.r.as_mut().ok_or("no reading end on this side")?;
        let b = &mut self.inp.bytes_mut()[..size];
        r.read_exact(b).map_err(|e| io_err("read", e))?;
        verify(b, size)
    }
}

/// Messages over a socket that keeps message boundaries (SOCK_SEQPACKET, SOCK_DGRAM): one
/// `send` and one `recv` per message; a truncated message is detected (MSG_TRUNC).
pub struct PacketLink {
    fd: OwnedFd,
    out: AlignedBuf,
    inp: AlignedBuf,
}

impl PacketLink {
    /// A link over the connected socket `fd`.
    pub fn new(fd: OwnedFd, size: usize) -> PacketLink {
        PacketLink {
            fd,
            out: AlignedBuf::new(size),
            inp: AlignedBuf::new(size),
        }
    }
}

impl Link for PacketLink {
    #[inline]
    fn send(&mut self, word: u64, size: usize) -> Result<(), String> {
        let b = &mut self.out.bytes_mut()[..size];
        stamp(b, word);
        loop {
            // SAFETY: `b` is valid for reads of `size` bytes; the fd is an open socket.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), b.as_ptr().cast(), size, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io_err("send", e));
            }
            if n as usize != size {
                return Err(format!("send: sent {n} of {size} bytes"));
            }
            return Ok(());
        }
    }

    #[inline]
    fn recv(&mut self, size: usize) -> Result<u64, String> {
        let b = &mut self.inp.bytes_mut()[..size];
        loop {
            // SAFETY: `b` is valid for writes of `size` bytes; with MSG_TRUNC the kernel still
            // writes at most `size` bytes and returns the datagram's real length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    b.as_mut_ptr().cast(),
                    size,
                    libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => {
                        return Err("recv: nothing arrived within the job's time limit".into());
                    }
                    _ => return Err(io_err("recv", e)),
                }
            }
            if n == 0 {
                return Err("recv: the peer closed the socket".into());
            }
            let n = n as usize;
            if n > size {
                return Err(format!(
                    "recv: message of {n} bytes was truncated to {size} bytes"
                ));
            }
            return verify(&b[..n], size);
        }
    }
}

/// Sets `SO_RCVTIMEO` so a receive on a socket whose peer vanished cannot block forever.
pub fn set_recv_timeout(fd: &OwnedFd, t: std::time::Duration) -> Result<(), String> {
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `tv` is a valid timeval and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io_err(
            "setsockopt(SO_RCVTIMEO)",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}
