//! The process's dispatcher of doorbells to parked async ends.
//!
//! Every async handle of the process registers here. The hub owns one inotify instance that
//! watches the objects of every shared ring an async handle uses (the per-user limit on inotify
//! instances is small; watches are cheap, and the same object watched twice is one watch, one
//! watch descriptor), one eventfd per async handle of a heap ring, and one thread that waits
//! for all of them with epoll and wakes the wakers of the ends parked on the ring that rang.
//!
//! Why a thread and not a registration with the runtime's reactor (`AsyncFd`): a reactor
//! registration belongs to one runtime, and a process may run several (or none of tokio's);
//! the per-process inotify instance would have to belong to one of them. A single waiting
//! thread, asleep in `epoll_wait` while nothing happens, serves every runtime: a waker is
//! all a future needs, on a current-thread or a multi-thread runtime, tokio or another
//! executor. It costs one thread per process (not per ring) and one extra hand-off on a
//! wake-up of a parked end; an end that is busy never parks and never involves it.
//!
//! The same thread makes the liveness tick: every [`LIVENESS_TICK`] it wakes every parked
//! end, whose next look at the ring also looks (throttled) at its peer's liveness, so that a
//! peer killed while this end was parked is noticed. While no end is registered it sleeps
//! without a timeout.
//!
//! The first async handle of the process starts the hub. If that fails (most likely because
//! the user's processes already hold `fs.inotify.max_user_instances` inotify instances, which
//! any process of the same user can bring about), the handle fails with an `io::Error` of the
//! system error's kind, whose message names the failed step (and the limit, for `EMFILE` from
//! `inotify_init1`) and whose `source` is the system's error with its `raw_os_error`. Nothing
//! of the failed start remains and the failure is not remembered: the next async handle tries
//! again, and works once instances are free.
//!
//! A child made by `fork` (without `exec`) does not have the thread: async handles made
//! there would never be woken once parked, so make them after `exec`. Async handles made
//! before the fork are inherited copies in the child, whose calls fail at once
//! ([`Corruption::is_inherited`](crate::Corruption::is_inherited)).

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::Instant;

use rustix::event::{EventfdFlags, epoll};

use crate::storage::{BellSource, Storage};
use crate::sync::doorbell::{HeapBell, LIVENESS_TICK, drain, inotify_instance, watch_file};

/// Epoll data of the control eventfd (a new registration wants the tick started).
const CONTROL: u64 = 0;
/// Epoll data of the inotify instance.
const INOTIFY: u64 = 1;
/// Keys of inotify watches: the watch descriptor with this bit set. Keys of heap rings'
/// eventfds are tokens from 2 up (their epoll data), without it.
const WATCH_KEY: u64 = 1 << 63;
/// `IN_Q_OVERFLOW`: events were lost; wake everyone.
const IN_Q_OVERFLOW: u32 = 0x4000;

/// One parked end's place in the hub: the waker to call when its ring rings.
#[derive(Debug, Default)]
struct Slot {
    waker: Mutex<Option<Waker>>,
}

impl Slot {
    fn wake(&self) {
        let waker = lock(&self.waker).take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// What the hub watches for one ring (shared rings: per object; heap rings: per handle).
struct Source {
    /// Registrations using it; the watch or eventfd goes with the last.
    refs: usize,
    slots: Vec<Arc<Slot>>,
    /// A heap ring's eventfd and the bell it is subscribed to.
    event: Option<(Arc<OwnedFd>, Arc<HeapBell>)>,
}

struct State {
    sources: HashMap<u64, Source>,
    next_token: u64,
    registrations: usize,
}

struct Hub {
    epoll: OwnedFd,
    inotify: OwnedFd,
    control: OwnedFd,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process's hub, started by the first registration that finds none. A start that
/// fails leaves nothing behind (no descriptor, no thread) and is not remembered: the next
/// registration tries again. Starts are serialised, so there is never more than one hub.
fn hub() -> io::Result<&'static Hub> {
    static HUB: OnceLock<&'static Hub> = OnceLock::new();
    static STARTING: Mutex<()> = Mutex::new(());
    if let Some(hub) = HUB.get() {
        return Ok(hub);
    }
    let _starting = lock(&STARTING);
    if let Some(hub) = HUB.get() {
        return Ok(hub);
    }
    let hub = Hub::start()?;
    // Cannot fail: only this thread, holding `STARTING`, sets it.
    let _ = HUB.set(hub);
    Ok(hub)
}

/// Why the hub could not be started: the step and the system's error (its `source`).
#[derive(Debug)]
struct StartError {
    step: &'static str,
    cause: io::Error,
}

impl StartError {
    /// Turns the error of `step` into an `io::Error` of the same kind that carries a
    /// `StartError`: its `source` is the system's error, with the failed call's
    /// `raw_os_error`.
    fn at<E: Into<io::Error>>(step: &'static str) -> impl FnOnce(E) -> io::Error {
        move |error| {
            let cause = error.into();
            io::Error::new(cause.kind(), StartError { step, cause })
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "could not start the doorbell dispatcher: {} failed: {}",
            self.step, self.cause
        )?;
        if self.step == INOTIFY_STEP && self.cause.raw_os_error() == Some(libc::EMFILE) {
            write!(
                f,
                " (the user's processes hold as many inotify instances as \
                 fs.inotify.max_user_instances allows, or this process is out of file \
                 descriptors)"
            )?;
        }
        write!(f, "; a later async handle tries again")
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// The step of [`Hub::start`] that needs an inotify instance.
const INOTIFY_STEP: &str = "inotify_init1";

impl Hub {
    /// Makes the hub's descriptors and starts its thread. On failure every descriptor made so
    /// far is closed and no thread runs.
    fn start() -> io::Result<&'static Hub> {
        let epoll =
            epoll::create(epoll::CreateFlags::CLOEXEC).map_err(StartError::at("epoll_create1"))?;
        let inotify = inotify_instance().map_err(StartError::at(INOTIFY_STEP))?;
        let control = rustix::event::eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)
            .map_err(StartError::at("eventfd"))?;
        epoll::add(
            &epoll,
            &inotify,
            epoll::EventData::new_u64(INOTIFY),
            epoll::EventFlags::IN,
        )
        .map_err(StartError::at("epoll_ctl"))?;
        epoll::add(
            &epoll,
            &control,
            epoll::EventData::new_u64(CONTROL),
            epoll::EventFlags::IN,
        )
        .map_err(StartError::at("epoll_ctl"))?;
        // The thread is started before the hub is made permanent and is handed it afterwards:
        // if it cannot be started, the descriptors are dropped (closed) on the way out.
        let (handover, handed) = std::sync::mpsc::sync_channel::<&'static Hub>(1);
        std::thread::Builder::new()
            .name("shmring-doorbell".into())
            .spawn(move || {
                if let Ok(hub) = handed.recv() {
                    hub.run();
                }
            })
            .map_err(StartError::at("starting its thread"))?;
        // Lives as long as the process: the thread uses it until the process exits.
        let hub: &'static Hub = Box::leak(Box::new(Hub {
            epoll,
            inotify,
            control,
            state: Mutex::new(State {
                sources: HashMap::new(),
                next_token: 2,
                registrations: 0,
            }),
        }));
        // Cannot fail: the channel has room, and the thread waits in `recv` until it is sent.
        let _ = handover.send(hub);
        Ok(hub)
    }

    /// The thread: waits for doorbells and wakes the ends parked on the rings that rang.
    fn run(&self) {
        let mut events = [MaybeUninit::<epoll::Event>::uninit(); 64];
        let mut next_tick = Instant::now() + LIVENESS_TICK;
        loop {
            let idle = lock(&self.state).registrations == 0;
            let timeout = if idle {
                None
            } else {
                let left = next_tick.saturating_duration_since(Instant::now());
                Some(rustix::time::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                })
            };
            let ready = match epoll::wait(&self.epoll, &mut events[..], timeout.as_ref()) {
                Ok((ready, _)) => ready.iter().map(|e| e.data.u64()).collect::<Vec<_>>(),
                Err(_) => Vec::new(),
            };
            for data in ready {
                match data {
                    CONTROL => drain(self.control.as_fd()),
                    INOTIFY => self.read_watches(),
                    token => {
                        let fd = lock(&self.state)
                            .sources
                            .get(&token)
                            .and_then(|s| s.event.as_ref().map(|(fd, _)| fd.clone()));
                        if let Some(fd) = fd {
                            drain(fd.as_fd());
                        }
                        self.wake(token);
                    }
                }
            }
            let now = Instant::now();
            if idle {
                next_tick = now + LIVENESS_TICK;
            } else if now >= next_tick {
                next_tick = now + LIVENESS_TICK;
                self.wake_all();
            }
        }
    }

    /// Reads the inotify instance until it is empty and wakes the ends of every watch named.
    fn read_watches(&self) {
        let mut buf = [0u8; 4096];
        loop {
            let n = match rustix::io::read(&self.inotify, &mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            };
            // Each event: wd (i32), mask (u32), cookie (u32), len (u32), then `len` name bytes.
            let mut at = 0;
            while at + 16 <= n {
                let word = |i: usize| {
                    let mut w = [0u8; 4];
                    w.copy_from_slice(&buf[at + i..at + i + 4]);
                    u32::from_ne_bytes(w)
                };
                let (wd, mask, len) = (word(0), word(4), word(12) as usize);
                if mask & IN_Q_OVERFLOW != 0 {
                    self.wake_all();
                } else {
                    self.wake(WATCH_KEY | u64::from(wd));
                }
                at += 16 + len;
            }
        }
    }

    fn wake(&self, key: u64) {
        let slots = match lock(&self.state).sources.get(&key) {
            Some(s) => s.slots.clone(),
            None => return,
        };
        for slot in slots {
            slot.wake();
        }
    }

    fn wake_all(&self) {
        let slots: Vec<Arc<Slot>> = lock(&self.state)
            .sources
            .values()
            .flat_map(|s| s.slots.iter().cloned())
            .collect();
        for slot in slots {
            slot.wake();
        }
    }

    fn register(&'static self, storage: &Storage) -> io::Result<Registration> {
        let slot = Arc::new(Slot::default());
        let mut state = lock(&self.state);
        let key = match storage.bell_source() {
            Some(BellSource::File(fd)) => {
                let wd = watch_file(self.inotify.as_fd(), fd)?;
                let key = WATCH_KEY | u64::from(wd as u32);
                state.sources.entry(key).or_insert_with(|| Source {
                    refs: 0,
                    slots: Vec::new(),
                    event: None,
                });
                key
            }
            Some(BellSource::Heap(bell)) => {
                let fd = bell.subscribe()?;
                let token = state.next_token;
                if let Err(e) = epoll::add(
                    &self.epoll,
                    &*fd,
                    epoll::EventData::new_u64(token),
                    epoll::EventFlags::IN,
                ) {
                    bell.unsubscribe(&fd);
                    return Err(e.into());
                }
                state.next_token += 1;
                state.sources.insert(
                    token,
                    Source {
                        refs: 0,
                        slots: Vec::new(),
                        event: Some((fd, bell.clone())),
                    },
                );
                token
            }
            None => return Err(io::Error::other("this ring has no doorbell")),
        };
        let source = state
            .sources
            .get_mut(&key)
            .expect("the source was just inserted");
        source.refs += 1;
        source.slots.push(slot.clone());
        state.registrations += 1;
        let first = state.registrations == 1;
        drop(state);
        if first {
            // Start the liveness tick of a thread asleep without a timeout.
            let _ = rustix::io::write(&self.control, &1u64.to_ne_bytes());
        }
        Ok(Registration {
            hub: self,
            key,
            slot,
        })
    }

    fn unregister(&self, key: u64, slot: &Arc<Slot>) {
        let mut state = lock(&self.state);
        state.registrations -= 1;
        let Some(source) = state.sources.get_mut(&key) else {
            return;
        };
        source.slots.retain(|s| !Arc::ptr_eq(s, slot));
        source.refs -= 1;
        if source.refs > 0 {
            return;
        }
        let source = state.sources.remove(&key).expect("present");
        match source.event {
            Some((fd, bell)) => {
                let _ = epoll::delete(&self.epoll, &*fd);
                bell.unsubscribe(&fd);
            }
            None => {
                let _ = rustix::fs::inotify::remove_watch(&self.inotify, (key & !WATCH_KEY) as i32);
            }
        }
    }
}

/// An async end's registration with the hub: while it lives, the ring's doorbell wakes the
/// waker last given to [`Registration::set_waker`].
pub(crate) struct Registration {
    hub: &'static Hub,
    key: u64,
    slot: Arc<Slot>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("key", &self.key)
            .finish()
    }
}

impl Registration {
    /// Registers an end of the ring in `storage`, starting the hub if needed.
    pub(crate) fn new(storage: &Storage) -> io::Result<Registration> {
        hub()?.register(storage)
    }

    /// The waker to call at the next doorbell or liveness tick (once; set it again after).
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut w = lock(&self.slot.waker);
        match &*w {
            Some(old) if old.will_wake(waker) => {}
            _ => *w = Some(waker.clone()),
        }
    }

    /// Forgets the waker (the end is busy again).
    pub(crate) fn clear_waker(&self) {
        lock(&self.slot.waker).take();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.key, &self.slot);
    }
}
