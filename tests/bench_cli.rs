//! The load generator against real nodes: `bench c2s` registers its users with XEP-0077 and loses nothing; registration is off unless configured; `bench s2s` across two federated nodes; `bench idle` reads the server's memory per session; `bench pubsub` (local and over s2s) and `bench muc` lose nothing.

mod common;

use common::Node;
use std::process::Command;

fn bench(args: &[&str]) -> (serde_json::Value, String, bool) {
    let out = Command::new(common::BIN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (v, format!("{stdout}{stderr}"), out.status.success())
}

/// `bench c2s` against `n` with `extra` arguments.
fn c2s(n: &Node, users: &str, messages: &str, extra: &[&str]) -> (serde_json::Value, String, bool) {
    let server = format!("127.0.0.1:{}", n.port);
    let mut args = vec![
        "c2s",
        "--server",
        &server,
        "--domain",
        &n.domain,
        "--users",
        users,
        "--messages",
        messages,
    ];
    args.extend_from_slice(extra);
    bench(&args)
}

fn open_registration(n: &Node) {
    n.edit("allow_registration = false", "allow_registration = true");
    n.edit(
        "registrations_per_minute = 10",
        "registrations_per_minute = 1000",
    );
}

#[test]
fn c2s_load_with_in_band_registration_loses_nothing() {
    let mut n = Node::init("bench-c2s", "bench.test", &[]);
    open_registration(&n);
    n.start();
    let (r, out, ok) = c2s(&n, "10", "300", &["--register", "--concurrency", "4"]);
    assert!(ok, "{out}\n{}", n.log());
    assert_eq!(r["logins"], 10, "{out}");
    assert_eq!(r["sent"], 3000, "{out}");
    assert_eq!(r["delivered"], 3000, "{out}");
    assert_eq!(r["lost"], 0, "{out}");
    assert_eq!(r["duplicates"], 0, "{out}");
    assert_eq!(r["errors"], 0, "{out}");
    assert!(r["latency"]["p99_ms"].as_f64().unwrap() > 0.0, "{out}");
    assert!(
        n.log().contains("account registered in-band"),
        "{}",
        n.log()
    );
    // The accounts exist: a second run logs in without registering.
    let (r, out, ok) = c2s(&n, "10", "10", &[]);
    assert!(ok, "{out}");
    assert_eq!(r["delivered"], 100, "{out}");
    // Wrong password: every login fails, and the command says so.
    let (_, out, ok) = c2s(&n, "2", "1", &["--password", "wrong"]);
    assert!(!ok && out.contains("not-authorized"), "{out}");
}

#[test]
fn registration_is_off_by_default() {
    let mut n = Node::init("bench-noreg", "noreg.test", &[]);
    n.start();
    let (_, out, ok) = c2s(&n, "2", "1", &["--register"]);
    assert!(!ok, "{out}");
    assert!(out.contains("not-authorized"), "{out}");
    assert!(!n.log().contains("registered in-band"));
}

#[test]
fn s2s_load_and_idle_memory() {
    let ca = common::Ca::new("bench-s2s");
    let mut a = Node::init("bench-a", "bench-a.test", &[]);
    let mut b = Node::init("bench-b", "bench-b.test", &[]);
    a.federate(&b, Some(&ca), Some("external"));
    for n in [&a, &b] {
        open_registration(n);
    }
    a.start();
    b.start();
    let (r, out, ok) = bench(&[
        "s2s",
        "--server",
        &format!("127.0.0.1:{}", a.port),
        "--domain",
        "bench-a.test",
        "--peer-server",
        &format!("127.0.0.1:{}", b.port),
        "--peer-domain",
        "bench-b.test",
        "--users",
        "5",
        "--messages",
        "200",
        "--register",
    ]);
    assert!(ok, "{out}\n{}\n{}", a.log(), b.log());
    assert_eq!(r["mode"], "s2s");
    assert_eq!(r["logins"], 10, "{out}");
    assert_eq!(r["delivered"], 1000, "{out}");
    assert_eq!(r["lost"], 0, "{out}");
    let pid = b.pid().to_string();
    let (r, out, ok) = bench(&[
        "idle",
        "--server",
        &format!("127.0.0.1:{}", b.port),
        "--domain",
        "bench-b.test",
        "--sessions",
        "50",
        "--register",
        "--pid",
        &pid,
    ]);
    assert!(ok, "{out}");
    assert_eq!(r["sessions"], 50, "{out}");
    // The figures are the node's: its resident memory as /proc shows it now
    // (the idle sessions are closed, so it can only have shrunk a little),
    // and the per-session cost is the growth over the sessions.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_now: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let (before, after) = (
        r["rss_before_kib"].as_u64().unwrap(),
        r["rss_after_kib"].as_u64().unwrap(),
    );
    assert!(
        after >= rss_now / 2 && after <= rss_now * 2,
        "bench measured {after} KiB, the node has {rss_now} KiB: {out}"
    );
    let per = r["bytes_per_session"].as_f64().unwrap();
    let expected = after.saturating_sub(before) as f64 * 1024.0 / 50.0;
    assert!((per - expected).abs() < 1.0, "{per} vs {expected}: {out}");
}

#[test]
fn pubsub_fan_out_and_muc_loads_lose_nothing_locally_and_over_s2s() {
    let ca = common::Ca::new("bench-many");
    let mut a = Node::init("bench-many-a", "many-a.test", &[]);
    let mut b = Node::init("bench-many-b", "many-b.test", &[]);
    a.federate(&b, Some(&ca), Some("external"));
    for n in [&a, &b] {
        open_registration(n);
    }
    a.start();
    b.start();
    let server = format!("127.0.0.1:{}", a.port);
    let base = ["--server", &server, "--domain", "many-a.test", "--register"];
    // One publisher, eight subscribers, 50 items: 400 notifications.
    let mut args = vec!["pubsub"];
    args.extend(base);
    args.extend(["--subscribers", "8", "--items", "50", "--window", "10"]);
    let (r, out, ok) = bench(&args);
    assert!(ok, "{out}\n{}", a.log());
    assert_eq!(r["subscribers"], 8, "{out}");
    assert_eq!(r["published"], 50, "{out}");
    assert_eq!(r["expected"], 400, "{out}");
    assert_eq!(r["notified"], 400, "{out}");
    assert_eq!(r["lost"], 0, "{out}");
    assert_eq!(r["duplicates"], 0, "{out}");
    // The subscribers on the other node, over s2s.
    let peer = format!("127.0.0.1:{}", b.port);
    args.extend(["--peer-server", &peer, "--peer-domain", "many-b.test"]);
    let (r, out, ok) = bench(&args);
    assert!(ok, "{out}\n{}\n{}", a.log(), b.log());
    assert_eq!(r["mode"], "pubsub-s2s", "{out}");
    assert_eq!(r["notified"], 400, "{out}");
    assert_eq!(r["lost"], 0, "{out}");
    // Three rooms of four, five messages each: every one to all four.
    let mut args = vec!["muc"];
    args.extend(base);
    args.extend(["--rooms", "3", "--occupants", "4", "--messages", "5"]);
    let (r, out, ok) = bench(&args);
    assert!(ok, "{out}\n{}", a.log());
    assert_eq!(r["occupants"], 12, "{out}");
    assert_eq!(r["sent"], 60, "{out}");
    assert_eq!(r["expected"], 240, "{out}");
    assert_eq!(r["delivered"], 240, "{out}");
    assert_eq!(r["lost"], 0, "{out}");
    assert_eq!(r["errors"], 0, "{out}");
}
