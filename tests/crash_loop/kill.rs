//! Killing the crash loop's victims: when (a moment, a phase, a sleep in the futex), how
//! (SIGKILL by pid), and where the kills landed; pinning a round to one CPU.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use super::board::{self, PHASE, PHASES, Slot, XorShift};
use super::common::{self, procs::Started};

/// When to kill a victim.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Aim {
    /// At a moment chosen in advance.
    At(Instant),
    /// Right after the victim reports entering `phase` (`jitter` later, inside the call that
    /// follows), or after `AIM_LIMIT` if it never does.
    Phase { phase: u64, jitter: Duration },
    /// Once the victim sleeps in the futex (the SPSC survivor stops serving the ring so that
    /// it must), or after `AIM_LIMIT`.
    Futex,
}

/// How long an aimed kill waits for its phase or sleep.
pub(crate) const AIM_LIMIT: Duration = Duration::from_millis(300);

impl Aim {
    /// 40 % of the kills at a random delay after `from` (a fifth of those while the child
    /// starts and attaches); 45 % aimed at one of `phases`, which a delay alone rarely hits
    /// (an attach or a close takes microseconds); 15 % at a sleep in the futex.
    pub(crate) fn pick(rng: &mut XorShift, from: Instant, phases: &[u64]) -> Aim {
        match rng.below(20) {
            0..=8 => {
                return Aim::Phase {
                    phase: phases[rng.below(phases.len() as u64) as usize],
                    jitter: Duration::from_nanos(rng.below(50_000)),
                };
            }
            9..=11 => return Aim::Futex,
            _ => {}
        }
        Aim::At(
            from + Duration::from_micros(match rng.below(10) {
                0 | 1 => rng.below(8_000),
                2..=6 => 8_000 + rng.below(32_000),
                _ => 40_000 + rng.below(80_000),
            }),
        )
    }

    /// Waits for the moment to kill the child `pid` reporting on `slot`; `shared_cpu`: the
    /// child may run on this thread's CPU.
    pub(crate) fn wait(self, pid: u32, slot: Slot<'_>, shared_cpu: bool) {
        match self {
            Aim::At(at) => std::thread::sleep(at.saturating_duration_since(Instant::now())),
            Aim::Futex => {
                let limit = Instant::now() + AIM_LIMIT;
                while !in_futex(pid, slot.get(board::TID)) && Instant::now() < limit {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            Aim::Phase { phase, jitter } => {
                slot.set(board::SEEN, 0);
                slot.set(board::AIM, phase + 1);
                let limit = Instant::now() + AIM_LIMIT;
                while slot.get(PHASE) != phase && Instant::now() < limit {
                    pause(shared_cpu);
                }
                slot.set(board::SEEN, 1);
                let until = Instant::now() + jitter;
                while Instant::now() < until {
                    pause(shared_cpu);
                }
            }
        }
    }

    /// Whether to look if the victim sleeps in the futex before killing it (a few
    /// microseconds that an aimed kill cannot spare).
    pub(crate) fn looks(self) -> bool {
        !matches!(self, Aim::Phase { .. })
    }
}

/// One round of a busy wait; lets the child run if it may share our CPU.
pub(crate) fn pause(shared_cpu: bool) {
    if shared_cpu {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Whether thread `tid` of `pid` sleeps in `futex(2)` now, from the kernel function it
/// waits in (`wchan`). (Not `/proc/.../syscall`: reading that waits until the thread is off
/// the CPU, which would move the kill to the victim's next blocking point.)
pub(crate) fn in_futex(pid: u32, tid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan"))
        .is_ok_and(|w| w.contains("futex"))
}

/// SIGKILL to our child `pid` (not reaped yet, so the pid is still its own); returns when
/// it was sent and (if `look`) whether the child's ring thread was asleep in the futex just
/// before.
pub(crate) fn sigkill(pid: u32, slot: Slot<'_>, look: bool) -> (Instant, bool) {
    let futex = look && in_futex(pid, slot.get(board::TID));
    let at = Instant::now();
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill child");
    (at, futex)
}

/// Reaps a killed child and checks that SIGKILL ended it (not a failure of its own).
pub(crate) fn reap_killed(child: &mut Started, what: &str) {
    let status = child.wait();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{what}: {status}");
}

/// Where the kills landed.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) kills: u64,
    by_phase: [u64; PHASES.len()],
    in_futex: u64,
}

impl Tally {
    /// Counts a kill; `phase` is the victim's last phase, read after it was reaped.
    pub(crate) fn add(&mut self, phase: u64, futex: bool) {
        self.kills += 1;
        self.by_phase[(phase as usize).min(PHASES.len() - 1)] += 1;
        self.in_futex += u64::from(futex);
    }

    pub(crate) fn report(&self) -> String {
        let phases: Vec<String> = PHASES
            .iter()
            .zip(self.by_phase)
            .filter(|(_, n)| *n > 0)
            .map(|(p, n)| format!("{p} {n}"))
            .collect();
        format!(
            "{} kills; last phase: {}; asleep in the futex: {}",
            self.kills,
            phases.join(", "),
            self.in_futex
        )
    }
}

/// Pins the calling thread to one CPU until dropped (then restores its affinity).
pub(crate) struct Pinned(Option<rustix::thread::CpuSet>);

impl Pinned {
    pub(crate) fn to(cpu: usize) -> Pinned {
        let old = rustix::thread::sched_getaffinity(None).ok();
        assert!(common::pin_to_cpu(cpu), "pin to CPU {cpu}");
        Pinned(old)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(set) = &self.0 {
            let _ = rustix::thread::sched_setaffinity(None, set);
        }
    }
}

/// The CPUs this thread may run on.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    let set = rustix::thread::sched_getaffinity(None).expect("sched_getaffinity");
    (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .collect()
}
