//! `stat`: one ring in detail (geometry, fill level, indices, sleepers, each endpoint's pid
//! and liveness), once or refreshed like `top` with rates per second.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::args::{human_bytes, parse_secs};
use crate::exit::{Exit, Failure, Outcome};
use crate::view::{RingReport, SHM_DIR, Users};

/// Options of `stat`.
#[derive(Debug, Args)]
pub struct StatArgs {
    /// Name of the ring.
    name: String,
    /// Print JSON (with --watch: one object per line and refresh).
    #[arg(long)]
    json: bool,
    /// Refresh until interrupted (or --count refreshes), with rates per second.
    #[arg(long)]
    watch: bool,
    /// Seconds between refreshes.
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    interval: Duration,
    /// With --watch: stop after this many refreshes.
    #[arg(long)]
    count: Option<u64>,
}

/// Rates between two refreshes.
#[derive(Clone, Copy, Debug, Serialize)]
struct Rates {
    /// `bytes` (SPSC: the indices count bytes of the region) or `messages` (MPMC).
    unit: &'static str,
    /// Sent (tail advance) per second.
    sent_per_sec: f64,
    /// Received (head advance) per second.
    received_per_sec: f64,
}

#[derive(Serialize)]
struct Watched<'a> {
    #[serde(flatten)]
    ring: &'a RingReport,
    rates: Option<Rates>,
}

/// The report of `name`, or the failure to inspect it.
fn report(name: &str, users: &Users) -> Result<RingReport, Failure> {
    match shmring::inspect(name) {
        Ok(info) => Ok(RingReport::new(name, Ok(info), users)),
        Err(e) => Err(Failure::from(e).about(name)),
    }
}

pub fn stat(a: StatArgs) -> Outcome {
    let users = Users::load();
    let mut out = io::stdout().lock();
    let clear = a.watch && !a.json && out.is_terminal();
    let mut previous: Option<(Instant, RingReport)> = None;
    let mut shown = 0u64;
    loop {
        let r = report(&a.name, &users)?;
        let now = Instant::now();
        let rates = previous.as_ref().and_then(|(t, p)| rates(p, &r, now - *t));
        let written = if a.json {
            let w = Watched { ring: &r, rates };
            let s = if a.watch {
                serde_json::to_string(&w)
            } else {
                serde_json::to_string_pretty(&w)
            };
            writeln!(out, "{}", s.unwrap_or_default())
        } else {
            if clear {
                // Home and clear the screen, as `top` and `watch` do.
                let _ = write!(out, "\x1b[H\x1b[2J");
            } else if shown > 0 {
                let _ = writeln!(out);
            }
            write_stat(&mut out, &r, rates, a.watch)
        };
        match written.and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(Exit::Ok),
            Err(e) => {
                return Err(Failure::new(
                    Exit::Error,
                    format!("writing standard output: {e}"),
                ));
            }
        }
        shown += 1;
        if !a.watch || a.count.is_some_and(|c| shown >= c) {
            return Ok(Exit::Ok);
        }
        previous = Some((now, r));
        std::thread::sleep(a.interval);
    }
}

fn rates(before: &RingReport, after: &RingReport, dt: Duration) -> Option<Rates> {
    let secs = dt.as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let per_sec = |a: Option<u64>, b: Option<u64>| Some(b?.wrapping_sub(a?) as f64 / secs);
    Some(Rates {
        unit: if after.kind.as_deref() == Some("mpmc") {
            "messages"
        } else {
            "bytes"
        },
        sent_per_sec: per_sec(before.tail, after.tail)?,
        received_per_sec: per_sec(before.head, after.head)?,
    })
}

fn write_stat(
    out: &mut impl Write,
    r: &RingReport,
    rates: Option<Rates>,
    watching: bool,
) -> io::Result<()> {
    let spsc = r.kind.as_deref() == Some("spsc");
    let na = || "?".to_owned();
    let (send_side, recv_side) = if spsc {
        ("producer", "consumer")
    } else {
        ("senders", "receivers")
    };
    writeln!(out, "name:        {}", r.name)?;
    writeln!(out, "kind:        {}", r.kind.as_deref().unwrap_or("?"))?;
    writeln!(out, "status:      {}", r.status)?;
    writeln!(
        out,
        "object:      {SHM_DIR}{}, {} bytes, mode {}, owner {} (uid {})",
        r.name,
        r.object_bytes.unwrap_or(0),
        r.mode.as_deref().unwrap_or("?"),
        r.owner.as_deref().unwrap_or("?"),
        r.uid.map_or_else(na, |u| u.to_string()),
    )?;
    if spsc {
        writeln!(
            out,
            "capacity:    {} bytes, largest message {} bytes",
            r.capacity.unwrap_or(0),
            r.max_message.unwrap_or(0)
        )?;
    } else {
        writeln!(
            out,
            "capacity:    {} slots of {} bytes, largest message {} bytes, {} registry entries",
            r.capacity.unwrap_or(0),
            r.slot_size.unwrap_or(0),
            r.max_message.unwrap_or(0),
            r.registry.unwrap_or(0)
        )?;
    }
    writeln!(
        out,
        "fill:        {:.1}% ({} of {} in use)",
        r.fill.unwrap_or(0.0) * 100.0,
        human_bytes(r.used_bytes.unwrap_or(0)),
        human_bytes(r.data_bytes.unwrap_or(0)),
    )?;
    writeln!(
        out,
        "in flight:   {} messages, {} payload bytes",
        r.messages.map_or_else(na, |m| m.to_string()),
        r.payload_bytes.map_or_else(na, |b| b.to_string()),
    )?;
    writeln!(
        out,
        "head/tail:   {} / {} ({})",
        r.head.unwrap_or(0),
        r.tail.unwrap_or(0),
        if spsc { "bytes" } else { "positions" }
    )?;
    writeln!(
        out,
        "asleep:      {} waiting for messages, {} waiting for room",
        r.waiting_receivers.unwrap_or(0),
        r.waiting_senders.unwrap_or(0),
    )?;
    let closed = |c: Option<bool>| if c == Some(true) { "closed" } else { "open" };
    writeln!(
        out,
        "sides:       {send_side} {}, {recv_side} {}",
        closed(r.senders_closed),
        closed(r.receivers_closed)
    )?;
    if let Some(c) = &r.corruption {
        writeln!(out, "corrupted:   {c}")?;
    }
    if watching {
        match rates {
            Some(x) if x.unit == "bytes" => writeln!(
                out,
                "rate:        sent {}/s, received {}/s",
                human_bytes(x.sent_per_sec as u64),
                human_bytes(x.received_per_sec as u64)
            )?,
            Some(x) => writeln!(
                out,
                "rate:        sent {:.0} msg/s, received {:.0} msg/s",
                x.sent_per_sec, x.received_per_sec
            )?,
            None => writeln!(out, "rate:        (after the next refresh)")?,
        }
    }
    writeln!(out, "endpoints:   {}", r.endpoint_summary())?;
    if !r.endpoints.is_empty() {
        writeln!(out, "  SLOT  ROLE      PID       STATE")?;
        for e in &r.endpoints {
            writeln!(
                out,
                "  {:<4}  {:<8}  {:<8}  {}",
                e.slot, e.role, e.pid, e.state
            )?;
        }
    }
    Ok(())
}
