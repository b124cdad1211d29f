//! `intercloud federation up|status`: a whole federation on one machine — every node's config, keys, trust (a root's enrollment token), started as processes on loopback ports, watched until the directory has converged, and stopped cleanly.

use crate::config::Config;
use crate::init::{init, InitOptions};
use serde::{Deserialize, Serialize};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("{0}")]
    Setup(String),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("the federation did not converge within {0:?}: {1}")]
    NotConverged(Duration, String),
}

/// One node of a federation, as `federation.json` keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Member {
    pub domain: String,
    pub roles: Vec<String>,
    pub dir: PathBuf,
    pub c2s_port: u16,
    pub s2s_port: u16,
    pub p2p_port: u16,
    pub demo_user: String,
    pub demo_password: String,
    #[serde(default)]
    pub pid: Option<u32>,
}

impl Member {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("intercloud.toml")
    }
    pub fn is_root(&self) -> bool {
        self.roles.iter().any(|r| r == "root")
    }
}

/// The federation file in DIR.
pub fn manifest(dir: &Path) -> PathBuf {
    dir.join("federation.json")
}

/// A port that is free now and not in `given`, drawn at random below
/// Linux's ephemeral range (32768–60999), so outgoing connections made
/// before the node starts cannot take it (another program still may:
/// `start` then moves the node).
fn free_port(given: &mut std::collections::HashSet<u16>) -> Result<u16, FederationError> {
    for _ in 0..10_000 {
        let p = 10_000 + (rand::random::<u16>() % 22_000);
        if given.contains(&p) || std::net::TcpListener::bind(("127.0.0.1", p)).is_err() {
            continue;
        }
        given.insert(p);
        return Ok(p);
    }
    Err(FederationError::Setup("no free port in 10000-31999".into()))
}

/// Replaces one line of a generated config.
pub fn edit(path: &Path, old: &str, new: &str) -> Result<(), FederationError> {
    let text = std::fs::read_to_string(path).map_err(|e| FederationError::Io(path.into(), e))?;
    if !text.contains(old) {
        return Err(FederationError::Setup(format!(
            "{}: no line {old:?}",
            path.display()
        )));
    }
    std::fs::write(path, text.replacen(old, new, 1))
        .map_err(|e| FederationError::Io(path.into(), e))
}

/// Clouds publish to, and ask, one exchange each (or the first root).
pub(crate) fn exchange_for(i: usize, exchanges: &[String], first: &str) -> String {
    if exchanges.is_empty() {
        first.to_string()
    } else {
        exchanges[i % exchanges.len()].clone()
    }
}

/// What every node of a generated federation is told: only certificates
/// from the roots' trust authority authenticate s2s (SASL EXTERNAL), the
/// roots' keys and addresses, the enrollment token (roots accept it,
/// others present it), and for clouds the exchange to ask.
pub(crate) fn wire(
    p: &Path,
    roles: &[String],
    root_keys: &[String],
    bootstrap: &[String],
    token: &str,
    exchange: &str,
) -> Result<(), FederationError> {
    edit(
        p,
        "auth = [\"external\", \"dialback\"]",
        "auth = [\"external\"]",
    )?;
    edit(
        p,
        "root_keys = []",
        &format!("root_keys = [{}]", quoted(root_keys)),
    )?;
    edit(
        p,
        "bootstrap = []",
        &format!("bootstrap = [{}]", quoted(bootstrap)),
    )?;
    if roles.iter().any(|r| r == "root") {
        edit(
            p,
            "enrollment_tokens = []",
            &format!("enrollment_tokens = [\"{token}\"]"),
        )?;
    } else {
        edit(
            p,
            "enrollment_token = \"\"",
            &format!("enrollment_token = \"{token}\""),
        )?;
    }
    if !roles.iter().any(|r| r == "exchange" || r == "root") {
        edit(
            p,
            "exchanges = []",
            &format!("exchanges = [\"{exchange}\"]"),
        )?;
    }
    Ok(())
}

fn quoted(v: &[String]) -> String {
    v.iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Generates configs, keys and trust for `roots` roots, `exchanges` exchanges and `clouds` clouds under `dir`.
pub fn generate(
    dir: &Path,
    roots: usize,
    exchanges: usize,
    clouds: usize,
) -> Result<Vec<Member>, FederationError> {
    if roots == 0 {
        return Err(FederationError::Setup(
            "a federation needs at least one root".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| FederationError::Io(dir.into(), e))?;
    let token = format!("{:032x}", rand::random::<u128>());
    let mut members = Vec::new();
    let mut ports = std::collections::HashSet::new();
    let names = (1..=roots)
        .map(|i| {
            (
                format!("root{i}.test"),
                vec!["cloud".to_string(), "root".to_string()],
            )
        })
        .chain((1..=exchanges).map(|i| {
            (
                format!("exchange{i}.test"),
                vec!["cloud".into(), "exchange".into()],
            )
        }))
        .chain((1..=clouds).map(|i| (format!("cloud{i}.test"), vec!["cloud".into()])));
    for (domain, roles) in names {
        let m = Member {
            dir: dir.join(&domain),
            domain,
            roles,
            c2s_port: free_port(&mut ports)?,
            s2s_port: free_port(&mut ports)?,
            p2p_port: free_port(&mut ports)?,
            demo_user: "demo".into(),
            demo_password: format!("{:016x}", rand::random::<u64>()),
            pid: None,
        };
        init(&InitOptions {
            dir: &m.dir,
            domain: &m.domain,
            roles: m.roles.clone(),
            c2s_port: m.c2s_port,
            s2s_port: m.s2s_port,
            p2p_port: m.p2p_port,
        })
        .map_err(|e| FederationError::Setup(e.to_string()))?;
        members.push(m);
    }
    // The roots' keys and addresses: everyone trusts and joins them.
    let mut keys = Vec::new();
    let mut addrs = Vec::new();
    for m in members.iter().filter(|m| m.is_root()) {
        let c =
            Config::load(&m.config_path()).map_err(|e| FederationError::Setup(e.to_string()))?;
        keys.push(
            crate::p2p::directory::public_key(&c)
                .map_err(|e| FederationError::Setup(e.to_string()))?,
        );
        addrs.push(
            crate::p2p::directory::peer_addr(&c)
                .map_err(|e| FederationError::Setup(e.to_string()))?,
        );
    }
    let exchange_domains: Vec<String> = members
        .iter()
        .filter(|m| m.roles.iter().any(|r| r == "exchange"))
        .map(|m| m.domain.clone())
        .collect();
    for (i, m) in members.iter().enumerate() {
        let p = m.config_path();
        edit(&p, "anti_entropy_secs = 10", "anti_entropy_secs = 1")?;
        let others: Vec<String> = addrs
            .iter()
            .filter(|a| !a.contains(&format!("/tcp/{}/", m.p2p_port)))
            .cloned()
            .collect();
        wire(
            &p,
            &m.roles,
            &keys,
            &others,
            &token,
            &exchange_for(i, &exchange_domains, &members[0].domain),
        )?;
        let c = Config::load(&p).map_err(|e| FederationError::Setup(e.to_string()))?;
        let store =
            crate::node::open_store(&c).map_err(|e| FederationError::Setup(e.to_string()))?;
        store
            .add_user(
                &format!("{}@{}", m.demo_user, m.domain),
                &m.demo_password,
                c.limits.scram_iterations,
            )
            .map_err(|e| FederationError::Setup(e.to_string()))?;
    }
    save(dir, &members)?;
    Ok(members)
}

pub fn save(dir: &Path, members: &[Member]) -> Result<(), FederationError> {
    let p = manifest(dir);
    let tmp = p.with_extension("tmp");
    let text =
        serde_json::to_string_pretty(members).map_err(|e| FederationError::Setup(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(|e| FederationError::Io(tmp.clone(), e))?;
    std::fs::rename(&tmp, &p).map_err(|e| FederationError::Io(p.clone(), e))
}

pub fn load(dir: &Path) -> Result<Vec<Member>, FederationError> {
    let p = manifest(dir);
    let text = std::fs::read_to_string(&p).map_err(|e| FederationError::Io(p.clone(), e))?;
    serde_json::from_str(&text).map_err(|e| FederationError::Setup(format!("{}: {e}", p.display())))
}

/// Starts every node as a process of `bin`, logging to its directory: the
/// roots first, each listening before the others start. A node that finds a
/// port taken (another program bound it between generation and start) gets
/// new ports — and every config naming its p2p address is rewritten — and
/// starts again.
pub fn start(bin: &Path, members: &mut [Member]) -> Result<Vec<Child>, FederationError> {
    members.sort_by_key(|m| !m.is_root());
    let mut ports: std::collections::HashSet<u16> = members
        .iter()
        .flat_map(|m| [m.c2s_port, m.s2s_port, m.p2p_port])
        .collect();
    let mut children: Vec<Child> = Vec::with_capacity(members.len());
    let roots = members.iter().filter(|m| m.is_root()).count();
    // The roots, listening, before the others (they bootstrap from them).
    for (from, upto) in [(0, roots), (roots, members.len())] {
        for m in members[from..upto].iter_mut() {
            children.push(start_one(bin, m)?);
        }
        for j in from..upto {
            for _try in 0..3 {
                if !port_taken(&members[j], &mut children[j]) {
                    break;
                }
                repick(members, j, &mut ports)?;
                let _ = std::fs::rename(
                    members[j].dir.join("node.log"),
                    members[j].dir.join("node.log.port-taken"),
                );
                children[j] = start_one(bin, &mut members[j])?;
            }
        }
    }
    Ok(children)
}

/// Waits until `m` listens (false) or exits because a port was taken (true).
fn port_taken(m: &Member, c: &mut Child) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        if TcpStream::connect(("127.0.0.1", m.c2s_port)).is_ok() {
            return false;
        }
        if let Ok(Some(_)) = c.try_wait() {
            return std::fs::read_to_string(m.dir.join("node.log"))
                .map(|l| l.contains("Address already in use"))
                .unwrap_or(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// New ports for member `i`; its config, and every config that names its p2p address, follow.
fn repick(
    members: &mut [Member],
    i: usize,
    ports: &mut std::collections::HashSet<u16>,
) -> Result<(), FederationError> {
    let (c2s, s2s, p2p) = (free_port(ports)?, free_port(ports)?, free_port(ports)?);
    let m = &members[i];
    let cfg = m.config_path();
    for (old, new) in [(m.c2s_port, c2s), (m.s2s_port, s2s), (m.p2p_port, p2p)] {
        edit(&cfg, &format!("port = {old}\n"), &format!("port = {new}\n"))?;
    }
    let (old_tcp, new_tcp) = (format!("/tcp/{}/", m.p2p_port), format!("/tcp/{p2p}/"));
    for o in members.iter() {
        let path = o.config_path();
        if let Ok(text) = std::fs::read_to_string(&path) {
            if text.contains(&old_tcp) {
                std::fs::write(&path, text.replace(&old_tcp, &new_tcp))
                    .map_err(|e| FederationError::Io(path.clone(), e))?;
            }
        }
    }
    let m = &mut members[i];
    (m.c2s_port, m.s2s_port, m.p2p_port) = (c2s, s2s, p2p);
    Ok(())
}

/// Starts one node (again).
pub fn start_one(bin: &Path, m: &mut Member) -> Result<Child, FederationError> {
    let log_path = m.dir.join("node.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| FederationError::Io(log_path.clone(), e))?;
    let mut cmd = Command::new(bin);
    // If the process that started the node dies (even by SIGKILL), the node is told to stop.
    #[cfg(target_os = "linux")]
    unsafe {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let child = cmd
        .args(["node", "--config"])
        .arg(m.config_path())
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| FederationError::Io(bin.into(), e))?;
    m.pid = Some(child.id());
    Ok(child)
}

/// Sends `sig` to a process we started.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a pid we spawned and have not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// How one node is doing.
#[derive(Clone, Debug, Serialize)]
pub struct Health {
    pub domain: String,
    pub running: bool,
    pub listening: bool,
    /// A certificate from the trust authority (roots issue their own).
    pub enrolled: bool,
    /// Roots: how many of the federation's domains their zone holds.
    pub zone: Option<usize>,
}

fn alive(pid: Option<u32>) -> bool {
    pid.map(|p| Path::new(&format!("/proc/{p}")).exists() && !zombie(p))
        .unwrap_or(false)
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.split(") ")
                .nth(1)
                .map(|r| r.starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(true)
}

/// Checks every node: process, port, enrollment, and the roots' zones.
pub fn health(members: &[Member]) -> Vec<Health> {
    health_with(
        members,
        |m| alive(m.pid),
        |m| {
            TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], m.c2s_port)),
                Duration::from_millis(300),
            )
            .is_ok()
        },
    )
}

/// The domains a zone's records (JSON) name.
fn zone_domains(recs: &[String]) -> std::collections::HashSet<String> {
    recs.iter()
        .filter_map(|r| {
            let i = r.find("\"domain\":\"")? + 10;
            let j = r[i..].find('"')?;
            Some(r[i..i + j].to_string())
        })
        .collect()
}

/// As `health`, with how to tell that a node runs and listens (processes or in-process nodes).
pub fn health_with(
    members: &[Member],
    running: impl Fn(&Member) -> bool,
    listening: impl Fn(&Member) -> bool,
) -> Vec<Health> {
    members
        .iter()
        .map(|m| {
            let zone = m.is_root().then(|| {
                Config::load(&m.config_path())
                    .ok()
                    .and_then(|c| crate::node::open_store(&c).ok())
                    .and_then(|s| s.zone_records().ok())
                    .map(|recs| {
                        let held = zone_domains(&recs);
                        members.iter().filter(|o| held.contains(&o.domain)).count()
                    })
                    .unwrap_or(0)
            });
            Health {
                domain: m.domain.clone(),
                running: running(m),
                listening: listening(m),
                enrolled: m.is_root() || m.dir.join("data/tls/enrolled-cert.pem").exists(),
                zone,
            }
        })
        .collect()
}

/// Whether every node runs, listens and is enrolled, and every root holds every domain.
pub fn converged(members: &[Member], h: &[Health]) -> Result<(), String> {
    for x in h {
        if !x.running {
            return Err(format!("{} is not running", x.domain));
        }
    }
    for x in h {
        if !x.listening {
            return Err(format!("{} does not listen yet", x.domain));
        }
        if !x.enrolled {
            return Err(format!("{} is not enrolled yet", x.domain));
        }
    }
    for x in h {
        if let Some(n) = x.zone {
            if n < members.len() {
                return Err(format!(
                    "{} holds {n} of {} domains",
                    x.domain,
                    members.len()
                ));
            }
        }
    }
    Ok(())
}

/// Waits until the federation has converged.
pub fn wait_converged(members: &[Member], within: Duration) -> Result<Duration, FederationError> {
    let t0 = Instant::now();
    loop {
        let h = health(members);
        match converged(members, &h) {
            Ok(()) => return Ok(t0.elapsed()),
            Err(why) if t0.elapsed() >= within => {
                return Err(FederationError::NotConverged(within, why))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The table `up` and `status` print.
pub fn table(members: &[Member], h: Option<&[Health]>) -> String {
    let mut s = format!(
        "{:<18} {:<15} {:>6} {:>6} {:>6}  {:<34} {}\n",
        "domain",
        "roles",
        "c2s",
        "s2s",
        "p2p",
        "demo account (jid / password)",
        if h.is_some() { "health" } else { "" }
    );
    for (i, m) in members.iter().enumerate() {
        let health = h
            .and_then(|h| h.get(i))
            .map(|x| {
                let mut v = vec![if x.running { "running" } else { "STOPPED" }];
                if x.running && !x.listening {
                    v.push("not listening");
                }
                if !x.enrolled {
                    v.push("not enrolled");
                }
                let mut s = v.join(", ");
                if let Some(z) = x.zone {
                    s += &format!(", zone {z}/{}", members.len());
                }
                s
            })
            .unwrap_or_default();
        s += &format!(
            "{:<18} {:<15} {:>6} {:>6} {:>6}  {:<34} {}\n",
            m.domain,
            m.roles.join(","),
            m.c2s_port,
            m.s2s_port,
            m.p2p_port,
            format!("{}@{} / {}", m.demo_user, m.domain, m.demo_password),
            health
        );
    }
    s
}

/// Stops the nodes we started: SIGTERM, then SIGKILL after `grace`.
pub fn stop(children: &mut [Child], grace: Duration) {
    for c in children.iter() {
        signal(c, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    for c in children.iter_mut() {
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}
