//! Test harness: real `intercloud` processes on loopback, started through the CLI as a user would.
#![allow(dead_code)]

pub mod metrics;
pub mod p2p;

use intercloud::xmpp::client::Client;
use rustls::pki_types::CertificateDer;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_intercloud");

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "intercloud-test-{tag}-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A port that was free a moment ago, never the same one twice in this
/// process (tests run in parallel threads and each node takes three).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let p = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&p) {
            given.push(p);
            return p;
        }
    }
}

/// Runs the CLI and panics with its output when it fails.
pub fn cli(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run intercloud");
    assert!(
        out.status.success(),
        "intercloud {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One node process.
pub struct Node {
    pub dir: PathBuf,
    pub domain: String,
    pub port: u16,
    pub s2s_port: u16,
    pub p2p_port: u16,
    child: Option<Child>,
}

/// A test certificate authority.
pub struct Ca {
    pub dir: PathBuf,
}

impl Ca {
    pub fn new(tag: &str) -> Ca {
        let dir = temp_dir(tag);
        intercloud::tls::generate_ca(
            "Intercloud test CA",
            &dir.join("ca.pem"),
            &dir.join("ca.key"),
        )
        .unwrap();
        Ca { dir }
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// Issues a certificate for `domain` into `dir/cert.pem`, `dir/key.pem`.
    pub fn issue(&self, domain: &str, dir: &Path) {
        intercloud::tls::issue(
            &self.dir.join("ca.pem"),
            &self.dir.join("ca.key"),
            domain,
            &dir.join("cert.pem"),
            &dir.join("key.pem"),
        )
        .unwrap();
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Node {
    /// `intercloud init` a node for `domain`; `extra` replaces lines of the config
    /// (pairs of `old line`, `new line`).
    pub fn init(tag: &str, domain: &str, edits: &[(&str, &str)]) -> Node {
        let dir = temp_dir(tag);
        let port = free_port();
        let s2s_port = free_port();
        let p2p_port = free_port();
        cli(&[
            "init",
            dir.to_str().unwrap(),
            "--domain",
            domain,
            "--c2s-port",
            &port.to_string(),
            "--s2s-port",
            &s2s_port.to_string(),
            "--p2p-port",
            &p2p_port.to_string(),
        ]);
        let cfg = dir.join("intercloud.toml");
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        for (old, new) in edits {
            assert!(text.contains(old), "config has no line {old:?}");
            text = text.replace(old, new);
        }
        std::fs::write(&cfg, text).unwrap();
        Node {
            dir,
            domain: domain.to_string(),
            port,
            s2s_port,
            p2p_port,
            child: None,
        }
    }

    /// Makes this node one of the Intercloud Root's roots.
    pub fn make_root(&self) {
        self.edit("roles = [\"cloud\"]", "roles = [\"cloud\", \"root\"]");
    }

    /// This node's libp2p address, for other nodes' bootstrap lists.
    pub fn p2p_addr(&self) -> String {
        cli(&["directory", "id", "--config", &self.config()])
            .trim()
            .to_string()
    }

    /// Joins the directory through these roots.
    pub fn bootstrap(&self, roots: &[String]) {
        let list = roots
            .iter()
            .map(|r| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", ");
        self.edit("bootstrap = []", &format!("bootstrap = [{list}]"));
        self.edit("anti_entropy_secs = 10", "anti_entropy_secs = 1");
    }

    /// Loads the paper's 12-cloud fixture catalog into this node (an exchange).
    pub fn import_paper_catalog(&self) {
        let dir = repo().join("scenarios/data/paper-catalog");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .collect();
        files.sort();
        let cfg = self.config();
        let mut args = vec!["catalog", "import", "--config", &cfg];
        args.extend(files.iter().map(String::as_str));
        cli(&args);
    }

    /// Replaces a line of the config.
    pub fn edit(&self, old: &str, new: &str) {
        let cfg = self.dir.join("intercloud.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        assert!(text.contains(old), "config has no {old:?}");
        std::fs::write(&cfg, text.replacen(old, new, 1)).unwrap();
    }

    /// Adds a static s2s route.
    pub fn route(&self, domain: &str, addr: &str) {
        self.edit(
            "[s2s.routes]\n",
            &format!("[s2s.routes]\n\"{domain}\" = \"{addr}\"\n"),
        );
    }

    /// Routes to `other`'s s2s port.
    pub fn route_to(&self, other: &Node) {
        self.route(&other.domain, &format!("127.0.0.1:{}", other.s2s_port));
    }

    /// Routes this node and `other` to each other's s2s ports; with `ca`, both
    /// use and trust its certificates; with `auth`, it is their only s2s method.
    pub fn federate(&self, other: &Node, ca: Option<&Ca>, auth: Option<&str>) {
        for (n, o) in [(self, other), (other, self)] {
            if let Some(ca) = ca {
                n.use_ca(ca);
            }
            n.route_to(o);
            if let Some(a) = auth {
                n.only_s2s_auth(a);
            }
        }
    }

    /// Allows only this s2s authentication method ("external" or "dialback").
    pub fn only_s2s_auth(&self, method: &str) {
        self.edit(
            "auth = [\"external\", \"dialback\"]",
            &format!("auth = [\"{method}\"]"),
        );
    }

    /// Replaces the self-signed certificate with one from `ca`, and trusts `ca`.
    pub fn use_ca(&self, ca: &Ca) {
        ca.issue(&self.domain, &self.dir.join("tls"));
        self.edit(
            "trust_anchors = []",
            &format!("trust_anchors = [\"{}\"]", ca.cert().display()),
        );
    }

    pub fn config(&self) -> String {
        self.dir.join("intercloud.toml").display().to_string()
    }

    pub fn add_user(&self, user: &str, password: &str) {
        let jid = format!("{user}@{}", self.domain);
        cli(&[
            "user",
            "add",
            "--config",
            &self.config(),
            &jid,
            "--password",
            password,
        ]);
    }

    pub fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    pub fn cert(&self) -> CertificateDer<'static> {
        intercloud::tls::load_certs(&self.dir.join("tls/cert.pem"))
            .unwrap()
            .remove(0)
    }

    /// Starts `intercloud node` and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["node", "--config", &self.config()])
            .env(
                "RUST_LOG",
                std::env::var("NODE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn node");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr()).is_ok() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("node exited early with {st}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("node did not listen: {}", self.log());
    }

    /// The node process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        unsafe_kill(c.id(), 15);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                panic!("node did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn login(&self, user: &str, password: &str, resource: Option<&str>) -> Client {
        Client::login(
            self.addr(),
            &self.domain,
            self.cert(),
            user,
            password,
            resource,
        )
        .await
        .unwrap_or_else(|e| panic!("login {user}: {e}"))
    }
}

fn unsafe_kill(pid: u32, sig: i32) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The directory of this crate.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `tests/py/s2s_flow.py` between two servers; returns its JSON line.
pub fn s2s_flow(args: &[(&str, String)], logs: &dyn Fn() -> String) -> String {
    slixmpp("s2s_flow.py", args, logs)
}

/// Runs the slixmpp script `tests/py/<script>` with `--key value` arguments;
/// returns what it printed, failing with its output and `logs()` when it fails.
pub fn slixmpp(script: &str, args: &[(&str, String)], logs: &dyn Fn() -> String) -> String {
    let script = repo().join("tests/py").join(script);
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(&script);
    for (k, v) in args {
        cmd.arg(format!("--{k}")).arg(v);
    }
    let out = cmd
        .output()
        .expect("/usr/bin/python3 must exist (apt-get install python3-slixmpp)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    stdout
}

/// A chat message.
pub fn chat(to: &str, body: &str) -> intercloud_actors::element::Element {
    use intercloud_actors::element::{Element, NS_CLIENT};
    Element::new("message", NS_CLIENT)
        .attr("to", to)
        .attr("type", "chat")
        .child(Element::new("body", NS_CLIENT).text(body))
}

/// Pings the server and waits for the answer: everything sent before has been handled.
pub async fn sync(c: &mut Client, id: &str) {
    use intercloud_actors::element::Element;
    iq_get(c, id, None, Element::new("ping", "urn:xmpp:ping")).await;
}

/// Like [`sync`], but returns the stanzas that arrived before the answer
/// instead of dropping them (bounces racing the ping, for instance).
pub async fn sync_keeping(c: &mut Client, id: &str) -> Vec<intercloud_actors::element::Element> {
    use intercloud_actors::element::{Element, NS_CLIENT};
    let iq = Element::new("iq", NS_CLIENT)
        .attr("type", "get")
        .attr("id", id)
        .child(Element::new("ping", "urn:xmpp:ping"));
    c.send(&iq).await.unwrap();
    let mut kept = Vec::new();
    loop {
        match c.next(Duration::from_secs(15)).await.unwrap() {
            intercloud::xmpp::codec::Event::Stanza(e) if e.get_attr("id") == Some(id) => {
                return kept
            }
            intercloud::xmpp::codec::Event::Stanza(e) => kept.push(e),
            e => panic!("waiting for {id}: {e:?}"),
        }
    }
}

/// Sends an iq get with `payload` (to the account's server when `to` is None) and returns its answer.
pub async fn iq_get(
    c: &mut Client,
    id: &str,
    to: Option<&str>,
    payload: intercloud_actors::element::Element,
) -> intercloud_actors::element::Element {
    use intercloud_actors::element::{Element, NS_CLIENT};
    let mut iq = Element::new("iq", NS_CLIENT)
        .attr("type", "get")
        .attr("id", id)
        .child(payload);
    if let Some(t) = to {
        iq.set_attr("to", t);
    }
    c.send(&iq).await.unwrap();
    c.wait_for(Duration::from_secs(15), |e| e.get_attr("id") == Some(id))
        .await
        .unwrap()
}

/// Sends initial presence and waits until the server has handled it.
pub async fn online(c: &mut Client) {
    c.send(&intercloud_actors::element::Element::new(
        "presence",
        intercloud_actors::element::NS_CLIENT,
    ))
    .await
    .unwrap();
    sync(c, "online").await;
}

/// Polls `f` until it holds, for at most 20 seconds.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

/// Waits for the next stanza error and checks its condition; returns it.
pub async fn bounced(c: &mut Client, condition: &str) -> intercloud_actors::element::Element {
    let e = c
        .wait_for(Duration::from_secs(20), |e| {
            e.get_attr("type") == Some("error")
        })
        .await
        .unwrap_or_else(|e| panic!("no <{condition}/> error: {e}"));
    assert!(
        e.to_xml().contains(&format!("<{condition}")),
        "{}",
        e.to_xml()
    );
    e
}

/// The whole number `n` in a report detail's "… n LABEL …" (after ": ",
/// ", " or "; "), so that "0 delivered" is never read from "10 delivered".
pub fn count_of(detail: &str, label: &str) -> Option<u64> {
    detail
        .split([',', ';', ':', '('])
        .map(str::trim)
        .find_map(|part| part.strip_suffix(label)?.trim_end().parse().ok())
}

/// `text` with `from` replaced by `to`; `from` must occur in it (a
/// replacement that no longer matches anything fails instead of silently
/// testing something else).
pub fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the text any more");
    text.replace(from, to)
}

/// Gives each test domain its own loopback address in /etc/hosts (stock
/// servers reach a peer on port 5269 of the address its name resolves to).
/// Needs root.
pub fn etc_hosts(entries: &[(&str, &str)]) {
    // Tests of one binary run at once: without the lock, two read the file,
    // each appends its own names, and the later write loses the other's.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut add = String::new();
    for (addr, name) in entries {
        let present = text.lines().any(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some(*addr) && w.any(|n| n == *name)
        });
        if !present {
            add.push_str(&format!("{addr} {name}\n"));
        }
    }
    if !add.is_empty() {
        let mut t = text;
        if !t.ends_with('\n') && !t.is_empty() {
            t.push('\n');
        }
        t.push_str(&add);
        std::fs::write("/etc/hosts", t)
            .expect("this test needs root to add its domains to /etc/hosts");
    }
}

/// A command run as the system user `user` (and its group).
pub fn as_user(user: &str, args: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={user}"))
        .arg(format!("--regid={user}"))
        .args(["--init-groups", "--"]);
    c.args(args);
    c
}

/// Waits (at most `secs`) until `child`, a stock server we started, listens
/// on every one of `ports`; panics with its log if it exits or never does.
pub fn wait_listening(
    child: &mut Child,
    ports: &[(&str, u16)],
    secs: u64,
    what: &str,
    log: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while ports
        .iter()
        .any(|(a, p)| TcpStream::connect((*a, *p)).is_err())
    {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("{what} exited with {st}: {}", log());
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// RSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
