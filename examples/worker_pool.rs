//! A pool of worker processes fed from one MPMC ring.
//!
//! The main process creates two rings: `jobs` (it sends, the workers receive) and `results`
//! (the workers send, it receives). It starts three workers (this program again, with the
//! argument `worker`), sends them 20,000 jobs, and prints who did how many. Each job is a
//! number; its result is the number of Collatz steps that number takes to reach 1.
//!
//! ```text
//! cargo run --release --example worker_pool
//! ```

use std::error::Error;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use shmring::mpmc;

const WORKERS: u64 = 3;
const JOBS: u64 = 20_000;

/// Removes the rings' names when the main process is done (also on an early error).
struct Names {
    jobs: String,
    results: String,
}

impl Drop for Names {
    fn drop(&mut self) {
        let _ = shmring::unlink(&self.jobs);
        let _ = shmring::unlink(&self.results);
    }
}

fn collatz_steps(mut n: u64) -> u64 {
    let mut steps = 0;
    while n > 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

fn word(m: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(m[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
}

/// A worker: takes jobs until the job ring ends, answers each on the result ring.
fn worker(jobs: &str, results: &str, id: u64) -> Result<(), Box<dyn Error>> {
    let mut rx = mpmc::Receiver::open(jobs)?;
    let mut tx = mpmc::Sender::open(results)?;
    // Tell the main process we are attached (it keeps the results ring open until then).
    tx.send(&[id.to_le_bytes(), u64::MAX.to_le_bytes(), 0u64.to_le_bytes()].concat())
        .map_err(std::io::Error::from)?;
    while let Ok(job) = rx.recv() {
        let n = word(&job, 0);
        drop(job); // free the slot before the (possibly long) work
        let steps = collatz_steps(n);
        // Write the answer in place in the result ring.
        let mut g = tx.reserve(24)?;
        g[..8].copy_from_slice(&id.to_le_bytes());
        g[8..16].copy_from_slice(&n.to_le_bytes());
        g[16..24].copy_from_slice(&steps.to_le_bytes());
        g.commit(24)?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        let id = args[4].parse()?;
        return worker(&args[2], &args[3], id);
    }

    let pid = std::process::id();
    let names = Names {
        jobs: format!("/shmring-pool-jobs-{pid}"),
        results: format!("/shmring-pool-results-{pid}"),
    };
    let ring = shmring::mpmc::Config::default()
        .slots(256)
        .max_message_bytes(48);
    let mut jobs = mpmc::Sender::create(&names.jobs, ring)?;
    let mut results = mpmc::Receiver::create(&names.results, ring)?;
    // Holds the results ring's sending side open until the workers have attached to it (a
    // side closes for good when its last endpoint leaves).
    let hold = mpmc::Sender::open(&names.results)?;

    let exe = std::env::current_exe()?;
    let mut children: Vec<Child> = (0..WORKERS)
        .map(|id| {
            Command::new(&exe)
                .args(["worker", &names.jobs, &names.results, &id.to_string()])
                .spawn()
        })
        .collect::<Result<_, _>>()?;

    // Every worker says hello once it is attached to both rings. Only then do jobs go out:
    // otherwise a fast worker could take every job and leave (closing the job ring's
    // receiving side) before a slow one has even attached.
    for _ in 0..WORKERS {
        let hello = results.recv_timeout(Duration::from_secs(30))?;
        assert_eq!(word(&hello, 1), u64::MAX, "a hello comes first");
    }
    drop(hold);
    // Everyone is attached: the names are no longer needed.
    let _ = shmring::unlink(&names.jobs);
    let _ = shmring::unlink(&names.results);

    let started = Instant::now();
    // Jobs go out from a thread while this one collects results, so neither ring can fill
    // up with nobody draining it.
    let feeder = std::thread::spawn(move || {
        for n in 1..=JOBS {
            jobs.send(&n.to_le_bytes()).expect("workers are gone");
        }
        // Dropping the sender ends the job stream: workers drain it and exit.
    });

    let mut done = vec![0u64; WORKERS as usize];
    let mut answered = vec![false; JOBS as usize + 1];
    let (mut longest, mut longest_n) = (0, 0);
    while let Ok(m) = results.recv() {
        let (id, n, steps) = (word(&m, 0), word(&m, 1), word(&m, 2));
        drop(m);
        assert!(!answered[n as usize], "job {n} answered twice");
        answered[n as usize] = true;
        done[id as usize] += 1;
        if steps > longest {
            (longest, longest_n) = (steps, n);
        }
    }
    feeder.join().expect("feeder thread");
    for c in &mut children {
        let status = c.wait()?;
        assert!(status.success(), "worker failed: {status}");
    }

    let total: u64 = done.iter().sum();
    assert_eq!(total, JOBS, "every job answered");
    println!(
        "{JOBS} jobs done by {WORKERS} worker processes in {:.1?}",
        started.elapsed()
    );
    for (id, n) in done.iter().enumerate() {
        println!("  worker {id}: {n} jobs");
    }
    println!("  longest: {longest_n} takes {longest} Collatz steps");
    Ok(())
}
