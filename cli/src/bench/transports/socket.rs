//! Unix-domain sockets (stream, seqpacket, datagram) from `socketpair(2)`, and TCP over the
//! loopback interface with `TCP_NODELAY`. One socket carries both directions of a round trip.

use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::links::{PacketLink, StreamLink, set_recv_timeout};
use super::{Ctx, ParentEnd, Setup, Transport, Unavailable, arg_int, os_err};
use crate::bench::harness::{self, Job, ParentResult, SideReport};
use crate::bench::sys;

/// A Unix-domain socket pair of one type.
pub struct UnixSock {
    name: &'static str,
    about: &'static str,
    ty: libc::c_int,
}

pub static UNIX_STREAM: UnixSock = UnixSock {
    name: "unix-stream",
    about: "socketpair(AF_UNIX, SOCK_STREAM); one write per message, reader reads through a 64 KiB buffer",
    ty: libc::SOCK_STREAM,
};
pub static UNIX_SEQPACKET: UnixSock = UnixSock {
    name: "unix-seqpacket",
    about: "socketpair(AF_UNIX, SOCK_SEQPACKET); one send/recv per message, default buffers",
    ty: libc::SOCK_SEQPACKET,
};
pub static UNIX_DGRAM: UnixSock = UnixSock {
    name: "unix-dgram",
    about: "socketpair(AF_UNIX, SOCK_DGRAM); one send/recv per message, default buffers",
    ty: libc::SOCK_DGRAM,
};

enum SockLink {
    Stream(StreamLink<UnixStream, UnixStream>),
    Packet(PacketLink),
}

fn sock_link(fd: OwnedFd, ty: libc::c_int, size: usize) -> Result<SockLink, String> {
    if ty == libc::SOCK_STREAM {
        let s = UnixStream::from(fd);
        let r = s.try_clone().map_err(|e| os_err("dup", e))?;
        Ok(SockLink::Stream(StreamLink::new(Some(r), Some(s), size)))
    } else {
        Ok(SockLink::Packet(PacketLink::new(fd, size)))
    }
}

fn drive_or_serve(l: &mut SockLink, job: &Job) -> Result<SideReport, String> {
    match l {
        SockLink::Stream(s) => harness::serve(s, job),
        SockLink::Packet(p) => harness::serve(p, job),
    }
}

struct SockEnd {
    link: SockLink,
}

impl ParentEnd for SockEnd {
    fn run(&mut self, job: &Job) -> Result<ParentResult, String> {
        match &mut self.link {
            SockLink::Stream(s) => harness::drive(s, job),
            SockLink::Packet(p) => harness::drive(p, job),
        }
    }
}

/// Whether a message of `size` bytes fits through a fresh pair of this type: a datagram
/// larger than the send buffer is refused with EMSGSIZE.
fn probe_packet(ty: libc::c_int, size: usize) -> Result<(), Unavailable> {
    let (a, _b) = sys::socketpair(ty).map_err(|e| os_err("socketpair", e))?;
    let buf = vec![0u8; size];
    // SAFETY: `buf` is valid for reads of `size` bytes; MSG_DONTWAIT keeps the call from
    // blocking.
    let n = unsafe { libc::send(a.as_raw_fd(), buf.as_ptr().cast(), size, libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EMSGSIZE) {
            let wmem = sys::read_trimmed("/proc/sys/net/core/wmem_default").unwrap_or_default();
            return Err(Unavailable::NotApplicable(format!(
                "a {size}-byte message exceeds the socket send buffer (EMSGSIZE; \
                 net.core.wmem_default = {wmem})"
            )));
        }
        if e.kind() == io::ErrorKind::WouldBlock {
            // Within the size limit, but the buffer is smaller than the message: a blocking
            // send waits for room.
            return Ok(());
        }
        return Err(Unavailable::Failed(os_err("probe send", e)));
    }
    Ok(())
}

impl Transport for UnixSock {
    fn name(&self) -> &'static str {
        self.name
    }

    fn about(&self) -> &'static str {
        self.about
    }

    fn prepare(&self, _ctx: &Ctx, job: &Job) -> Result<Setup, Unavailable> {
        if self.ty != libc::SOCK_STREAM {
            probe_packet(self.ty, job.size)?;
        }
        let (mine, theirs) = sys::socketpair(self.ty).map_err(|e| os_err("socketpair", e))?;
        if self.ty != libc::SOCK_STREAM {
            // A datagram socket does not report a vanished peer: bound every receive.
            set_recv_timeout(&mine, job.limit())?;
        }
        sys::set_inheritable(theirs.as_fd()).map_err(|e| os_err("fcntl", e))?;
        Ok(Setup {
            args: json!({ "fd": theirs.as_raw_fd() }),
            pass: vec![theirs],
            end: Box::new(SockEnd {
                link: sock_link(mine, self.ty, job.size)?,
            }),
        })
    }

    fn peer(&self, job: &Job, args: &Value, ready: &mut dyn FnMut()) -> Result<SideReport, String> {
        let fd = sys::claim_inherited(arg_int(args, "fd")?)?;
        if self.ty != libc::SOCK_STREAM {
            set_recv_timeout(&fd, job.limit())?;
        }
        let mut link = sock_link(fd, self.ty, job.size)?;
        ready();
        drive_or_serve(&mut link, job)
    }
}

/// TCP over 127.0.0.1 with Nagle's algorithm off.
pub struct Tcp;

struct TcpEnd {
    listener: TcpListener,
    link: Option<StreamLink<TcpStream, TcpStream>>,
}

impl ParentEnd for TcpEnd {
    fn run(&mut self, job: &Job) -> Result<ParentResult, String> {
        // The peer connected before it reported ready; accept without blocking forever.
        self.listener
            .set_nonblocking(true)
            .map_err(|e| os_err("listener", e))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let s = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(os_err("accept", e)),
            }
        };
        s.set_nonblocking(false).map_err(|e| os_err("socket", e))?;
        s.set_nodelay(true).map_err(|e| os_err("TCP_NODELAY", e))?;
        let r = s.try_clone().map_err(|e| os_err("dup", e))?;
        let link = self
            .link
            .insert(StreamLink::new(Some(r), Some(s), job.size));
        harness::drive(link, job)
    }
}

impl Transport for Tcp {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn about(&self) -> &'static str {
        "TCP over 127.0.0.1, TCP_NODELAY on both ends; one write per message, reader reads through a 64 KiB buffer"
    }

    fn prepare(&self, _ctx: &Ctx, _job: &Job) -> Result<Setup, Unavailable> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| os_err("bind", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| os_err("local_addr", e))?
            .port();
        Ok(Setup {
            args: json!({ "port": port }),
            pass: Vec::new(),
            end: Box::new(TcpEnd {
                listener,
                link: None,
            }),
        })
    }

    fn peer(&self, job: &Job, args: &Value, ready: &mut dyn FnMut()) -> Result<SideReport, String> {
        let port = u16::try_from(arg_int(args, "port")?).map_err(|_| "bad port".to_owned())?;
        let s =
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(|e| os_err("connect", e))?;
        s.set_nodelay(true).map_err(|e| os_err("TCP_NODELAY", e))?;
        let r = s.try_clone().map_err(|e| os_err("dup", e))?;
        ready();
        let mut link = StreamLink::new(Some(r), Some(s), job.size);
        harness::serve(&mut link, job)
    }
}
