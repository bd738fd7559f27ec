//! The process's doorbell dispatcher (started by the first async handle) needs an inotify
//! instance, and a user has only `fs.inotify.max_user_instances` of them. A peer of the same
//! user that holds them all when the first async handle is made makes that handle fail, with
//! the system's error and the limit named; once the peer lets go, the next async handle starts
//! the dispatcher and works.
//!
//! Both the hog and the process under test are children (re-executions of this binary), so
//! the process under test starts its dispatcher for the first time in the test. They switch to
//! a user id of their own (so the test needs root) whose inotify instances no other process
//! uses: the hog starves no one else, and no one else disturbs the count.

mod common;

use std::error::Error as _;
use std::io;
use std::time::Duration;

use common::RingName;
use common::procs::{self, Started};
use shmring::evented::{AsyncConsumer, AsyncProducer};
use shmring::{WaitStrategy, spsc};

const ENTRY: &str = "child_entry";
const LIMIT: &str = "/proc/sys/fs/inotify/max_user_instances";

/// Dispatcher run in child processes; does nothing unless started by `procs::start`.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child_entry() {
    let Some(role) = procs::role() else {
        return;
    };
    let uid: u32 = common::env("HUB_UID").parse().unwrap();
    if let Err(e) = become_user(uid) {
        let errno = e.raw_os_error().unwrap_or(0);
        procs::ready(&[("unsupported", format!("setresuid({uid})-errno-{errno}"))]);
        return;
    }
    match role.as_str() {
        "hog" => hog(),
        "first_user" => first_user(),
        other => panic!("unknown role {other}"),
    }
}

/// Switches every id of this process (all threads) to `uid`, for good.
fn become_user(uid: u32) -> io::Result<()> {
    // SAFETY: setgroups with an empty list, setresgid and setresuid take plain integers.
    let failed = unsafe {
        libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(uid, uid, uid) != 0
            || libc::setresuid(uid, uid, uid) != 0
    };
    if failed {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes inotify instances until the kernel refuses, reports how many, and holds them until
/// killed (or until its stdin ends).
fn hog() {
    let mut held = Vec::new();
    let error = loop {
        // SAFETY: inotify_init1 takes flags and returns a new fd or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            break io::Error::last_os_error();
        }
        held.push(fd);
    };
    assert_eq!(
        error.raw_os_error(),
        Some(libc::EMFILE),
        "after {} instances: {error}",
        held.len()
    );
    procs::ready(&[("held", held.len().to_string())]);
    while procs::read_command().is_some() {}
}

/// Makes the first async handle of this process while the hog holds every instance and
/// reports the error. Then (told that the hog is gone) makes four at once, which must start
/// one dispatcher, and two more that move a message, the receiver parked so that only the
/// dispatcher's doorbell can wake it.
fn first_user() {
    let ring = common::env("RING_A");
    let tx = spsc::Producer::create(&ring, spsc::Config::default()).expect("create ring");
    let error = AsyncProducer::new(tx).expect_err("no inotify instance is left for this user");
    let cause = error
        .source()
        .and_then(|s| s.downcast_ref::<io::Error>())
        .unwrap_or_else(|| panic!("the error keeps no system error as its source: {error:?}"));
    assert_eq!(cause.raw_os_error(), Some(libc::EMFILE), "{error}");
    let text = error.to_string();
    assert!(text.contains("fs.inotify.max_user_instances"), "{text}");
    // The failed start left nothing behind.
    assert_eq!(dispatcher_threads(), 0);
    assert_eq!(epoll_fds(), 0);
    println!("FIRST-FAILED {text}");

    assert_eq!(procs::read_command().as_deref(), Some("hog-gone"));
    // Several first handles at once start one dispatcher.
    let start = std::sync::Barrier::new(4);
    let handles: Vec<AsyncProducer> = std::thread::scope(|s| {
        let made: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let config = spsc::Config::default().capacity_bytes(4096);
                    let (tx, _fd) = spsc::Producer::create_anonymous(config).expect("memfd ring");
                    start.wait();
                    AsyncProducer::new(tx).expect("the dispatcher starts now")
                })
            })
            .collect();
        made.into_iter().map(|t| t.join().unwrap()).collect()
    });
    // A new thread names itself once it runs: give every dispatcher thread started time to.
    let named = std::time::Instant::now();
    while dispatcher_threads() == 0 && named.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(dispatcher_threads(), 1);
    assert_eq!(epoll_fds(), 1);
    drop(handles);

    let ring = common::env("RING_B");
    let tx = spsc::Producer::create(&ring, spsc::Config::default()).expect("create ring");
    let mut rx = spsc::Consumer::open(&ring).expect("open ring");
    rx.set_wait_strategy(WaitStrategy::Block);
    let mut tx = AsyncProducer::new(tx).expect("the dispatcher runs");
    let mut rx = AsyncConsumer::new(rx).expect("the dispatcher runs");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let receiver = tokio::spawn(async move {
            let got = rx.recv().await.map(|m| m.to_vec());
            (got, rx.wait_stats().sleeps)
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(b"after the hog").await.unwrap();
        let (got, sleeps) = tokio::time::timeout(Duration::from_secs(20), receiver)
            .await
            .expect("the parked receiver was never woken")
            .unwrap();
        assert_eq!(got.unwrap(), b"after the hog");
        assert!(sleeps >= 1, "the receiver never parked");
    });
    println!("SECOND-WORKED");
}

/// Threads of this process named like the dispatcher (`comm` keeps 15 bytes of its name).
fn dispatcher_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|task| {
            let comm = task.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|name| name.trim() == "shmring-doorbel")
        })
        .count()
}

/// Epoll descriptors open in this process.
fn epoll_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter(|fd| {
            std::fs::read_link(fd.as_ref().unwrap().path())
                .is_ok_and(|target| target.to_string_lossy() == "anon_inode:[eventpoll]")
        })
        .count()
}

/// An unused user id for this run (so that concurrent runs do not share one), or why the
/// test cannot run here.
fn test_uid() -> Result<u32, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root to run the hog under a user id of its own".into());
    }
    let limit: usize = std::fs::read_to_string(LIMIT)
        .map_err(|e| format!("cannot read {LIMIT}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("{LIMIT}: {e}"))?;
    let mut files = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut files) },
        0
    );
    if files.rlim_cur < limit as libc::rlim_t + 64 {
        return Err(format!(
            "the hog could not hold {limit} inotify instances with {} descriptors",
            files.rlim_cur
        ));
    }
    Ok(1_900_000_000 + std::process::id() % 100_000_000)
}

fn start(role: &str, uid: u32, rings: &[(&str, String)]) -> Started {
    let mut env = vec![("HUB_UID", uid.to_string())];
    env.extend(rings.iter().cloned());
    procs::start(ENTRY, &[], role, &env)
}

#[test]
fn async_handle_after_inotify_exhaustion_reports_limit_and_later_succeeds() {
    let uid = match test_uid() {
        Ok(uid) => uid,
        Err(why) => {
            println!("SKIP: {why}");
            return;
        }
    };
    let mut hog = start("hog", uid, &[]);
    let line = hog.wait_for("READY ");
    if line.contains("unsupported=") {
        println!("SKIP: cannot switch to a user id of the test's own: {line}");
        return;
    }
    let held = procs::Fields::parse(&line);
    assert!(held.get("held").parse::<usize>().unwrap() > 0);

    let (a, b) = (RingName::new("hub-start-a"), RingName::new("hub-start-b"));
    let mut user = start(
        "first_user",
        uid,
        &[("RING_A", a.0.clone()), ("RING_B", b.0.clone())],
    );
    let failed = user.wait_for("FIRST-FAILED ");
    println!("first async handle: {failed}");

    hog.kill();
    hog.reap();
    user.send_line("hog-gone");
    let lines = user.finish();
    assert!(
        lines.iter().any(|l| l.contains("SECOND-WORKED")),
        "{lines:?}"
    );
}
