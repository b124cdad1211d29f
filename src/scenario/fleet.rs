//! The nodes of a scenario run, in either mode: node processes on loopback TCP, or every node's actor system on a thread of this process over the in-process network — started, stopped and killed the same way, under the same fault table.

use crate::config::Config;
use crate::federation::{self as fed, Member};
use crate::net::fault::{FaultTable, Faults};
use crate::net::{MemNet, Net};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

/// How a scenario runs its nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Real node processes on loopback TCP; faults through a file each node watches.
    Processes,
    /// Every node in this process, on the in-process network (libp2p's memory
    /// transport, s2s and c2s over in-memory pipes with the same TLS and XML).
    InProcess,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "processes" => Ok(Mode::Processes),
            "in-process" => Ok(Mode::InProcess),
            _ => Err(format!("mode {s:?}: in-process or processes")),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::Processes => "processes",
            Mode::InProcess => "in-process",
        }
    }
}

/// A node running on a thread of this process.
struct Threaded {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Threaded {
    fn end(&mut self, kill: bool) {
        let tx = if kill {
            self.kill.take()
        } else {
            self.stop.take()
        };
        if let Some(tx) = tx {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
    fn finished(&self) -> bool {
        self.thread
            .as_ref()
            .map(|t| t.is_finished())
            .unwrap_or(true)
    }
}

enum Proc {
    Os(Child),
    Thread(Threaded),
}

/// The running nodes of a federation.
pub struct Fleet {
    pub mode: Mode,
    pub members: Vec<Member>,
    procs: HashMap<String, Proc>,
    bin: PathBuf,
    mem: Option<Arc<MemNet>>,
    /// In-process: the nodes' own table. Processes: what the file says.
    pub faults: Arc<Faults>,
    faults_file: PathBuf,
    /// Nodes `start_all` leaves out (they join later, by a `start` step).
    pub later: std::collections::HashSet<String>,
}

impl Fleet {
    /// Prepares the fleet of `members` (built under `dir`); nothing runs yet.
    pub fn new(mode: Mode, members: Vec<Member>, dir: &Path, bin: &Path, seed: u64) -> Fleet {
        let faults = Faults::new(seed);
        let mut f = Fleet {
            mode,
            members,
            procs: HashMap::new(),
            bin: bin.to_path_buf(),
            mem: (mode == Mode::InProcess).then(MemNet::new),
            faults,
            faults_file: dir.join("faults.json"),
            later: Default::default(),
        };
        let _ = f.set_faults(FaultTable::default());
        f
    }

    /// The path of the fault table node processes watch.
    pub fn faults_file(&self) -> &Path {
        &self.faults_file
    }

    /// How clients (the runner's queries and message streams) reach nodes.
    pub fn client_net(&self) -> Net {
        match &self.mem {
            Some(m) => Net::memory(m.clone()),
            None => Net::tcp(),
        }
    }

    fn node_net(&self) -> Net {
        self.client_net().with_faults(self.faults.clone())
    }

    pub fn member(&self, d: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.domain == d)
            .expect("validated")
    }

    pub fn config(&self, d: &str) -> Result<Config, String> {
        Config::load(&self.member(d).config_path()).map_err(|e| e.to_string())
    }

    pub fn is_running(&self, d: &str) -> bool {
        match self.procs.get(d) {
            Some(Proc::Os(_)) => true,
            Some(Proc::Thread(t)) => !t.finished(),
            None => false,
        }
    }

    pub fn running_members(&self) -> Vec<Member> {
        self.members
            .iter()
            .filter(|m| self.procs.contains_key(&m.domain))
            .cloned()
            .collect()
    }

    /// Whether `m` accepts clients.
    pub fn listening(&self, m: &Member) -> bool {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], m.c2s_port));
        match &self.mem {
            Some(net) => net.listening(addr),
            None => std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok(),
        }
    }

    /// Every node's health.
    pub fn health(&self, members: &[Member]) -> Vec<fed::Health> {
        match self.mode {
            Mode::Processes => fed::health(members),
            Mode::InProcess => fed::health_with(
                members,
                |m| self.is_running(&m.domain),
                |m| self.listening(m),
            ),
        }
    }

    /// Starts every node, roots first, then exchanges; clouds join with at
    /// most `wave` of them joining (started, not yet enrolled — or for
    /// under 20 s) at a time (0: all at once).
    pub fn start_all(&mut self, wave: usize) -> Result<(), String> {
        match self.mode {
            Mode::Processes => {
                let later = self.later.clone();
                self.members.sort_by_key(|m| later.contains(&m.domain));
                let now = self.members.len() - later.len();
                let children =
                    fed::start(&self.bin, &mut self.members[..now]).map_err(|e| e.to_string())?;
                for (m, c) in self.members.iter().zip(children) {
                    self.procs.insert(m.domain.clone(), Proc::Os(c));
                }
            }
            Mode::InProcess => {
                // Roots, then exchanges and other services, then clouds.
                self.members.sort_by_key(|m| {
                    if m.is_root() {
                        0
                    } else if m.roles.iter().any(|r| r != "cloud") {
                        1
                    } else {
                        2
                    }
                });
                let domains: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| m.domain.clone())
                    .filter(|d| !self.later.contains(d))
                    .collect();
                let roots = self.members.iter().filter(|m| m.is_root()).count();
                let services = self
                    .members
                    .iter()
                    .filter(|m| m.roles.iter().any(|r| r != "cloud"))
                    .filter(|m| !self.later.contains(&m.domain))
                    .count();
                let wave = if wave == 0 { domains.len() } else { wave };
                // The others bootstrap from the roots: those listen first.
                for d in &domains[..roots] {
                    self.start(d)?;
                }
                self.wait_for(&domains[..roots], |f, m| f.listening(m));
                // Exchanges and other services, enrolled before clouds come.
                for d in &domains[roots..services] {
                    self.start(d)?;
                }
                let enrolled = |m: &Member| m.dir.join("data/tls/enrolled-cert.pem").exists();
                if wave < domains.len() {
                    self.wait_for(&domains[roots..services], |_, m| enrolled(m));
                }
                // Clouds: at most `wave` joining (started, not yet enrolled) at a time.
                let mut joining: Vec<(Member, std::time::Instant)> = Vec::new();
                for d in &domains[services..] {
                    while joining.len() >= wave {
                        joining
                            .retain(|(m, t)| !enrolled(m) && t.elapsed() < Duration::from_secs(20));
                        if joining.len() >= wave {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                    self.start(d)?;
                    joining.push((self.member(d).clone(), std::time::Instant::now()));
                }
            }
        }
        Ok(())
    }

    /// Starts one stopped node.
    pub fn start(&mut self, d: &str) -> Result<(), String> {
        if self.procs.contains_key(d) {
            return Err("already running".into());
        }
        let p = match self.mode {
            Mode::Processes => {
                let i = self
                    .members
                    .iter()
                    .position(|m| m.domain == d)
                    .expect("validated");
                Proc::Os(
                    fed::start_one(&self.bin, &mut self.members[i]).map_err(|e| e.to_string())?,
                )
            }
            Mode::InProcess => {
                let config = self.config(d)?;
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
                let (kill_tx, kill_rx) = tokio::sync::oneshot::channel();
                let control = crate::node::Control {
                    ready: None,
                    stop: Some(stop_rx),
                    kill: Some(kill_rx),
                    net: self.node_net(),
                };
                let name = d.to_string();
                let thread = std::thread::Builder::new()
                    .name(d.chars().take(15).collect())
                    .spawn(move || {
                        if let Err(e) = crate::node::run(config, control) {
                            tracing::error!(node = %name, error = %e, "node ended with an error");
                        }
                    })
                    .map_err(|e| e.to_string())?;
                Proc::Thread(Threaded {
                    stop: Some(stop_tx),
                    kill: Some(kill_tx),
                    thread: Some(thread),
                })
            }
        };
        self.procs.insert(d.to_string(), p);
        Ok(())
    }

    /// Waits (at most 20 s) until `ok` holds for every node of `domains`.
    fn wait_for(&self, domains: &[String], ok: impl Fn(&Fleet, &Member) -> bool) {
        let t0 = std::time::Instant::now();
        for d in domains {
            let m = self.member(d).clone();
            while !ok(self, &m) && t0.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Kills (as SIGKILL) or stops (as SIGTERM, waiting) one node.
    pub fn end(&mut self, d: &str, kill: bool) -> Result<(), String> {
        match self.procs.remove(d) {
            None => Err("not running".into()),
            Some(Proc::Os(mut c)) => {
                if kill {
                    let _ = c.kill();
                    let _ = c.wait();
                } else {
                    fed::stop(std::slice::from_mut(&mut c), Duration::from_secs(10));
                }
                Ok(())
            }
            Some(Proc::Thread(mut t)) => {
                t.end(kill);
                Ok(())
            }
        }
    }

    /// Stops every node; returns the processes still alive afterwards (none, we hope).
    pub fn stop_all(&mut self) -> Vec<String> {
        let mut children = Vec::new();
        let mut pids = Vec::new();
        let mut threads = Vec::new();
        for (d, p) in self.procs.drain() {
            match p {
                Proc::Os(c) => {
                    pids.push((d, c.id()));
                    children.push(c);
                }
                Proc::Thread(mut t) => {
                    if let Some(tx) = t.stop.take() {
                        let _ = tx.send(());
                    }
                    threads.push((d, t));
                }
            }
        }
        fed::stop(&mut children, Duration::from_secs(10));
        let mut left: Vec<String> = pids
            .into_iter()
            .filter(|(_, p)| Path::new(&format!("/proc/{p}")).exists())
            .map(|(d, p)| format!("{d} (pid {p})"))
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        for (d, mut t) in threads {
            while !t.finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.finished() {
                t.end(false);
            } else {
                left.push(format!("{d} (thread)"));
            }
        }
        left
    }

    /// Sets the fault table: in-process at once, node processes within their poll interval.
    pub fn set_faults(&mut self, mut t: FaultTable) -> Result<(), String> {
        t.p2p_ports = self
            .members
            .iter()
            .map(|m| (m.p2p_port, m.domain.clone()))
            .collect();
        self.faults.set(t.clone());
        if self.mode == Mode::Processes {
            let json = serde_json::to_string_pretty(&t).map_err(|e| e.to_string())?;
            let tmp = self.faults_file.with_extension("json.tmp");
            std::fs::write(&tmp, json).map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &self.faults_file)
                .map_err(|e| format!("{}: {e}", self.faults_file.display()))?;
            // Each running node re-reads the file every 100 ms (scenario configs).
            if !self.procs.is_empty() {
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.stop_all();
    }
}
