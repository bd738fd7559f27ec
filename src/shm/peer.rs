//! Who is attached to a ring, and whether they are still alive.
//!
//! A process is identified by its pid *and* its start time (field 22 of `/proc/<pid>/stat`, in
//! clock ticks since boot), so a pid that was reused by a new process is not mistaken for the
//! old one. A zombie (killed but not yet reaped by its parent) counts as dead: it will never
//! touch the ring again.
//!
//! Reading `/proc` uses a stack buffer and no heap allocation.

use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, getpid};

/// A process identity: pid and start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcessId {
    pub(crate) pid: u32,
    pub(crate) start_time: u64,
}

/// Liveness of a recorded process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    Alive,
    Dead,
}

impl ProcessId {
    /// This process.
    pub(crate) fn current() -> ProcessId {
        let pid = getpid();
        let raw = pid.as_raw_nonzero().get() as u32;
        // /proc/self always exists for a running process; if /proc is not mounted the start
        // time is 0 and liveness falls back to the pid alone.
        let start_time = match read_stat(raw) {
            Ok((_, start)) => start,
            Err(_) => 0,
        };
        ProcessId {
            pid: raw,
            start_time,
        }
    }

    /// Whether the process still runs (a zombie is dead, a pid reused by another process is
    /// dead).
    ///
    /// Only positive evidence of death counts: a missing `/proc/<pid>` confirmed by
    /// `kill(pid, 0)` failing with `ESRCH`, a zombie state, or another start time. Any other
    /// failure (out of file descriptors, a `hidepid` mount, `EPERM`) says nothing about the
    /// process, so it is taken as alive: a false "dead" would end a live peer's stream.
    pub(crate) fn liveness(&self) -> Liveness {
        let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) else {
            return Liveness::Dead;
        };
        match read_stat(self.pid) {
            Ok((state, start)) => {
                let zombie = matches!(state, b'Z' | b'X' | b'x');
                let reused = self.start_time != 0 && start != self.start_time;
                if zombie || reused {
                    Liveness::Dead
                } else {
                    Liveness::Alive
                }
            }
            // No such entry: make sure with signal 0 (works without /proc too).
            Err(StatError::Missing) => match rustix::process::test_kill_process(pid) {
                Err(rustix::io::Errno::SRCH) => Liveness::Dead,
                _ => Liveness::Alive,
            },
            Err(StatError::Unknown) => Liveness::Alive,
        }
    }
}

/// Why `/proc/<pid>/stat` could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatError {
    /// The entry does not exist (`ENOENT`/`ESRCH`).
    Missing,
    /// Anything else: no conclusion about the process.
    Unknown,
}

/// Reads `/proc/<pid>/stat` and returns (state, start time).
fn read_stat(pid: u32) -> Result<(u8, u64), StatError> {
    let mut path = [0u8; 32];
    let mut n = 0;
    for &b in b"/proc/" {
        path[n] = b;
        n += 1;
    }
    let mut digits = [0u8; 10];
    let mut d = 0;
    let mut v = pid;
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in (0..d).rev() {
        path[n] = digits[i];
        n += 1;
    }
    for &b in b"/stat\0" {
        path[n] = b;
        n += 1;
    }
    let cpath = std::ffi::CStr::from_bytes_with_nul(&path[..n]).map_err(|_| StatError::Unknown)?;
    let fd = match rustix::fs::open(cpath, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::SRCH) => return Err(StatError::Missing),
        Err(_) => return Err(StatError::Unknown),
    };
    let mut buf = [0u8; 1024];
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(k) => len += k,
            Err(rustix::io::Errno::INTR) => continue,
            // The process went away between open and read.
            Err(rustix::io::Errno::SRCH) => return Err(StatError::Missing),
            Err(_) => return Err(StatError::Unknown),
        }
    }
    parse_stat(&buf[..len]).ok_or(StatError::Unknown)
}

/// Parses the state (field 3) and start time (field 22) of a `/proc/<pid>/stat` line. The
/// command name (field 2) may hold spaces and parentheses, so fields are counted from the last
/// ')'.
pub(crate) fn parse_stat(line: &[u8]) -> Option<(u8, u64)> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let rest = line.get(close + 1..)?;
    let mut fields = rest
        .split(|&b| b == b' ' || b == b'\n')
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    // After the state (field 3) come fields 4..; the start time is field 22.
    let start = fields.nth(22 - 4)?;
    let mut v: u64 = 0;
    for &b in start {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((state, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_comm() {
        let line = b"1234 (a) b (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20\n";
        assert_eq!(parse_stat(line), Some((b'S', 4242)));
        assert_eq!(parse_stat(b"garbage"), None);
        assert_eq!(parse_stat(b"1 (x) S 1 2"), None);
    }

    #[test]
    fn current_process_is_alive_and_bogus_ones_are_dead() {
        let me = ProcessId::current();
        assert_ne!(me.start_time, 0);
        assert_eq!(me.liveness(), Liveness::Alive);
        let reused = ProcessId {
            pid: me.pid,
            start_time: me.start_time + 1,
        };
        assert_eq!(reused.liveness(), Liveness::Dead);
        assert_eq!(
            ProcessId {
                pid: 0,
                start_time: 0
            }
            .liveness(),
            Liveness::Dead
        );
    }

    #[test]
    fn killed_child_is_dead_even_before_it_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let id = ProcessId {
            pid: child.id(),
            start_time: read_stat(child.id()).expect("stat of child").1,
        };
        assert_eq!(id.liveness(), Liveness::Alive);
        child.kill().expect("kill child");
        // Not reaped yet: a zombie. Poll until the kernel has turned it into one.
        let mut dead = false;
        for _ in 0..200 {
            if id.liveness() == Liveness::Dead {
                dead = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.wait().expect("reap child");
        assert!(dead, "a killed, unreaped child must count as dead");
        assert_eq!(id.liveness(), Liveness::Dead);
    }
}
