//! An anonymous ring handed to an unrelated process over a Unix socket (`SCM_RIGHTS`).
//!
//! The sender (this program) creates an anonymous ring (a memfd sealed against resizing,
//! with no name anyone could open) and listens on a Unix socket. It starts the receiver —
//! this program again, with the argument `receiver`, which inherits nothing: the ring's
//! descriptor is close-on-exec — and hands it the descriptor as `SCM_RIGHTS` ancillary data
//! when it connects. The receiver attaches with `Consumer::from_fd`, which accepts only a
//! memfd sealed against shrinking, so the sender cannot truncate the ring under it.
//!
//! ```text
//! cargo run --release --example pass_fd
//! ```

use std::error::Error;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use shmring::spsc;

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

const MESSAGES: u64 = 1_000_000;

/// Removes the socket's path when the sender is done, also on an early error.
struct SocketPath(PathBuf);

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sends `fd` over `stream` with one byte of ordinary data.
fn send_fd(stream: &UnixStream, fd: &OwnedFd) -> Result<()> {
    let fds = [fd.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err("no room for the descriptor in the control buffer".into());
    }
    rustix::net::sendmsg(
        stream,
        &[IoSlice::new(b"r")],
        &mut control,
        SendFlags::empty(),
    )?;
    Ok(())
}

/// Receives one descriptor sent by [`send_fd`].
fn recv_fd(stream: &UnixStream) -> Result<OwnedFd> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        stream,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err("the sender's message carried no descriptor".into())
}

fn receive(socket: &Path) -> Result<()> {
    let stream = UnixStream::connect(socket)?;
    let mut rx = spsc::Consumer::from_fd(recv_fd(&stream)?)?;
    let mut next = 0u64;
    let mut sum = 0u64;
    while let Ok(msg) = rx.recv() {
        let seq = u64::from_le_bytes(msg[..8].try_into()?);
        if seq != next {
            return Err(format!("message {seq} where {next} was expected").into());
        }
        sum = sum.wrapping_add(msg.iter().map(|&b| u64::from(b)).sum::<u64>());
        next += 1;
    }
    println!(
        "receiver: {next} messages in order over a descriptor received on a socket (byte sum {sum})"
    );
    if next != MESSAGES {
        return Err(format!("{next} messages, {MESSAGES} sent").into());
    }
    Ok(())
}

/// Waits (bounded) for the receiver to connect; gives up if it exits first.
fn accept(listener: &UnixListener, receiver: &mut Child) -> Result<UnixStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = receiver.try_wait()? {
                    return Err(format!("the receiver exited before connecting: {status}").into());
                }
                if Instant::now() > deadline {
                    let _ = receiver.kill(); // by its handle: the process we started
                    let _ = receiver.wait();
                    return Err("the receiver did not connect within 30 s".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("receiver") {
        return receive(Path::new(&args[2]));
    }

    let socket = SocketPath(
        std::env::temp_dir().join(format!("shmring-pass-fd-{}.sock", std::process::id())),
    );
    let listener = UnixListener::bind(&socket.0)?;
    let (mut tx, fd) = spsc::Producer::create_anonymous(spsc::Config::default())?;
    let mut receiver = Command::new(std::env::current_exe()?)
        .arg("receiver")
        .arg(&socket.0)
        .spawn()?;

    let stream = accept(&listener, &mut receiver)?;
    send_fd(&stream, &fd)?;
    drop(fd); // the receiver has its own descriptor now
    drop(stream);
    drop(socket);

    let started = Instant::now();
    for seq in 0..MESSAGES {
        let mut msg = [seq as u8; 24];
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        // Bounded: a receiver that failed before attaching never drains the ring.
        tx.send_timeout(&msg, Duration::from_secs(30))?;
    }
    drop(tx); // end of stream
    let status = receiver.wait()?;
    if !status.success() {
        return Err(format!("receiver failed: {status}").into());
    }
    println!(
        "sender: {MESSAGES} messages in {:.2?} to a process that got the ring over a Unix socket",
        started.elapsed()
    );
    Ok(())
}
