//! Thin wrappers over the system calls the benchmark needs: CPU affinity, per-thread resource
//! usage, file-descriptor inheritance, and facts about the machine.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use serde::Serialize;

/// Context switches of the calling thread so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Switches {
    /// Voluntary: the thread blocked (slept in a system call).
    pub voluntary: i64,
    /// Involuntary: the scheduler preempted it.
    pub involuntary: i64,
}

impl Switches {
    /// Reads `getrusage(RUSAGE_THREAD)`.
    pub fn now() -> Switches {
        // SAFETY: `rusage` is plain data; all-zero bytes are a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable `rusage` for the call's duration.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
        if rc != 0 {
            return Switches::default();
        }
        // `c_long` is 32 bits on 32-bit targets and 64 bits on 64-bit ones: the cast only widens.
        Switches {
            voluntary: ru.ru_nvcsw as i64,
            involuntary: ru.ru_nivcsw as i64,
        }
    }

    /// The switches since `earlier`.
    pub fn since(self, earlier: Switches) -> Switches {
        Switches {
            voluntary: self.voluntary - earlier.voluntary,
            involuntary: self.involuntary - earlier.involuntary,
        }
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is a plain bit array; zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid and writable for `size_of::<cpu_set_t>()` bytes.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below CPU_SETSIZE, inside the set.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// Pins the calling thread to one CPU.
pub fn pin_to(cpu: usize) -> Result<(), String> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(format!("CPU {cpu} is out of range"));
    }
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu set of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(format!(
            "sched_setaffinity(CPU {cpu}): {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Lets `fd` survive `exec` (clears `FD_CLOEXEC`), for the peer's end of a channel.
pub fn set_inheritable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: `raw` is an open descriptor borrowed for the call.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; only the close-on-exec flag changes.
    if unsafe { libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of a descriptor number inherited from the parent process, after checking
/// that it is open. Each number is claimed once (the peer's job names each fd once).
pub fn claim_inherited(fd: i64) -> Result<OwnedFd, String> {
    let raw: RawFd = i32::try_from(fd).map_err(|_| format!("bad descriptor number {fd}"))?;
    if raw < 3 {
        return Err(format!("descriptor {raw} is not an inherited channel"));
    }
    // SAFETY: F_GETFD only queries the descriptor table.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Err(format!("inherited descriptor {raw} is not open"));
    }
    // SAFETY: the descriptor is open, was created by the parent for this process alone, and
    // nothing else in this process owns it (the job names it once).
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A `pipe2(O_CLOEXEC)`: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A `socketpair(AF_UNIX, ty | SOCK_CLOEXEC)`.
pub fn socketpair(ty: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    if unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded: both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads a small text file, trimmed; `None` if unreadable.
pub fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Facts about the machine, recorded with the results.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu_model: String,
    /// Family, model, stepping, cache size and clock as /proc/cpuinfo gives them.
    pub cpu_details: String,
    /// Whether /proc/cpuinfo shows the `hypervisor` flag (a virtual machine).
    pub virtualized: bool,
    /// Online CPUs.
    pub cpus_online: usize,
    /// CPUs this process may use.
    pub cpus_allowed: Vec<usize>,
    /// Kernel release.
    pub kernel: String,
    /// Clock source.
    pub clocksource: String,
    /// 1, 5 and 15 minute load averages when the run started.
    pub load_at_start: String,
    /// The same when it ended.
    pub load_at_end: String,
    /// Where the two processes ran.
    pub placement: String,
    /// Percent of all CPUs' time that other processes used during the run.
    pub others_cpu_percent: f64,
    /// Percent of all CPUs' time the hypervisor stole during the run.
    pub steal_percent: f64,
    /// /proc/sys/fs/mqueue/msgsize_max.
    pub mq_msgsize_max: String,
    /// /proc/sys/fs/mqueue/msg_max.
    pub mq_msg_max: String,
    /// /proc/sys/fs/pipe-max-size.
    pub pipe_max_size: String,
    /// Start of the run, UTC.
    pub started_utc: String,
    /// Running as root (affects mqueue limits).
    pub root: bool,
}

impl Machine {
    /// Gathers what can be read now.
    pub fn gather(placement: String, cpus_allowed: Vec<usize>) -> Machine {
        let cpuinfo = read_trimmed("/proc/cpuinfo").unwrap_or_default();
        let field = |key: &str| -> Option<String> {
            cpuinfo
                .lines()
                .find(|l| l.split(':').next().map(str::trim) == Some(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        };
        let cpu_model = field("model name").unwrap_or_else(|| "unknown".into());
        let cpu_details = ["cpu family", "model", "stepping", "cache size", "cpu MHz"]
            .iter()
            .filter_map(|k| field(k).map(|v| format!("{k} {v}")))
            .collect::<Vec<_>>()
            .join(", ");
        let virtualized =
            field("flags").is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor"));
        // SAFETY: sysconf has no memory-safety preconditions.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let unknown = || "unknown".to_owned();
        Machine {
            cpu_model,
            cpu_details,
            virtualized,
            cpus_online: usize::try_from(online).unwrap_or(0),
            cpus_allowed,
            kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(unknown),
            clocksource: read_trimmed(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .unwrap_or_else(unknown),
            load_at_start: loadavg(),
            load_at_end: String::new(),
            placement,
            others_cpu_percent: 0.0,
            steal_percent: 0.0,
            mq_msgsize_max: read_trimmed("/proc/sys/fs/mqueue/msgsize_max").unwrap_or_else(unknown),
            mq_msg_max: read_trimmed("/proc/sys/fs/mqueue/msg_max").unwrap_or_else(unknown),
            pipe_max_size: read_trimmed("/proc/sys/fs/pipe-max-size").unwrap_or_else(unknown),
            started_utc: utc_now(),
            root,
        }
    }
}

/// A snapshot of how busy the machine is, to tell afterwards how much of it other processes
/// (and the hypervisor) took while the benchmark ran.
#[derive(Clone, Copy, Debug)]
pub struct CpuSnapshot {
    /// Busy ticks of all CPUs (user, nice, system, irq, softirq), /proc/stat.
    busy: u64,
    /// Ticks stolen by the hypervisor, /proc/stat.
    steal: u64,
    /// CPU time of this process and its reaped children (the peers), in seconds.
    ours: f64,
    at: std::time::Instant,
}

fn rusage_secs(who: libc::c_int) -> f64 {
    // SAFETY: `rusage` is plain data; all-zero bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage` for the call's duration.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

impl CpuSnapshot {
    /// Takes a snapshot now.
    pub fn now() -> CpuSnapshot {
        let mut busy = 0;
        let mut steal = 0;
        if let Some(stat) = read_trimmed("/proc/stat")
            && let Some(line) = stat.lines().next()
        {
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal ...
            if v.len() >= 8 {
                busy = v[0] + v[1] + v[2] + v[5] + v[6];
                steal = v[7];
            }
        }
        CpuSnapshot {
            busy,
            steal,
            ours: rusage_secs(libc::RUSAGE_SELF) + rusage_secs(libc::RUSAGE_CHILDREN),
            at: std::time::Instant::now(),
        }
    }

    /// Percent of all CPUs' time since `earlier` used by other processes, and stolen by the
    /// hypervisor.
    pub fn others_since(&self, earlier: &CpuSnapshot, cpus: usize) -> (f64, f64) {
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let wall = (self.at - earlier.at).as_secs_f64() * cpus.max(1) as f64;
        if wall <= 0.0 {
            return (0.0, 0.0);
        }
        let busy = self.busy.saturating_sub(earlier.busy) as f64 / hz;
        let ours = self.ours - earlier.ours;
        let steal = self.steal.saturating_sub(earlier.steal) as f64 / hz;
        (
            ((busy - ours) / wall * 100.0).clamp(0.0, 100.0),
            (steal / wall * 100.0).clamp(0.0, 100.0),
        )
    }
}

/// The first three fields of /proc/loadavg.
pub fn loadavg() -> String {
    read_trimmed("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The current time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
