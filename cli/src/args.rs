//! Argument types shared by the subcommands: sizes with suffixes, modes, seconds, ring kinds,
//! framings and wait strategies.

use std::time::Duration;

use clap::ValueEnum;
use shmring::{RingKind, WaitStrategy};

/// Parses a byte count with an optional binary suffix: `4096`, `64K`, `1M`, `1G`, `64KiB`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 4096, 64K, 1M, 1G)"))?;
    let mult: usize = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size suffix {other:?} in {s:?} (use K, M or G)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses permission bits in octal (`600`, `0o640`).
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim_start_matches("0o");
    let m = u32::from_str_radix(t, 8).map_err(|_| format!("{s:?} is not an octal mode"))?;
    if m & !0o777 != 0 {
        return Err(format!("mode {s} has bits outside 0o777"));
    }
    Ok(m)
}

/// Parses a number of seconds (fractions allowed).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err(format!("{s:?} is not a usable number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// The two kinds of ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// One producer, one consumer, variable-length messages.
    Spsc,
    /// Any number of senders and receivers, fixed-size slots.
    Mpmc,
}

impl From<RingKind> for Kind {
    fn from(k: RingKind) -> Kind {
        match k {
            RingKind::Spsc => Kind::Spsc,
            RingKind::Mpmc => Kind::Mpmc,
        }
    }
}

/// How messages are delimited on standard input (`send`) and output (`recv`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Framing {
    /// One message per line; the newline is not part of the message.
    Lines,
    /// Each message ends with a NUL byte (as `find -print0`, `xargs -0`).
    Nul,
    /// Each message is a 4-byte little-endian length, then that many bytes (binary-safe).
    Len32,
}

/// How a blocked call waits (`WaitStrategy`).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Wait {
    /// Spin briefly, then sleep on the futex.
    Adaptive,
    /// Sleep at once.
    Block,
    /// Never sleep.
    Spin,
}

impl From<Wait> for WaitStrategy {
    fn from(w: Wait) -> WaitStrategy {
        match w {
            Wait::Adaptive => WaitStrategy::Adaptive,
            Wait::Block => WaitStrategy::Block,
            Wait::Spin => WaitStrategy::Spin,
        }
    }
}

/// Sizes for people: `512 B`, `64.0 KiB`, `1.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64K"), Ok(64 << 10));
        assert_eq!(parse_bytes("1m"), Ok(1 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert!(parse_bytes("12Q").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("99999999999999999999G").is_err());
    }

    #[test]
    fn modes_and_seconds() {
        assert_eq!(parse_mode("640"), Ok(0o640));
        assert!(parse_mode("1777").is_err());
        assert!(parse_mode("9").is_err());
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("nan").is_err());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1 << 20), "1.0 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
