//! `create`, `send` and `recv` of both kinds: the pipeline of a million lines, binary-safe
//! framings, and every error's exit status and single line.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use common::{Kid, Name, assert_fails, code, ok, run, run_with, stderr};

/// `seq 1 N | shmring send NAME` and `shmring recv NAME | wc -l` at the same time.
fn pipeline(kind: &str) {
    const N: usize = 1_000_000;
    let name = Name::new(&format!("pipe-{kind}"));
    ok(&run(&["create", name.as_str(), "--kind", kind]));
    let mut recv = Kid::spawn(&["recv", name.as_str()], false, true);
    // Read its output while the sender runs (a full pipe would stop the receiver).
    let mut output = recv.child().stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut output, &mut text).unwrap();
        text
    });
    let mut input = String::with_capacity(7 * N);
    for i in 1..=N {
        input.push_str(&i.to_string());
        input.push('\n');
    }
    let sent = run_with(&["send", name.as_str()], input.as_bytes());
    ok(&sent);
    let out = recv.wait(Duration::from_secs(120));
    ok(&out);
    let text = reader.join().unwrap();
    assert_eq!(text.lines().count(), N);
    // Every line, in order (one sender: its order is kept by both kinds).
    assert_eq!(text, input);
}

#[test]
fn a_million_lines_through_an_spsc_ring() {
    pipeline("spsc");
}

#[test]
fn a_million_lines_through_an_mpmc_ring() {
    pipeline("mpmc");
}

/// Messages with newlines, NULs and every byte value survive `len32`; `nul` keeps newlines.
#[test]
fn binary_framings_round_trip() {
    for kind in ["spsc", "mpmc"] {
        let name = Name::new(&format!("len32-{kind}"));
        ok(&run(&[
            "create",
            name.as_str(),
            "--kind",
            kind,
            "--max-message",
            "300",
        ]));
        let msgs: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"two\nlines\0and a NUL".to_vec(),
            (0..=255u8).collect(),
            vec![b'\n'; 300],
        ];
        let mut framed = Vec::new();
        for m in &msgs {
            framed.extend_from_slice(&(m.len() as u32).to_le_bytes());
            framed.extend_from_slice(m);
        }
        ok(&run_with(
            &["send", name.as_str(), "--framing", "len32"],
            &framed,
        ));
        let out = run(&["recv", name.as_str(), "--framing", "len32", "--count", "4"]);
        assert_eq!(out.stdout, framed, "{kind}: {}", stderr(&out));
        assert_eq!(code(&out), 0);

        let name = Name::new(&format!("nul-{kind}"));
        ok(&run(&["create", name.as_str(), "--kind", kind]));
        ok(&run_with(
            &["send", name.as_str(), "--framing", "nul"],
            b"a\nb\0\0c\0",
        ));
        // The sender closed: recv ends at the end of the stream with status 0.
        let out = run(&["recv", name.as_str(), "--framing", "nul"]);
        assert_eq!(ok(&out), "a\nb\0\0c\0");
    }
}

#[test]
fn lines_framing_splits_only_at_newlines() {
    let name = Name::new("lines");
    ok(&run(&["create", name.as_str()]));
    ok(&run_with(
        &["send", name.as_str()],
        b"x\0y\n\nlast without newline",
    ));
    let out = run(&["recv", name.as_str()]);
    assert_eq!(ok(&out), "x\0y\n\nlast without newline\n");
}

/// Arguments are messages; `--count` stops early.
#[test]
fn arguments_and_count() {
    for kind in ["spsc", "mpmc"] {
        let name = Name::new(&format!("args-{kind}"));
        ok(&run(&["create", name.as_str(), "--kind", kind]));
        ok(&run(&["send", name.as_str(), "one", "two", "three"]));
        let out = run(&["recv", name.as_str(), "--count", "2"]);
        assert_eq!(ok(&out), "one\ntwo\n", "{kind}");
        // Every end that attached is gone: no new sender may attach.
        assert_fails(&run(&["send", name.as_str(), "four"]), 5, "closed for good");
    }
}

#[test]
fn create_with_role_keeps_an_end() {
    let name = Name::new("role");
    let mut receiver = Kid::spawn(
        &[
            "create",
            name.as_str(),
            "--kind",
            "mpmc",
            "--role",
            "receiver",
            "--count",
            "2",
        ],
        false,
        true,
    );
    common::eventually("the ring exists", || {
        shmring::inspect(name.as_str()).is_ok_and(|i| !i.endpoints.is_empty())
    });
    ok(&run(&["send", name.as_str(), "a", "b"]));
    let out = Kid(receiver.0.take()).wait(Duration::from_secs(60));
    assert_eq!(ok(&out), "a\nb\n");
    // Without --keep, the creator removed the name when it ended.
    assert!(matches!(
        shmring::inspect(name.as_str()),
        Err(shmring::OpenError::NotFound(_))
    ));
}

#[test]
fn recv_timeout_is_status_4() {
    for kind in ["spsc", "mpmc"] {
        let name = Name::new(&format!("rto-{kind}"));
        ok(&run(&["create", name.as_str(), "--kind", kind]));
        let out = run(&["recv", name.as_str(), "--timeout", "0.2"]);
        assert_fails(&out, 4, "no message within 0.200 s (0 received)");
    }
}

#[test]
fn send_timeout_is_status_4() {
    // A small ring nobody receives from fills up (three 16-byte records and the 8 bytes kept
    // free after the last one).
    let name = Name::new("sto-spsc");
    ok(&run(&["create", name.as_str(), "--capacity", "64"]));
    let out = run(&[
        "send",
        name.as_str(),
        "--timeout",
        "0.2",
        "aaaaaaaa",
        "bbbbbbbb",
        "cccccccc",
        "dddddddd",
        "eeeeeeee",
    ]);
    assert_fails(&out, 4, "no room within 0.200 s (3 messages sent)");

    let name = Name::new("sto-mpmc");
    ok(&run(&[
        "create",
        name.as_str(),
        "--kind",
        "mpmc",
        "--slots",
        "2",
    ]));
    let out = run(&["send", name.as_str(), "--timeout", "0.2", "a", "b", "c"]);
    assert_fails(&out, 4, "(2 messages sent)");
}

#[test]
fn not_found_is_status_3() {
    let name = Name::new("missing");
    for args in [
        vec!["send", name.as_str(), "x"],
        vec!["recv", name.as_str()],
        vec!["send", name.as_str(), "--kind", "mpmc", "x"],
    ] {
        assert_fails(&run(&args), 3, "no shared-memory object named");
    }
}

#[test]
fn wrong_kind_is_status_7() {
    let spsc = Name::new("kind-spsc");
    ok(&run(&["create", spsc.as_str()]));
    assert_fails(
        &run(&["recv", spsc.as_str(), "--kind", "mpmc"]),
        7,
        "wrong ring kind: object is SPSC, expected MPMC",
    );
    let mpmc = Name::new("kind-mpmc");
    ok(&run(&["create", mpmc.as_str(), "--kind", "mpmc"]));
    assert_fails(
        &run(&["send", mpmc.as_str(), "--kind", "spsc", "x"]),
        7,
        "wrong ring kind",
    );
    // Not a ring at all.
    let junk = Name::new("junk");
    std::fs::write(junk.path(), vec![1u8; 8192]).unwrap();
    assert_fails(&run(&["recv", junk.as_str()]), 7, "not a shmring object");
}

#[test]
fn bad_sizes_are_status_2() {
    let name = Name::new("sizes");
    for args in [
        vec!["create", name.as_str(), "--capacity", "12Q"],
        vec!["create", name.as_str(), "--capacity", "3000"],
        vec!["create", name.as_str(), "--kind", "mpmc", "--slots", "3"],
        vec![
            "create",
            name.as_str(),
            "--kind",
            "mpmc",
            "--capacity",
            "1M",
        ],
        vec!["create", name.as_str(), "--slots", "16"],
        vec!["create", "no-slash"],
    ] {
        let out = run(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
    }
    // Nothing was left behind by the refused creations.
    assert!(std::fs::metadata(name.path()).is_err());
    assert_fails(
        &run(&["create", name.as_str(), "--capacity", "3000"]),
        2,
        "power of two",
    );
    // Sizes with suffixes are accepted.
    ok(&run(&[
        "create",
        name.as_str(),
        "--capacity",
        "64K",
        "--max-message",
        "1K",
    ]));
    let info = shmring::inspect(name.as_str()).unwrap();
    assert_eq!((info.capacity, info.max_message), (64 << 10, 1 << 10));
}

#[test]
fn taken_is_status_8_and_closed_is_status_5() {
    let name = Name::new("busy");
    ok(&run(&["create", name.as_str()]));
    assert_fails(&run(&["create", name.as_str()]), 8, "already exists");
    let mut first = Kid::spawn(&["recv", name.as_str()], false, true);
    common::eventually("the consumer attached", || {
        shmring::inspect(name.as_str()).is_ok_and(|i| i.endpoints.len() == 1)
    });
    assert_fails(
        &run(&["recv", name.as_str()]),
        8,
        "consumer is already attached",
    );
    first.kill();
    // The consumer is gone: a send is refused (broken pipe) with status 5 ...
    assert_fails(
        &run(&["send", name.as_str(), "x"]),
        5,
        "the receiving side is gone (0 messages sent)",
    );
    // ... and an SPSC end does not reopen: the dead consumer still holds its entry.
    assert_fails(
        &run(&["recv", name.as_str()]),
        5,
        "the ring's consumer died",
    );
}

#[test]
fn too_large_message_is_status_1() {
    let name = Name::new("large");
    ok(&run(&[
        "create",
        name.as_str(),
        "--kind",
        "mpmc",
        "--max-message",
        "16",
    ]));
    let out = run_with(
        &["send", name.as_str()],
        b"short\nthis line is longer than sixteen bytes\n",
    );
    assert_fails(&out, 1, "larger than the ring's largest message (16 bytes)");
    let name = Name::new("truncated");
    ok(&run(&[
        "create",
        name.as_str(),
        "--kind",
        "mpmc",
        "--max-message",
        "16",
    ]));
    let out = run_with(&["send", name.as_str(), "--framing", "len32"], &[1, 0, 0]);
    assert_fails(&out, 1, "inside a length prefix");
}

/// `recv | head -1`: when the reader of its output goes away, recv stops with status 0 and
/// the sender learns that the receiving side is gone.
#[test]
fn recv_stops_cleanly_on_a_closed_pipe() {
    let name = Name::new("epipe");
    ok(&run(&["create", name.as_str(), "--capacity", "4K"]));
    let mut recv = Kid::spawn(&["recv", name.as_str()], false, true);
    let mut send = Kid::spawn(&["send", name.as_str()], true, false);
    let mut input = send.child().stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for i in 0..10_000_000u64 {
            if writeln!(input, "{i}").is_err() {
                break;
            }
        }
    });
    let mut out = BufReader::new(recv.child().stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "0\n");
    drop(out);
    let got = Kid(recv.0.take()).wait(Duration::from_secs(60));
    assert_eq!(code(&got), 0, "{}", stderr(&got));
    assert!(stderr(&got).is_empty(), "{}", stderr(&got));
    let sent = Kid(send.0.take()).wait(Duration::from_secs(60));
    assert_fails(&sent, 5, "the receiving side is gone");
    feeder.join().unwrap();
}

#[test]
fn help_lists_the_exit_statuses() {
    let out = run(&["--help"]);
    let text = ok(&out);
    for line in [
        "3  not found",
        "4  timeout",
        "5  disconnected",
        "6  corrupted",
        "7  wrong kind",
    ] {
        assert!(text.contains(line), "{line:?} missing from --help:\n{text}");
    }
    let out = run(&["recv", "--help"]);
    assert!(ok(&out).contains("--framing <FRAMING>"));
    assert_eq!(code(&run(&["recv"])), 2);
}
