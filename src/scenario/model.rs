//! The scenario file (TOML): the federation to build, the timeline of steps, and the invariants checked — every key is documented in scenarios/README.md.

use intercloud_actors::negotiation::policy::Offer;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("bad scenario {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    #[error("bad scenario: {0}")]
    Invalid(String),
}

/// A whole scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub federation: FederationSpec,
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub invariants: Invariants,
    /// "processes" (default) or "in-process"; `--mode` overrides it.
    #[serde(default)]
    pub mode: Option<String>,
    /// The directory relative paths are resolved against (the file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// What to build.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSpec {
    #[serde(default = "one")]
    pub roots: usize,
    #[serde(default = "one")]
    pub exchanges: usize,
    pub clouds: usize,
    /// A directory of `<domain>.ttl` descriptions: each cloud with a file publishes it to its exchange.
    #[serde(default)]
    pub resources: Option<PathBuf>,
    /// Descriptions (files named `<domain>.ttl`) every exchange holds from the start, for clouds that are not nodes.
    #[serde(default)]
    pub import: Vec<PathBuf>,
    /// What every cloud offers in negotiations (overridden per cloud).
    #[serde(default)]
    pub offers: Vec<Offer>,
    /// Per-cloud settings.
    #[serde(default, rename = "cloud")]
    pub clouds_spec: Vec<CloudSpec>,
    /// Seconds to wait for the federation to converge at start.
    #[serde(default = "sixty")]
    pub start_timeout_secs: u64,
    /// Descriptions drawn from distributions (with a seed) for clouds that
    /// have no Turtle file in `resources`.
    #[serde(default)]
    pub generate: Option<super::generate::GenerateSpec>,
    /// At most this many clouds join at once (started, not yet enrolled);
    /// the next starts as one finishes (0: all at once) — as clouds join a
    /// real federation, and so a thousand in-process clouds do not all
    /// handshake with the roots at the same instant.
    #[serde(default)]
    pub join_wave: usize,
    /// `[gateway] max_peers` of every node: how many gateways of clouds
    /// sharing its exchange a gateway subscribes to.
    #[serde(default)]
    pub gateway_max_peers: Option<usize>,
}

fn one() -> usize {
    1
}
fn sixty() -> u64 {
    60
}

/// Settings of one cloud.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudSpec {
    pub domain: String,
    #[serde(default)]
    pub offers: Option<Vec<Offer>>,
    /// Not started with the federation: a `start` step makes it join later.
    #[serde(default)]
    pub join_later: bool,
}

/// One step of the timeline, run in order.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Wait until an exchange's catalog lists `count` clouds.
    WaitPublished {
        exchange: String,
        count: usize,
        #[serde(default = "thirty")]
        within_secs: u64,
    },
    /// The demo user of `from` publishes the Turtle file `description` to
    /// `exchange` with publish_resources: it replaces the cloud's
    /// description there (a cloud may only describe itself).
    Publish {
        from: String,
        exchange: String,
        description: PathBuf,
    },
    /// The demo user of `from` sends constraint_catalog_resources (the file: the paper's request) to `exchange`.
    Query {
        from: String,
        exchange: String,
        request: PathBuf,
        /// The answer the scenario's own data implies (the oracle), in order.
        expect: Vec<String>,
    },
    /// `intercloud negotiate` on `from`.
    Negotiate {
        from: String,
        service: String,
        #[serde(default = "one_u64")]
        amount: u64,
        constraints: PathBuf,
        /// The domain an agreement must be reached with, or "offline".
        #[serde(default)]
        expect: Option<String>,
    },
    /// SIGKILL a node.
    Kill {
        node: String,
    },
    /// SIGTERM a node and wait for it to exit.
    Stop {
        node: String,
    },
    /// Start a stopped or killed node again, or a `join_later` one for the first time.
    Start {
        node: String,
    },
    Sleep {
        secs: f64,
    },
    /// Random faults drawn from the run's seed: every `every_secs` one
    /// fault of a kind drawn from `kinds` — "kill": a node of `among`
    /// ("clouds", "exchanges", "roots" or "all") is killed when it runs or
    /// started again when it is down; "partition": some nodes of `among`
    /// are cut off from the rest (replacing the last partition); "link":
    /// the link between two nodes of `among` becomes slow and lossy. After
    /// `secs`, every fault is lifted and every node it took down starts
    /// again. The same seed gives the same schedule.
    Chaos {
        secs: f64,
        every_secs: f64,
        #[serde(default = "clouds_word")]
        among: String,
        #[serde(default = "kill_only")]
        kinds: Vec<String>,
    },
    /// Wait until every running node listens and is enrolled, and the roots agree.
    Converge {
        #[serde(default = "thirty")]
        within_secs: u64,
    },
    /// The paper's flow on every running cloud of `among` at once
    /// (`concurrency` at a time): `intercloud negotiate` — query its
    /// exchange, check the matches' presence, propose to the first available.
    /// Each answer must equal the oracle computed from the drawn
    /// descriptions (`[federation.generate]`); every cloud with a match must
    /// reach an agreement.
    Flow {
        #[serde(default = "clouds_word")]
        among: String,
        service: String,
        #[serde(default = "one_u64")]
        amount: u64,
        constraints: PathBuf,
        #[serde(default = "eight")]
        concurrency: usize,
    },
    /// Split the federation: nodes reach only the nodes of their group
    /// (nodes in no group form one more). Links across are cut at once and
    /// redials refused, at the transport layer (s2s and libp2p).
    Partition {
        groups: Vec<Vec<String>>,
    },
    /// Undo every partition and link fault.
    Heal {},
    /// Degrade the links between `a` and `b` ("*": every node): each chunk
    /// delayed, lost (breaking its connection) or duplicated with these
    /// probabilities, or the link slowed to `bytes_per_sec`. Adds to the
    /// faults in force until `heal`.
    LinkFault {
        a: String,
        b: String,
        #[serde(default)]
        delay_ms: u64,
        #[serde(default)]
        loss: f64,
        #[serde(default)]
        duplicate: f64,
        #[serde(default)]
        bytes_per_sec: u64,
    },
    /// Test only: `node` acknowledges the messages it receives over s2s and
    /// discards them — the run must then fail its acknowledged-loss check.
    LoseAcked {
        node: String,
    },
    /// Test only: `node` delivers the messages it receives over s2s with a
    /// forged `from` — the run must then fail its from-authenticity check.
    ForgeFrom {
        node: String,
    },
    /// A stream of chat messages from `from`'s demo user to `to`'s, at
    /// `rate` per second, with XEP-0198 on the sender's stream: every
    /// message its server acknowledged must arrive (or come back as an
    /// error) within `within_secs` of the last one sent.
    Messages {
        from: String,
        to: String,
        #[serde(default = "hundred")]
        count: u64,
        #[serde(default = "fifty")]
        rate: f64,
        #[serde(default = "thirty")]
        within_secs: u64,
    },
    /// Presence churn: `watcher`'s demo user subscribes to the demo users of
    /// `clouds`, which then go offline and come back `flips` times each at
    /// `rate` changes per second (alternately an unavailable presence, a
    /// dropped connection, a new login); within `within_secs` of the last
    /// change the watcher must show each one's last state, and no change
    /// of one resource may arrive after a later one.
    PresenceChurn {
        watcher: String,
        clouds: Vec<String>,
        #[serde(default = "twenty")]
        flips: u64,
        #[serde(default = "ten")]
        rate: f64,
        #[serde(default = "fifteen")]
        within_secs: u64,
    },
    /// The demo user of each of `clouds` subscribes to `node` at the
    /// publish-subscribe service of `exchange` (whose demo user makes the
    /// node, open to all and to any publisher, if it is not there).
    Subscribe {
        exchange: String,
        node: String,
        clouds: Vec<String>,
    },
    /// `from`'s demo user publishes `count` items to `node` at `exchange`
    /// at `rate` per second while the demo users of every cloud that
    /// subscribed to it (earlier `subscribe` steps) are online: each item
    /// the service acknowledged must reach every subscriber, once, in
    /// publish order, within `within_secs` of the last one sent.
    PublishItem {
        from: String,
        exchange: String,
        node: String,
        #[serde(default = "hundred")]
        count: u64,
        #[serde(default = "fifty")]
        rate: f64,
        #[serde(default = "thirty")]
        within_secs: u64,
    },
    /// `exchange`'s demo user opens `room` at its multi-user chat service
    /// and stays; the demo users of `clouds` join it and each says `count`
    /// things at `rate` per second: every message the room reflected to its
    /// sender must reach every occupant present throughout, once, in its
    /// sender's order, within `within_secs` of the last one sent.
    Room {
        exchange: String,
        room: String,
        clouds: Vec<String>,
        #[serde(default = "twenty")]
        count: u64,
        #[serde(default = "ten")]
        rate: f64,
        #[serde(default = "thirty")]
        within_secs: u64,
    },
}

fn twenty() -> u64 {
    20
}
fn ten() -> f64 {
    10.0
}
fn fifteen() -> u64 {
    15
}

fn eight() -> usize {
    8
}

fn hundred() -> u64 {
    100
}
fn fifty() -> f64 {
    50.0
}

fn kill_only() -> Vec<String> {
    vec!["kill".into()]
}

fn clouds_word() -> String {
    "clouds".into()
}

fn thirty() -> u64 {
    30
}
fn one_u64() -> u64 {
    1
}

/// What must hold.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Invariants {
    /// After the last step, every running root holds the same zone within this many seconds.
    pub roots_agree_within_secs: u64,
    /// No provider's agreements in force exceed what it offers.
    pub agreements_within_capacity: bool,
}

impl Default for Invariants {
    fn default() -> Self {
        Invariants {
            roots_agree_within_secs: 10,
            agreements_within_capacity: true,
        }
    }
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ModelError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ModelError::Read(path.to_path_buf(), e))?;
        let mut s: Scenario =
            toml::from_str(&text).map_err(|e| ModelError::Parse(path.to_path_buf(), e))?;
        s.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        s.validate()?;
        if let Some(m) = &s.mode {
            super::fleet::Mode::parse(m).map_err(ModelError::Invalid)?;
        }
        Ok(s)
    }

    /// A scenario with nothing in it (for steps that need no files).
    pub fn empty() -> Scenario {
        Scenario {
            name: String::new(),
            description: String::new(),
            federation: FederationSpec {
                roots: 1,
                exchanges: 0,
                clouds: 0,
                resources: None,
                import: Vec::new(),
                offers: Vec::new(),
                clouds_spec: Vec::new(),
                start_timeout_secs: 60,
                join_wave: 0,
                generate: None,
                gateway_max_peers: None,
            },
            steps: Vec::new(),
            invariants: Invariants::default(),
            mode: None,
            base_dir: PathBuf::new(),
        }
    }

    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Every domain the federation will have.
    pub fn domains(&self) -> Vec<String> {
        let f = &self.federation;
        (1..=f.roots)
            .map(|i| format!("root{i}.test"))
            .chain((1..=f.exchanges).map(|i| format!("exchange{i}.test")))
            .chain((1..=f.clouds).map(|i| format!("cloud{i}.test")))
            .collect()
    }

    fn validate(&self) -> Result<(), ModelError> {
        if self.federation.roots == 0 {
            return Err(ModelError::Invalid(
                "federation.roots must be at least 1".into(),
            ));
        }
        let domains = self.domains();
        let known = |d: &str, what: &str| {
            if domains.iter().any(|x| x == d) {
                Ok(())
            } else {
                Err(ModelError::Invalid(format!(
                    "{what}: no node {d:?} in this federation"
                )))
            }
        };
        for c in &self.federation.clouds_spec {
            known(&c.domain, "cloud")?;
        }
        for s in &self.steps {
            match s {
                Step::WaitPublished { exchange, .. } => known(exchange, "wait_published")?,
                Step::Publish { from, exchange, .. } => {
                    known(from, "publish")?;
                    known(exchange, "publish")?
                }
                Step::Query { from, exchange, .. } => {
                    known(from, "query")?;
                    known(exchange, "query")?
                }
                Step::Negotiate { from, .. } => known(from, "negotiate")?,
                Step::Kill { node } | Step::Stop { node } | Step::Start { node } => {
                    known(node, "fault")?
                }
                Step::Chaos {
                    among,
                    every_secs,
                    kinds,
                    ..
                } => {
                    if kinds.is_empty()
                        || kinds
                            .iter()
                            .any(|k| !["kill", "partition", "link"].contains(&k.as_str()))
                    {
                        return Err(ModelError::Invalid(format!(
                            "chaos.kinds: {kinds:?} (kill, partition, link)"
                        )));
                    }
                    if !["clouds", "exchanges", "roots", "all"].contains(&among.as_str()) {
                        return Err(ModelError::Invalid(format!(
                            "chaos.among: {among:?} (clouds, exchanges, roots, all)"
                        )));
                    }
                    if *every_secs <= 0.0 {
                        return Err(ModelError::Invalid(
                            "chaos.every_secs must be positive".into(),
                        ));
                    }
                }
                Step::Partition { groups } => {
                    for d in groups.iter().flatten() {
                        known(d, "partition")?;
                    }
                }
                Step::LinkFault {
                    a,
                    b,
                    loss,
                    duplicate,
                    ..
                } => {
                    for d in [a, b] {
                        if d != "*" {
                            known(d, "link_fault")?;
                        }
                    }
                    if !(0.0..=1.0).contains(loss) || !(0.0..=1.0).contains(duplicate) {
                        return Err(ModelError::Invalid(
                            "link_fault: loss and duplicate are probabilities (0 to 1)".into(),
                        ));
                    }
                }
                Step::LoseAcked { node } => {
                    test_faults_built("lose_acked")?;
                    known(node, "lose_acked")?
                }
                Step::ForgeFrom { node } => {
                    test_faults_built("forge_from")?;
                    known(node, "forge_from")?
                }
                Step::Flow {
                    among, concurrency, ..
                } => {
                    if !["clouds", "all"].contains(&among.as_str()) {
                        return Err(ModelError::Invalid(format!(
                            "flow.among: {among:?} (clouds, all)"
                        )));
                    }
                    if *concurrency == 0 {
                        return Err(ModelError::Invalid(
                            "flow.concurrency must be positive".into(),
                        ));
                    }
                    if self.federation.generate.is_none() {
                        return Err(ModelError::Invalid(
                            "flow checks answers against drawn descriptions: it needs [federation.generate]".into(),
                        ));
                    }
                }
                Step::Messages { from, to, rate, .. } => {
                    known(from, "messages")?;
                    known(to, "messages")?;
                    if *rate <= 0.0 {
                        return Err(ModelError::Invalid("messages.rate must be positive".into()));
                    }
                }
                Step::PresenceChurn {
                    watcher,
                    clouds,
                    rate,
                    ..
                } => {
                    known(watcher, "presence_churn")?;
                    for c in clouds {
                        known(c, "presence_churn")?;
                        if c == watcher {
                            return Err(ModelError::Invalid(format!(
                                "presence_churn: {c} cannot watch itself"
                            )));
                        }
                    }
                    if clouds.is_empty() || *rate <= 0.0 {
                        return Err(ModelError::Invalid(
                            "presence_churn needs clouds and a positive rate".into(),
                        ));
                    }
                }
                Step::Subscribe {
                    exchange, clouds, ..
                } => {
                    known(exchange, "subscribe")?;
                    for c in clouds {
                        known(c, "subscribe")?;
                    }
                    if clouds.is_empty() {
                        return Err(ModelError::Invalid("subscribe needs clouds".into()));
                    }
                }
                Step::PublishItem {
                    from,
                    exchange,
                    node,
                    rate,
                    ..
                } => {
                    known(from, "publish_item")?;
                    known(exchange, "publish_item")?;
                    let subscribed = self.steps.iter().any(|e| {
                        matches!(e, Step::Subscribe { exchange: x, node: n, .. } if x == exchange && n == node)
                    });
                    if !subscribed || *rate <= 0.0 {
                        return Err(ModelError::Invalid(format!(
                            "publish_item to {node} at {exchange} needs a subscribe step for it and a positive rate"
                        )));
                    }
                }
                Step::Room {
                    exchange,
                    clouds,
                    rate,
                    ..
                } => {
                    known(exchange, "room")?;
                    for c in clouds {
                        known(c, "room")?;
                    }
                    if clouds.is_empty() || *rate <= 0.0 {
                        return Err(ModelError::Invalid(
                            "room needs clouds and a positive rate".into(),
                        ));
                    }
                }
                Step::Sleep { .. } | Step::Converge { .. } | Step::Heal {} => {}
            }
        }
        Ok(())
    }
}

/// Test-only faults exist only in builds with the `test-faults` feature.
fn test_faults_built(step: &str) -> Result<(), ModelError> {
    if cfg!(feature = "test-faults") {
        Ok(())
    } else {
        Err(ModelError::Invalid(format!(
            "{step} is a test-only fault; this build has none (cargo build --features test-faults)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds with the `test-faults` feature (the test suite's) take the
    /// faults that break the product's promises; others (`cargo build`,
    /// releases) refuse them, in a scenario and in a node's fault table.
    #[test]
    fn test_only_faults_load_only_in_builds_that_have_them() {
        let dir = std::env::temp_dir().join(format!("ic-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.toml");
        std::fs::write(
            &file,
            "name = \"t\"\n[federation]\nroots = 1\nexchanges = 1\nclouds = 2\n\n[[step]]\naction = \"lose_acked\"\nnode = \"cloud2.test\"\n",
        )
        .unwrap();
        let loaded = Scenario::load(&file);
        let table =
            serde_json::from_str::<crate::net::fault::FaultTable>(r#"{"forge_from": ["a.test"]}"#);
        let _ = std::fs::remove_dir_all(&dir);
        if cfg!(feature = "test-faults") {
            assert!(loaded.is_ok(), "{:?}", loaded.err());
            assert!(table.is_ok(), "{:?}", table.err());
        } else {
            match loaded {
                Err(ModelError::Invalid(m)) => assert_eq!(
                    m,
                    "lose_acked is a test-only fault; this build has none (cargo build --features test-faults)"
                ),
                other => panic!("a production build took lose_acked: {:?}", other.map(|_| ())),
            }
            assert!(table.is_err(), "a production build took forge_from");
        }
    }
}
