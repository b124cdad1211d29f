//! Interop with a stock XMPP server: Debian's ejabberd 23.01 federates with our node both ways — over dialback with its self-signed certificate, and over SASL EXTERNAL when both hold certificates from one CA.
//!
//! Needs root (it edits /etc/hosts and runs ejabberd as user `ejabberd`)
//! and Debian's `ejabberd` package; tests/run-all.sh installs it. It fails,
//! never skips, when ejabberd is missing. ejabberd runs with a config and a
//! ctl config of its own (loopback only, Erlang distribution on a port of
//! ours without epmd) and is stopped by PID.

mod common;

use common::{Ca, Node};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const EJABBERDCTL: &str = "/usr/sbin/ejabberdctl";

/// One ejabberd of our own on `addr`, serving `domain`.
struct Ejabberd {
    dir: PathBuf,
    domain: &'static str,
    addr: &'static str,
    c2s_port: u16,
    child: Option<Child>,
}

impl Ejabberd {
    /// Starts ejabberd; with `ca`, its certificate comes from `ca` and it
    /// trusts `ca` (so it can offer and use SASL EXTERNAL), otherwise it is
    /// self-signed (dialback only).
    fn start(tag: &str, domain: &'static str, addr: &'static str, ca: Option<&Ca>) -> Ejabberd {
        assert!(
            Path::new(EJABBERDCTL).exists(),
            "Debian's ejabberd is not installed (tests/run-all.sh installs it)"
        );
        let dir = common::temp_dir(tag);
        for d in ["db", "logs", "tls"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let tls = dir.join("tls");
        match ca {
            Some(ca) => ca.issue(domain, &tls),
            None => intercloud::tls::generate_self_signed(
                domain,
                &tls.join("cert.pem"),
                &tls.join("key.pem"),
            )
            .unwrap(),
        }
        let pem = format!(
            "{}{}",
            std::fs::read_to_string(tls.join("cert.pem")).unwrap(),
            std::fs::read_to_string(tls.join("key.pem")).unwrap()
        );
        std::fs::write(dir.join("ejabberd.pem"), pem).unwrap();
        let ca_file = match ca {
            Some(ca) => {
                std::fs::copy(ca.cert(), dir.join("ca.pem")).unwrap();
                format!("ca_file: \"{}/ca.pem\"\n", dir.display())
            }
            None => String::new(),
        };
        let c2s_port = common::free_port();
        let yml = format!(
            r#"# ejabberd for the intercloud interop test.
hosts:
  - "{domain}"
loglevel: info
certfiles:
  - "{d}/ejabberd.pem"
{ca_file}listen:
  -
    port: {c2s_port}
    ip: "{addr}"
    module: ejabberd_c2s
    starttls_required: true
    shaper: c2s_shaper
    access: c2s
    backlog: 1024
  -
    port: 5269
    ip: "{addr}"
    module: ejabberd_s2s_in
    backlog: 1024
s2s_use_starttls: optional
s2s_timeout: 10000
acl:
  local:
    user_regexp: ""
access_rules:
  c2s:
    allow: all
shaper_rules:
  c2s_shaper: none
  s2s_shaper: none
modules:
  mod_caps: {{}}
  mod_disco: {{}}
  mod_muc: {{}}
  mod_ping: {{}}
  mod_pubsub: {{}}
  mod_roster: {{}}
  mod_s2s_dialback: {{}}
  mod_stream_mgmt: {{}}
"#,
            d = dir.display(),
        );
        std::fs::write(dir.join("ejabberd.yml"), yml).unwrap();
        // ejabberdctl sources the ctl config after its arguments: this one
        // names our ejabberd.yml, and the Erlang distribution listens on a
        // loopback port of ours (no epmd daemon is started).
        let ctl = format!(
            "ERLANG_NODE=ictest{c2s_port}@localhost\nEJABBERD_CONFIG_PATH={d}/ejabberd.yml\nLOGS_DIR={d}/logs\nSPOOL_DIR={d}/db\nINET_DIST_INTERFACE=127.0.0.1\nERL_DIST_PORT={dist}\n",
            d = dir.display(),
            dist = common::free_port(),
        );
        std::fs::write(dir.join("ejabberdctl.cfg"), ctl).unwrap();
        let st = Command::new("chown")
            .args(["-R", "ejabberd:ejabberd", dir.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success());
        let mut e = Ejabberd {
            dir,
            domain,
            addr,
            c2s_port,
            child: None,
        };
        e.child = Some(
            e.ctl_command(&["foreground"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start ejabberd"),
        );
        let logs = e.dir.join("logs/ejabberd.log");
        common::wait_listening(
            e.child.as_mut().unwrap(),
            &[(addr, c2s_port), (addr, 5269)],
            60,
            "ejabberd",
            &|| std::fs::read_to_string(&logs).unwrap_or_default(),
        );
        e
    }

    /// `ejabberdctl` with our ctl config, as user ejabberd.
    fn ctl_command(&self, args: &[&str]) -> Command {
        let home = format!("HOME={}", self.dir.display());
        let cfg = self.dir.join("ejabberdctl.cfg");
        let mut all = vec![
            "env",
            home.as_str(),
            EJABBERDCTL,
            "--ctl-config",
            cfg.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let mut c = common::as_user("ejabberd", &all);
        c.current_dir(&self.dir);
        c
    }

    fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_command(args).output().unwrap()
    }

    /// `ejabberdctl register USER HOST PASSWORD`, once the node takes commands.
    fn register(&self, user: &str, password: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.ctl(&["register", user, self.domain, password]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ejabberdctl register: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/ejabberd.log")).unwrap_or_default()
    }
}

/// PIDs of `pid`'s descendants, deepest first.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for t in tasks.flatten() {
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            out.extend(descendants(c));
            out.push(c);
        }
    }
    out
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // ejabberdctl runs the Erlang VM as its child: ask the node to stop,
        // then make sure every process we started is gone.
        let _ = self.ctl(&["stop"]);
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for p in descendants(child.id()) {
            let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
        }
        let _ = child.kill();
        let _ = child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Our node for `domain`, listening for s2s on port 5269 of `addr` (where
/// ejabberd looks for it).
fn our_node(tag: &str, domain: &str, addr: &str) -> Node {
    let mut node = Node::init(tag, domain, &[]);
    node.edit(
        &format!("bind = \"127.0.0.1\"\nport = {}", node.s2s_port),
        &format!("bind = \"{addr}\"\nport = 5269"),
    );
    node.s2s_port = 5269;
    node.add_user("alice", "alice-pw");
    node
}

/// Subscriptions, presence and 200 chat messages each way between alice on
/// our node and bob on ejabberd (stock slixmpp clients on both sides).
fn flow(node: &Node, ej: &Ejabberd) -> String {
    let mut args = two_users(node, ej);
    args.push(("count", "200".into()));
    let out = common::s2s_flow(&args, &|| {
        format!("== our node\n{}\n== ejabberd\n{}", node.log(), ej.log())
    });
    println!("ejabberd interop: {out}");
    out
}

/// Our node `ours` (domain, address) and an ejabberd `ej` federate: with
/// `ca`, both hold certificates from it and only SASL EXTERNAL is allowed on
/// our side; without, both are self-signed and dialback is what is left.
/// `method` is what our log must show in both directions.
fn federate(
    tag: &str,
    ours: (&str, &str),
    ej: (&'static str, &'static str),
    ca: Option<&Ca>,
    method: &str,
) {
    common::etc_hosts(&[(ours.1, ours.0), (ej.1, ej.0)]);
    let server = Ejabberd::start(&format!("{tag}-ejabberd"), ej.0, ej.1, ca);
    server.register("bob", "bob-pw");
    let mut node = our_node(tag, ours.0, ours.1);
    if let Some(ca) = ca {
        node.use_ca(ca);
        node.only_s2s_auth("external");
    }
    node.start();
    let out = flow(&node, &server);
    assert!(out.contains("\"messages\": 400"), "{out}");
    let log = node.log();
    // Both directions: ejabberd's stream to us, and ours to ejabberd.
    let inbound = format!("peer authenticated with {method} peer_domain={}", ej.0);
    let outbound = format!("authenticated to peer with {method} remote={}", ej.0);
    assert!(log.contains(&inbound), "no {inbound:?}: {log}");
    assert!(log.contains(&outbound), "no {outbound:?}: {log}");
}

#[test]
fn ejabberd_and_our_node_federate_over_dialback() {
    federate(
        "ej-dialback",
        ("icej.test", "127.0.0.4"),
        ("ejabberd.test", "127.0.0.5"),
        None,
        "dialback",
    );
}

#[test]
fn ejabberd_and_our_node_federate_over_sasl_external_with_one_ca() {
    let ca = Ca::new("ejabberd-ca");
    federate(
        "ej-external",
        ("icej2.test", "127.0.0.6"),
        ("ejabberd2.test", "127.0.0.7"),
        Some(&ca),
        "SASL EXTERNAL",
    );
}

/// The scripts' arguments for alice on our node and bob on ejabberd.
fn two_users(node: &Node, ej: &Ejabberd) -> Vec<(&'static str, String)> {
    vec![
        ("host1", "127.0.0.1".into()),
        ("port1", node.port.to_string()),
        ("domain1", node.domain.clone()),
        ("user1", "alice".into()),
        ("password1", "alice-pw".into()),
        ("host2", ej.addr.into()),
        ("port2", ej.c2s_port.to_string()),
        ("domain2", ej.domain.into()),
        ("user2", "bob".into()),
        ("password2", "bob-pw".into()),
    ]
}

#[test]
fn an_ejabberd_user_talks_in_our_rooms_and_pubsub_crosses_both_ways() {
    let (ours, ours_addr) = ("icej3.test", "127.0.0.8");
    let (ej, ej_addr) = ("ejabberd3.test", "127.0.0.9");
    // Each side reaches the other's services as hosts of their own.
    common::etc_hosts(&[
        (ours_addr, ours),
        (ours_addr, "conference.icej3.test"),
        (ours_addr, "pubsub.icej3.test"),
        (ej_addr, ej),
        (ej_addr, "pubsub.ejabberd3.test"),
    ]);
    let server = Ejabberd::start("ej-many-ejabberd", ej, ej_addr, None);
    server.register("bob", "bob-pw");
    let mut node = our_node("ej-many", ours, ours_addr);
    node.start();
    let logs = || format!("== our node\n{}\n== ejabberd\n{}", node.log(), server.log());
    let mut args = two_users(&node, &server);
    args.extend([("room", "interop".into()), ("count", "20".into())]);
    let out = common::slixmpp("muc_remote.py", &args, &logs);
    let r: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or("")).expect("a JSON line");
    assert_eq!(r["joined_as"], "participant", "{r}");
    assert_eq!(r["saw"], serde_json::json!(["one", "two"]), "{r}");
    assert_eq!(r["messages"], 80, "{r}");
    let mut args = two_users(&node, &server);
    args.push(("count", "5".into()));
    let out = common::slixmpp("pubsub_remote.py", &args, &logs);
    let r: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or("")).expect("a JSON line");
    for (side, node) in [("on1", "from1"), ("on2", "from2")] {
        let texts: Vec<String> = (0..5).map(|i| format!("{node} {i}")).collect();
        let ids: Vec<String> = (0..5).map(|i| format!("{node}-{i}")).collect();
        assert_eq!(r[side]["notified"], serde_json::json!(texts), "{r}");
        assert_eq!(r[side]["items"], serde_json::json!(ids), "{r}");
    }
}
