//! Who attached to a ring, for display (`inspect`, the tool's `stat`): a pid and the
//! process's start time (field 22 of `/proc/<pid>/stat`, in clock ticks since boot).
//!
//! Nothing decides liveness from these: a pid means nothing in another pid namespace, and a
//! process whose main thread exited looks like a zombie while its other threads run. Whether
//! an endpoint is alive is asked of its lock in the endpoint table (`endpoints`).
//!
//! Reading `/proc` uses a stack buffer and no heap allocation.

use rustix::fs::{Mode, OFlags};
use rustix::process::getpid;

/// A process identity: pid and start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcessId {
    pub(crate) pid: u32,
    pub(crate) start_time: u64,
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
}
