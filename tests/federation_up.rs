//! `intercloud federation up` as a user runs it: roots, an exchange and clouds start as processes, the directory converges, the printed demo accounts talk across clouds over s2s with the trust authority's certificates; `federation status` reports health; Ctrl-C (SIGINT) and even SIGKILL of `up` leave no node behind.

mod common;

use intercloud::federation::{load, Member};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).unwrap_or("Z").starts_with('Z'))
        .unwrap_or(false)
}

fn wait_gone(pids: &[u32]) {
    let t0 = Instant::now();
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "nodes left behind: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `federation up` and waits for its "converged" line.
fn up(dir: &std::path::Path) -> (std::process::Child, String) {
    let mut child = Command::new(common::BIN)
        .args(["federation", "up"])
        .arg(dir)
        .args(["--roots", "1", "--exchanges", "1", "--clouds", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for l in lines.by_ref() {
        let l = l.unwrap();
        out.push_str(&l);
        out.push('\n');
        if l.starts_with("converged in") {
            // Keep the pipe drained so `up` never blocks on it.
            std::thread::spawn(move || for _ in lines {});
            return (child, out);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("federation up ended early:\n{out}");
}

fn member<'a>(ms: &'a [Member], domain: &str) -> &'a Member {
    ms.iter().find(|m| m.domain == domain).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_status_talk_and_stop() {
    let dir = common::temp_dir("fed-up");
    let (mut child, table) = tokio::task::block_in_place(|| up(&dir));
    for d in ["root1.test", "exchange1.test", "cloud1.test", "cloud2.test"] {
        assert!(table.contains(d), "{table}");
    }
    assert!(table.contains("zone 4/4"), "{table}");
    let status = tokio::task::block_in_place(|| {
        common::cli(&["federation", "status", dir.to_str().unwrap()])
    });
    assert!(status.contains("healthy"), "{status}");
    // The printed demo accounts talk across clouds (s2s, certificates from the root).
    let ms = load(&dir).unwrap();
    let (c1, c2) = (member(&ms, "cloud1.test"), member(&ms, "cloud2.test"));
    let cert = |m: &Member| {
        intercloud::tls::load_certs(&m.dir.join("tls/cert.pem"))
            .unwrap()
            .remove(0)
    };
    let addr = |m: &Member| format!("127.0.0.1:{}", m.c2s_port).parse().unwrap();
    let mut bob = intercloud::xmpp::client::Client::login(
        addr(c2),
        &c2.domain,
        cert(c2),
        "demo",
        &c2.demo_password,
        None,
    )
    .await
    .unwrap();
    common::online(&mut bob).await;
    let mut alice = intercloud::xmpp::client::Client::login(
        addr(c1),
        &c1.domain,
        cert(c1),
        "demo",
        &c1.demo_password,
        None,
    )
    .await
    .unwrap();
    alice
        .send(&common::chat(
            "demo@cloud2.test",
            "hello across the federation",
        ))
        .await
        .unwrap();
    let m = bob
        .wait_for(Duration::from_secs(20), |e| e.name == "message")
        .await
        .unwrap();
    assert_eq!(
        m.get_attr("from")
            .map(|f| f.starts_with("demo@cloud1.test/")),
        Some(true)
    );
    drop((alice, bob));
    // Ctrl-C: every node stops, and status says so.
    let pids: Vec<u32> = ms.iter().filter_map(|m| m.pid).collect();
    assert_eq!(pids.len(), 4);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    assert!(tokio::task::block_in_place(|| child.wait())
        .unwrap()
        .success());
    tokio::task::block_in_place(|| wait_gone(&pids));
    let status = tokio::task::block_in_place(|| {
        common::cli(&["federation", "status", dir.to_str().unwrap()])
    });
    assert!(
        status.contains("STOPPED") && status.contains("not converged"),
        "{status}"
    );
    // Up again from the same directory (same configs, accounts, keys); then
    // SIGKILL `up` itself: its nodes still go.
    let (mut child, table) = tokio::task::block_in_place(|| up(&dir));
    assert!(table.contains("zone 4/4"), "{table}");
    let pids: Vec<u32> = load(&dir).unwrap().iter().filter_map(|m| m.pid).collect();
    child.kill().unwrap();
    child.wait().unwrap();
    tokio::task::block_in_place(|| wait_gone(&pids));
    let _ = std::fs::remove_dir_all(&dir);
}
