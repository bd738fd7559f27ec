//! `list`, `stat` and `unlink`: every ring on the machine, stale rings after SIGKILL, the
//! detailed report and its JSON, and removing names.

mod common;

use common::{Kid, Name, assert_fails, code, eventually, ok, prefix, run, stat_json, stderr};
use serde_json::Value;

/// `list --json --prefix <this test process's prefix>`, parsed.
fn list(extra: &[&str]) -> Vec<Value> {
    let p = prefix();
    let mut args = vec!["list", "--json", "--prefix", p.as_str()];
    args.extend_from_slice(extra);
    let out = run(&args);
    match serde_json::from_str(&ok(&out)).expect("list --json prints JSON") {
        Value::Array(v) => v,
        other => panic!("not an array: {other}"),
    }
}

fn names(rings: &[Value]) -> Vec<String> {
    rings
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

fn find<'a>(rings: &'a [Value], name: &Name) -> &'a Value {
    rings
        .iter()
        .find(|r| r["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{} not listed", name.as_str()))
}

/// Starts `recv` and `send` (its input kept open) on a ring and waits until both attached.
fn attach_both(name: &Name) -> (Kid, Kid) {
    let recv = Kid::spawn(&["recv", name.as_str()], false, false);
    let send = Kid::spawn(&["send", name.as_str()], true, false);
    eventually("both ends attached", || {
        shmring::inspect(name.as_str()).is_ok_and(|i| {
            i.endpoints.len() == 2
                && i.endpoints
                    .iter()
                    .all(|e| e.state == shmring::EndpointState::Attached)
        })
    });
    (recv, send)
}

#[test]
fn list_shows_rings_and_skips_other_objects() {
    let spsc = Name::new("list-spsc");
    let mpmc = Name::new("list-mpmc");
    ok(&run(&["create", spsc.as_str(), "--capacity", "64K"]));
    ok(&run(&[
        "create",
        mpmc.as_str(),
        "--kind",
        "mpmc",
        "--slots",
        "16",
    ]));
    // Not rings: another program's object, an empty one, a symbolic link to a ring.
    let junk = Name::new("list-junk");
    std::fs::write(junk.path(), b"NOTARING and more bytes").unwrap();
    let empty = Name::new("list-empty");
    std::fs::write(empty.path(), b"").unwrap();
    let link = Name::new("list-link");
    std::os::unix::fs::symlink(spsc.path(), link.path()).unwrap();

    let rings = list(&[]);
    let listed = names(&rings);
    for n in [&junk, &empty, &link] {
        assert!(!listed.contains(&n.0), "{} listed: {listed:?}", n.0);
    }
    let s = find(&rings, &spsc);
    assert_eq!(s["kind"], "spsc");
    assert_eq!(s["capacity"], 64 << 10);
    assert_eq!(s["status"], "unused");
    assert_eq!(s["stale"], false);
    assert_eq!(s["mode"], "0600");
    assert_eq!(s["fill"], 0.0);
    let m = find(&rings, &mpmc);
    assert_eq!(m["kind"], "mpmc");
    assert_eq!(m["capacity"], 16);

    // The table has a header and a row per ring.
    let p = prefix();
    let table = ok(&run(&["list", "--prefix", p.as_str()]));
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("NAME"));
    let row = table
        .lines()
        .find(|l| l.starts_with(spsc.as_str()))
        .unwrap();
    for cell in ["spsc", "72.0 KiB", "0.0%", "0600", "unused"] {
        assert!(row.contains(cell), "{cell:?} missing: {row}");
    }
}

/// The SIGKILL test of the issue: a ring whose processes were killed is stale, a ring with a
/// live process is not, and `unlink --stale` removes only the stale one.
#[test]
fn killed_rings_are_stale_and_only_they_are_removed() {
    for kind in ["spsc", "mpmc"] {
        let killed = Name::new(&format!("stale-killed-{kind}"));
        let live = Name::new(&format!("stale-live-{kind}"));
        let unused = Name::new(&format!("stale-unused-{kind}"));
        for n in [&killed, &live, &unused] {
            ok(&run(&["create", n.as_str(), "--kind", kind]));
        }
        let (mut r1, mut s1) = attach_both(&killed);
        let (_r2, _s2) = attach_both(&live);
        assert!(list(&["--stale"]).is_empty());
        r1.kill();
        s1.kill();

        let stale = list(&["--stale"]);
        assert_eq!(names(&stale), [killed.as_str()], "{kind}");
        let all = list(&[]);
        let k = find(&all, &killed);
        assert_eq!(k["status"], "stale");
        let states: Vec<_> = k["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["state"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(states, ["dead", "dead"], "{kind}");
        assert_eq!(find(&all, &live)["status"], "active");
        assert_eq!(find(&all, &unused)["status"], "unused");
        let text = ok(&run(&["stat", killed.as_str()]));
        assert!(text.contains("status:      stale"), "{text}");
        assert!(text.contains("2 dead"), "{text}");

        // By name: only the stale one of the three goes.
        let out = run(&[
            "unlink",
            "--stale",
            killed.as_str(),
            live.as_str(),
            unused.as_str(),
        ]);
        assert_eq!(ok(&out), format!("{}\n", killed.as_str()));
        assert!(stderr(&out).contains("removed 1 stale ring"));
        assert!(std::fs::metadata(killed.path()).is_err());
        assert!(std::fs::metadata(live.path()).is_ok());
        assert!(std::fs::metadata(unused.path()).is_ok());
    }
}

/// `unlink --stale` without names scans (here narrowed to this test's prefix, so that rings
/// of other tests running meanwhile are left alone).
#[test]
fn unlink_stale_scans() {
    let killed = Name::new("scan-killed");
    let live = Name::new("scan-live");
    ok(&run(&["create", killed.as_str(), "--kind", "mpmc"]));
    ok(&run(&["create", live.as_str()]));
    let (mut r, mut s) = attach_both(&killed);
    let _live = Kid::spawn(&["recv", live.as_str()], false, false);
    eventually("the live consumer attached", || {
        shmring::inspect(live.as_str()).is_ok_and(|i| i.endpoints.len() == 1)
    });
    r.kill();
    s.kill();
    let p = format!("{}scan-", prefix());
    let out = run(&["unlink", "--stale", "--prefix", &p]);
    assert_eq!(ok(&out), format!("{}\n", killed.as_str()));
    assert!(std::fs::metadata(killed.path()).is_err());
    assert!(std::fs::metadata(live.path()).is_ok());
}

#[test]
fn unlink_by_name() {
    let a = Name::new("rm-a");
    let b = Name::new("rm-b");
    ok(&run(&["create", a.as_str()]));
    ok(&run(&["create", b.as_str(), "--kind", "mpmc"]));
    ok(&run(&["unlink", a.as_str(), b.as_str()]));
    assert!(std::fs::metadata(a.path()).is_err());
    assert!(std::fs::metadata(b.path()).is_err());
    assert_fails(
        &run(&["unlink", a.as_str()]),
        3,
        "no shared-memory object named",
    );
    // Another program's object is not removed.
    let junk = Name::new("rm-junk");
    std::fs::write(junk.path(), vec![0u8; 4096]).unwrap();
    assert_fails(&run(&["unlink", junk.as_str()]), 7, "not a shmring ring");
    assert!(std::fs::metadata(junk.path()).is_ok());
    assert_eq!(code(&run(&["unlink"])), 2);
}

#[test]
fn stat_reports_fill_indices_sleepers_and_endpoints() {
    // SPSC: three messages wait for a consumer that has not come.
    let name = Name::new("stat-spsc");
    ok(&run(&["create", name.as_str(), "--capacity", "4K"]));
    ok(&run(&["send", name.as_str(), "a", "bb", "ccc"]));
    let s = stat_json(name.as_str());
    assert_eq!(s["status"], "pending");
    assert_eq!(s["messages"], 3);
    assert_eq!(s["payload_bytes"], 6);
    assert_eq!(
        (s["head"].as_u64(), s["tail"].as_u64()),
        (Some(0), Some(48))
    );
    assert_eq!(s["used_bytes"], 48);
    assert_eq!(s["fill"].as_f64().unwrap(), 48.0 / 4096.0);
    assert_eq!(s["senders_closed"], true);
    assert_eq!(s["endpoints"][0]["role"], "producer");
    assert_eq!(s["endpoints"][0]["state"], "closed");

    // MPMC: a receiver asleep on an empty ring is counted, alive, with its pid.
    let name = Name::new("stat-mpmc");
    ok(&run(&[
        "create",
        name.as_str(),
        "--kind",
        "mpmc",
        "--slots",
        "8",
    ]));
    let rx = Kid::spawn(&["recv", name.as_str(), "--wait", "block"], false, false);
    eventually("the receiver sleeps", || {
        stat_json(name.as_str())["waiting_receivers"] == 1
    });
    let s = stat_json(name.as_str());
    assert_eq!(s["status"], "active");
    let e = &s["endpoints"][0];
    assert_eq!(
        (e["role"].as_str(), e["pid"].as_u64(), e["state"].as_str()),
        (Some("receiver"), Some(u64::from(rx.pid())), Some("alive"))
    );
    let text = ok(&run(&["stat", name.as_str()]));
    for line in [
        "kind:        mpmc",
        "capacity:    8 slots of 128 bytes",
        "asleep:      1 waiting for messages, 0 waiting for room",
        "sides:       senders open, receivers open",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    assert!(
        text.contains(&format!("receiver  {:<8}  alive", rx.pid())),
        "{text}"
    );
}

#[test]
fn stat_watch_gives_rates() {
    let name = Name::new("watch");
    ok(&run(&[
        "create",
        name.as_str(),
        "--kind",
        "mpmc",
        "--slots",
        "1K",
    ]));
    ok(&run(&["send", name.as_str(), "1", "2", "3"]));
    let out = run(&[
        "stat",
        name.as_str(),
        "--watch",
        "--json",
        "--interval",
        "0.05",
        "--count",
        "3",
    ]);
    let text = ok(&out);
    let snaps: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(snaps.len(), 3);
    assert_eq!(snaps[0]["rates"], Value::Null);
    let rates = &snaps[2]["rates"];
    assert_eq!(rates["unit"], "messages");
    assert_eq!(rates["sent_per_sec"], 0.0);
    assert_eq!(snaps[2]["messages"], 3);
    // The text form, refreshed without a terminal: blocks one after another.
    let out = run(&[
        "stat",
        name.as_str(),
        "--watch",
        "--interval",
        "0.01",
        "--count",
        "2",
    ]);
    let text = ok(&out);
    assert_eq!(text.matches("name:").count(), 2);
    assert!(
        text.contains("rate:        sent 0 msg/s, received 0 msg/s"),
        "{text}"
    );
}

#[test]
fn stat_errors() {
    let name = Name::new("stat-missing");
    assert_fails(
        &run(&["stat", name.as_str()]),
        3,
        "no shared-memory object named",
    );
    assert_fails(&run(&["stat", "bad/name"]), 2, "invalid shared-memory name");
    let junk = Name::new("stat-junk");
    std::fs::write(junk.path(), vec![7u8; 8192]).unwrap();
    assert_fails(&run(&["stat", junk.as_str()]), 7, "not a shmring object");
    // A ring whose header a peer garbled is reported as corrupted.
    let bad = Name::new("stat-bad");
    ok(&run(&["create", bad.as_str()]));
    let mut bytes = std::fs::read(bad.path()).unwrap();
    bytes[24..32].copy_from_slice(&3u64.to_ne_bytes()); // capacity: not a power of two
    std::fs::write(bad.path(), &bytes).unwrap();
    assert_fails(&run(&["stat", bad.as_str()]), 6, "bad ring geometry");
    let row = list(&[]);
    assert_eq!(find(&row, &bad)["status"], "corrupted");
}
