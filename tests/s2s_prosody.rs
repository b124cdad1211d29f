//! Interop with a stock XMPP server: Debian's Prosody federates with our node over dialback.
//!
//! Needs root (it edits /etc/hosts and runs Prosody as user `prosody`) and
//! Debian's `prosody` package; tests/run-all.sh installs it. It fails, never
//! skips, when Prosody is missing.

mod common;

use common::Node;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OUR_DOMAIN: &str = "icnode.test";
const OUR_ADDR: &str = "127.0.0.2";
const PROSODY_DOMAIN: &str = "prosody.test";
const PROSODY_ADDR: &str = "127.0.0.3";

/// The tests share fixed addresses and port 5269: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn hosts() {
    common::etc_hosts(&[
        (OUR_ADDR, OUR_DOMAIN),
        // Prosody reaches our services as hosts of their own.
        (OUR_ADDR, "conference.icnode.test"),
        (OUR_ADDR, "pubsub.icnode.test"),
        (PROSODY_ADDR, PROSODY_DOMAIN),
        (PROSODY_ADDR, "pubsub.prosody.test"),
    ]);
}

fn run_as_prosody(args: &[&str]) -> Command {
    common::as_user("prosody", args)
}

/// A Prosody of our own, on PROSODY_ADDR, stopped by PID on drop.
struct Prosody {
    dir: PathBuf,
    c2s_port: u16,
    child: Option<Child>,
}

impl Prosody {
    fn start() -> Prosody {
        assert!(
            Path::new("/usr/bin/prosody").exists(),
            "Debian's prosody is not installed (tests/run-all.sh installs it)"
        );
        let dir = common::temp_dir("prosody");
        let c2s_port = common::free_port();
        intercloud::tls::generate_self_signed(
            PROSODY_DOMAIN,
            &dir.join("prosody.crt"),
            &dir.join("prosody.key"),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let cfg = format!(
            r#"-- Prosody for the intercloud interop test.
daemonize = false
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
log = {{ debug = "{d}/prosody.log" }}
interfaces = {{ "{addr}" }}
c2s_ports = {{ {c2s_port} }}
c2s_interfaces = {{ "{addr}" }}
s2s_ports = {{ 5269 }}
s2s_interfaces = {{ "{addr}" }}
http_ports = {{}}
https_ports = {{}}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "presence"; "message"; "iq" }}
modules_disabled = {{ "s2s_bidi"; "offline" }}
authentication = "internal_plain"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
unbound = {{ hoststxt = "/etc/hosts" }}
ssl = {{ certificate = "{d}/prosody.crt"; key = "{d}/prosody.key" }}
-- Prosody's pubsub lets admins create nodes.
admins = {{ "bob@{dom}" }}
VirtualHost "{dom}"
Component "pubsub.{dom}" "pubsub"
"#,
            d = dir.display(),
            addr = PROSODY_ADDR,
            dom = PROSODY_DOMAIN,
        );
        std::fs::write(dir.join("prosody.cfg.lua"), cfg).unwrap();
        let st = Command::new("chown")
            .args(["-R", "prosody:prosody", dir.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success());
        // The temp dir's parents must let the prosody user through.
        let cfgp = dir.join("prosody.cfg.lua");
        let out = run_as_prosody(&[
            "prosodyctl",
            "--config",
            cfgp.to_str().unwrap(),
            "register",
            "bob",
            PROSODY_DOMAIN,
            "bob-pw",
        ])
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "prosodyctl register: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let child = run_as_prosody(&["prosody", "--config", cfgp.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prosody");
        let mut p = Prosody {
            dir,
            c2s_port,
            child: Some(child),
        };
        let log = p.dir.join("prosody.log");
        common::wait_listening(
            p.child.as_mut().unwrap(),
            &[(PROSODY_ADDR, c2s_port), (PROSODY_ADDR, 5269)],
            20,
            "prosody",
            &|| std::fs::read_to_string(&log).unwrap_or_default(),
        );
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prosody.log")).unwrap_or_default()
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Our node on OUR_ADDR:5269, where Prosody looks for it, with alice.
fn our_node(tag: &str) -> Node {
    let mut node = Node::init(tag, OUR_DOMAIN, &[]);
    // Prosody reaches a domain on port 5269 of the address it resolves.
    node.edit(
        &format!("bind = \"127.0.0.1\"\nport = {}", node.s2s_port),
        &format!("bind = \"{OUR_ADDR}\"\nport = 5269"),
    );
    node.s2s_port = 5269;
    node.add_user("alice", "alice-pw");
    node.start();
    node
}

/// The scripts' arguments for alice on our node and bob on Prosody.
fn two_users(node: &Node, prosody: &Prosody) -> Vec<(&'static str, String)> {
    vec![
        ("host1", "127.0.0.1".into()),
        ("port1", node.port.to_string()),
        ("domain1", OUR_DOMAIN.into()),
        ("user1", "alice".into()),
        ("password1", "alice-pw".into()),
        ("host2", PROSODY_ADDR.into()),
        ("port2", prosody.c2s_port.to_string()),
        ("domain2", PROSODY_DOMAIN.into()),
        ("user2", "bob".into()),
        ("password2", "bob-pw".into()),
    ]
}

#[test]
fn prosody_and_our_node_federate_over_dialback() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    hosts();
    let prosody = Prosody::start();
    let node = our_node("interop");
    let mut args = two_users(&node, &prosody);
    args.push(("count", "200".into()));
    let out = common::s2s_flow(&args, &|| {
        format!("== our node\n{}\n== prosody\n{}", node.log(), prosody.log())
    });
    println!("prosody interop: {out}");
    assert!(out.contains("\"messages\": 400"), "{out}");
    assert!(
        node.log().contains("peer authenticated with dialback"),
        "{}",
        node.log()
    );
    assert!(
        node.log().contains("authenticated to peer with dialback"),
        "{}",
        node.log()
    );
}

#[test]
fn a_prosody_user_talks_in_a_room_on_our_node() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    hosts();
    let prosody = Prosody::start();
    let node = our_node("interop-muc");
    let mut args = two_users(&node, &prosody);
    args.extend([("room", "interop".into()), ("count", "20".into())]);
    let out = common::slixmpp("muc_remote.py", &args, &|| {
        format!("== our node\n{}\n== prosody\n{}", node.log(), prosody.log())
    });
    let last = out.lines().last().unwrap_or("");
    let r: serde_json::Value = serde_json::from_str(last).expect("a JSON line");
    assert_eq!(r["joined_as"], "participant", "{r}");
    assert_eq!(r["saw"], serde_json::json!(["one", "two"]), "{r}");
    assert_eq!(r["messages"], 80, "{r}");
}

#[test]
fn pubsub_nodes_on_each_side_notify_subscribers_on_the_other() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    hosts();
    let prosody = Prosody::start();
    let node = our_node("interop-pubsub");
    let mut args = two_users(&node, &prosody);
    args.push(("count", "5".into()));
    let out = common::slixmpp("pubsub_remote.py", &args, &|| {
        format!("== our node\n{}\n== prosody\n{}", node.log(), prosody.log())
    });
    let last = out.lines().last().unwrap_or("");
    let r: serde_json::Value = serde_json::from_str(last).expect("a JSON line");
    for (side, node) in [("on1", "from1"), ("on2", "from2")] {
        let texts: Vec<String> = (0..5).map(|i| format!("{node} {i}")).collect();
        let ids: Vec<String> = (0..5).map(|i| format!("{node}-{i}")).collect();
        assert_eq!(r[side]["notified"], serde_json::json!(texts), "{r}");
        assert_eq!(r[side]["items"], serde_json::json!(ids), "{r}");
    }
}
