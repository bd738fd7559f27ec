//! `list` and `unlink`: the rings on this machine (every shmring object in /dev/shm), the
//! stale ones among them, and removing names.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use clap::Args;
use shmring::OpenError;

use crate::args::human_bytes;
use crate::exit::{Exit, Failure, Outcome, open_status};
use crate::view::{RingReport, SHM_DIR, Users};

/// Options of `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the stale rings: someone attached once, and every endpoint has closed or died
    /// (`unlink --stale` removes them).
    #[arg(long)]
    stale: bool,
    /// Print JSON (an array of objects) instead of a table.
    #[arg(long)]
    json: bool,
    /// Only rings whose name starts with this (e.g. /myapp-).
    #[arg(long, default_value = "/")]
    prefix: String,
}

/// Options of `unlink`.
#[derive(Debug, Args)]
pub struct UnlinkArgs {
    /// Names of the rings to remove (with --stale: only those that are stale; without a
    /// name: every stale ring).
    #[arg(required_unless_present = "stale")]
    names: Vec<String>,
    /// Remove only stale rings: someone attached once, and every endpoint has closed or
    /// died. Each name removed is printed.
    #[arg(long)]
    stale: bool,
    /// With --stale and no name: only rings whose name starts with this (e.g. /myapp-).
    #[arg(long, default_value = "/", requires = "stale")]
    prefix: String,
}

/// The magic bytes every ring object starts with.
const MAGIC: &[u8; 8] = b"SHMRING\0";

/// Whether `/dev/shm/<file>` is a regular file (not followed if a symbolic link) that
/// starts with the ring magic. Opening never blocks (`O_NONBLOCK`) nor follows a link
/// (`O_NOFOLLOW`); nothing but the first 8 bytes is read, and nothing is trusted.
fn has_magic(file: &str) -> bool {
    let Ok(f) = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(format!("{SHM_DIR}/{file}"))
    else {
        return false;
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut magic = [0u8; 8];
    f.read_exact_at(&mut magic, 0).is_ok() && &magic == MAGIC
}

/// The names of every ring object in /dev/shm that this user can read and whose name starts
/// with `prefix`, sorted.
pub fn scan(prefix: &str) -> Result<Vec<String>, Failure> {
    let dir = std::fs::read_dir(SHM_DIR)
        .map_err(|e| Failure::new(Exit::Error, format!("reading {SHM_DIR}: {e}")))?;
    let mut names = Vec::new();
    for entry in dir.flatten() {
        // The entry's own type: a symbolic link is never followed.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Some(file) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let name = format!("/{file}");
        if name.starts_with(prefix) && shmring::validate_name(&name).is_ok() && has_magic(&file) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

pub fn list(a: ListArgs) -> Outcome {
    let users = Users::load();
    let reports: Vec<RingReport> = scan(&a.prefix)?
        .iter()
        .map(|name| RingReport::new(name, shmring::inspect(name), &users))
        .filter(|r| !a.stale || r.stale)
        .collect();
    let mut out = io::stdout().lock();
    let written = if a.json {
        serde_json::to_writer_pretty(&mut out, &reports)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_table(&mut out, &reports)
    };
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Failure::new(
            Exit::Error,
            format!("writing standard output: {e}"),
        )),
        _ => Ok(Exit::Ok),
    }
}

fn write_table(out: &mut impl Write, reports: &[RingReport]) -> io::Result<()> {
    let header = [
        "NAME",
        "KIND",
        "SIZE",
        "FILL",
        "MSGS",
        "ENDPOINTS",
        "OWNER",
        "MODE",
        "STATUS",
    ];
    let dash = || "-".to_owned();
    let rows: Vec<[String; 9]> = reports
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.kind.clone().unwrap_or_else(dash),
                r.object_bytes.map_or_else(dash, human_bytes),
                r.fill.map_or_else(dash, |f| format!("{:.1}%", f * 100.0)),
                r.messages.map_or_else(dash, |m| m.to_string()),
                r.endpoint_summary(),
                r.owner.clone().unwrap_or_else(dash),
                r.mode.clone().unwrap_or_else(dash),
                r.status.to_owned(),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &[&str]| -> io::Result<()> {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                writeln!(out, "{cell}")?;
            } else {
                write!(out, "{cell:<w$}  ", w = width[i])?;
            }
        }
        Ok(())
    };
    line(out, &header)?;
    for row in &rows {
        line(out, &row.each_ref().map(String::as_str))?;
    }
    Ok(())
}

pub fn unlink(a: UnlinkArgs) -> Outcome {
    let mut first_failure: Option<Failure> = None;
    let mut fail = |f: Failure| {
        eprintln!("shmring: error: {f}");
        first_failure.get_or_insert(f);
    };
    if a.stale {
        let scanned = a.names.is_empty();
        let names = if scanned { scan(&a.prefix)? } else { a.names };
        let mut removed = 0;
        let mut out = io::stdout().lock();
        for name in &names {
            match shmring::unlink_if_stale(name) {
                Ok(true) => {
                    removed += 1;
                    let _ = writeln!(out, "{name}");
                }
                Ok(false) => {}
                // Gone meanwhile, or a ring this user may not remove: only an error if asked
                // for by name.
                Err(e) if scanned && a_scan_skips(&e) => {}
                Err(e) => fail(Failure::from(e).about(name)),
            }
        }
        let _ = out.flush();
        eprintln!(
            "shmring: removed {removed} stale ring{}",
            if removed == 1 { "" } else { "s" }
        );
    } else {
        for name in &a.names {
            if let Err(e) = shmring::validate_name(name) {
                fail(Failure::from(e));
                continue;
            }
            let file = &name[1..];
            if !has_magic(file) {
                let f = match std::fs::symlink_metadata(format!("{SHM_DIR}/{file}")) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        Failure::from(OpenError::NotFound(name.clone()))
                    }
                    Err(e) => Failure::new(Exit::Error, format!("{name}: {e}")),
                    Ok(_) => Failure::new(
                        Exit::WrongKind,
                        format!(
                            "{name}: not a shmring ring (no ring magic, or unreadable); not removed"
                        ),
                    ),
                };
                fail(f);
                continue;
            }
            if let Err(e) = shmring::unlink(name) {
                fail(Failure::from(e));
            }
        }
    }
    match first_failure {
        Some(f) => Ok(f.exit),
        None => Ok(Exit::Ok),
    }
}

/// Errors that a scan of every ring passes over silently: the ring vanished, or this user
/// may not remove it (another user's).
fn a_scan_skips(e: &OpenError) -> bool {
    matches!(
        open_status(e),
        Exit::NotFound | Exit::Error | Exit::WrongKind | Exit::Corrupted
    )
}
