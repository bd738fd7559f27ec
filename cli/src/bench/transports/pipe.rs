//! Anonymous pipes (default and 1 MiB buffer) and named FIFOs. A round trip uses one pipe
//! per direction; a stream uses one.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::links::StreamLink;
use super::{Ctx, ParentEnd, Setup, Transport, Unavailable, arg_int, arg_str, os_err};
use crate::bench::harness::{self, Job, ParentResult, SideReport, Test};
use crate::bench::sys;

/// An anonymous pipe, optionally resized with `F_SETPIPE_SZ`.
pub struct Pipe {
    name: &'static str,
    about: &'static str,
    buffer: Option<usize>,
}

pub static PIPE: Pipe = Pipe {
    name: "pipe",
    about: "pipe(2), default 64 KiB buffer; one write(2) per message, reader reads through a 64 KiB buffer",
    buffer: None,
};
pub static PIPE_1M: Pipe = Pipe {
    name: "pipe-1m",
    about: "pipe(2) resized to 1 MiB with F_SETPIPE_SZ; otherwise as pipe",
    buffer: Some(1 << 20),
};

fn resize(fd: &OwnedFd, bytes: usize) -> Result<(), Unavailable> {
    let want = libc::c_int::try_from(bytes).map_err(|_| format!("pipe size {bytes} too large"))?;
    // SAFETY: F_SETPIPE_SZ on an open pipe descriptor; no memory is passed.
    let got = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, want) };
    if got < 0 {
        let e = io::Error::last_os_error();
        let max = sys::read_trimmed("/proc/sys/fs/pipe-max-size").unwrap_or_default();
        return Err(Unavailable::NotApplicable(format!(
            "F_SETPIPE_SZ({bytes}) refused ({e}); /proc/sys/fs/pipe-max-size = {max}"
        )));
    }
    if (got as usize) < bytes {
        return Err(Unavailable::Failed(format!(
            "F_SETPIPE_SZ({bytes}) gave only {got} bytes"
        )));
    }
    Ok(())
}

struct FdEnd {
    link: StreamLink<File, File>,
}

impl ParentEnd for FdEnd {
    fn run(&mut self, job: &Job) -> Result<ParentResult, String> {
        harness::drive(&mut self.link, job)
    }
}

impl Transport for Pipe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn about(&self) -> &'static str {
        self.about
    }

    fn prepare(&self, _ctx: &Ctx, job: &Job) -> Result<Setup, Unavailable> {
        // Pipe a: parent -> peer. Pipe b: peer -> parent (round trips only).
        let (a_r, a_w) = sys::pipe().map_err(|e| os_err("pipe", e))?;
        if let Some(n) = self.buffer {
            resize(&a_w, n)?;
        }
        let mut pass = Vec::new();
        let mut args = json!({ "r": a_r.as_raw_fd(), "w": null });
        let mut parent_r = None;
        if job.test == Test::Latency {
            let (b_r, b_w) = sys::pipe().map_err(|e| os_err("pipe", e))?;
            if let Some(n) = self.buffer {
                resize(&b_w, n)?;
            }
            args["w"] = json!(b_w.as_raw_fd());
            pass.push(b_w);
            parent_r = Some(File::from(b_r));
        }
        pass.insert(0, a_r);
        for fd in &pass {
            sys::set_inheritable(fd.as_fd()).map_err(|e| os_err("fcntl", e))?;
        }
        Ok(Setup {
            args,
            pass,
            end: Box::new(FdEnd {
                link: StreamLink::new(parent_r, Some(File::from(a_w)), job.size),
            }),
        })
    }

    fn peer(&self, job: &Job, args: &Value, ready: &mut dyn FnMut()) -> Result<SideReport, String> {
        let r = File::from(sys::claim_inherited(arg_int(args, "r")?)?);
        let w = match args.get("w").and_then(Value::as_i64) {
            Some(fd) => Some(File::from(sys::claim_inherited(fd)?)),
            None => None,
        };
        ready();
        let mut link = StreamLink::new(Some(r), w, job.size);
        harness::serve(&mut link, job)
    }
}

/// Named FIFOs in the temporary directory.
pub struct Fifo;

/// Paths removed when dropped.
struct Paths(Vec<PathBuf>);

impl Drop for Paths {
    fn drop(&mut self) {
        for p in &self.0 {
            // Best effort: the FIFO may already be gone.
            let _ = std::fs::remove_file(p);
        }
    }
}

fn mkfifo(path: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("FIFO path {} contains NUL", path.display()))?;
    // SAFETY: `c` is a NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(os_err(
            &format!("mkfifo {}", path.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn clear_nonblock(f: &File) -> Result<(), String> {
    let fd = f.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on an open descriptor; only O_NONBLOCK changes.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK) < 0 {
            return Err(os_err("fcntl(O_NONBLOCK)", io::Error::last_os_error()));
        }
    }
    Ok(())
}

struct FifoEnd {
    link: StreamLink<File, File>,
    paths: Paths,
}

impl ParentEnd for FifoEnd {
    fn run(&mut self, job: &Job) -> Result<ParentResult, String> {
        // Both ends of every FIFO are open: the names can go.
        for p in self.paths.0.drain(..) {
            std::fs::remove_file(&p).map_err(|e| os_err(&format!("remove {}", p.display()), e))?;
        }
        harness::drive(&mut self.link, job)
    }
}

impl Transport for Fifo {
    fn name(&self) -> &'static str {
        "fifo"
    }

    fn about(&self) -> &'static str {
        "mkfifo(3) named pipes in the temporary directory, opened by path by both processes; as pipe"
    }

    fn prepare(&self, ctx: &Ctx, job: &Job) -> Result<Setup, Unavailable> {
        // No open may block (a peer that never comes would hang the run), so the parent
        // opens its ends before the peer starts: the write end of `a` with a temporary reader
        // present, the read end of `b` non-blocking. The peer's opens then return at once.
        let dir = std::env::temp_dir();
        let a = dir.join(ctx.unique("fifo-a").trim_start_matches('/'));
        let mut paths = Paths(Vec::new());
        mkfifo(&a)?;
        paths.0.push(a.clone());
        let tmp = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&a)
            .map_err(|e| os_err("open FIFO", e))?;
        let a_w = OpenOptions::new()
            .write(true)
            .open(&a)
            .map_err(|e| os_err("open FIFO", e))?;
        drop(tmp);
        let mut args = json!({ "a": a.to_string_lossy(), "b": null });
        let mut b_r = None;
        if job.test == Test::Latency {
            let b = dir.join(ctx.unique("fifo-b").trim_start_matches('/'));
            mkfifo(&b)?;
            paths.0.push(b.clone());
            let r = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&b)
                .map_err(|e| os_err("open FIFO", e))?;
            clear_nonblock(&r)?;
            b_r = Some(r);
            args["b"] = json!(b.to_string_lossy());
        }
        Ok(Setup {
            args,
            pass: Vec::new(),
            end: Box::new(FifoEnd {
                link: StreamLink::new(b_r, Some(a_w), job.size),
                paths,
            }),
        })
    }

    fn peer(&self, job: &Job, args: &Value, ready: &mut dyn FnMut()) -> Result<SideReport, String> {
        let a = arg_str(args, "a")?;
        let r = OpenOptions::new()
            .read(true)
            .open(a)
            .map_err(|e| os_err(&format!("open {a}"), e))?;
        let w = match args.get("b").and_then(Value::as_str) {
            Some(b) => Some(
                OpenOptions::new()
                    .write(true)
                    .open(b)
                    .map_err(|e| os_err(&format!("open {b}"), e))?,
            ),
            None => None,
        };
        ready();
        let mut link = StreamLink::new(Some(r), w, job.size);
        harness::serve(&mut link, job)
    }
}
