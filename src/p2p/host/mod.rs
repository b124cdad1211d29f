//! One node's libp2p swarm and its event loop: registration, resolution with a TTL cache and root failover, gossip of new records, and anti-entropy between roots.

use super::authority::{Authority, Decision};
use super::protocol::{self, Request, Response, NODE_AGENT, PROTOCOL, ROOT_AGENT, TOPIC};
use intercloud_actors::directory::enrollment::SignedEnrollment;
use intercloud_actors::directory::record::{Body, SignedRecord};
use intercloud_actors::directory::zone::{Accepted, Zone, ZoneError};
use intercloud_actors::metrics::Metrics;
use libp2p::futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{gossipsub, identify, kad, Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error("libp2p: {0}")]
    Build(String),
    #[error("cannot listen on {0}: {1}")]
    Listen(Multiaddr, String),
    #[error("the p2p host has stopped")]
    Stopped,
}

/// Why a registration or an enrollment request did not go through.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No root answered (none connected, or all tried).
    #[error("no root reachable")]
    NoRoot,
    /// No exchange of the delegated zone answered.
    #[error("no exchange of {0}'s zone reachable")]
    NoExchange(String),
    /// A root or exchange refused, with its reason (the protocol carries text).
    #[error("{0}")]
    Refused(String),
    /// This root's zone refused the record.
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error("the p2p host has stopped")]
    Stopped,
}

/// Which transport the swarm uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// TCP + noise + yamux.
    Tcp,
    /// libp2p's in-process memory transport (+ noise + yamux): whole federations in one process.
    Memory,
}

/// How to start a host.
pub struct HostConfig {
    pub keypair: Keypair,
    pub root: bool,
    /// Keys (base64 ed25519) whose revocations and delegations the zone accepts.
    pub root_keys: Vec<String>,
    pub listen: Vec<Multiaddr>,
    /// Roots to join, each with its `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    pub transport: TransportKind,
    /// How often roots compare digests with each other.
    pub anti_entropy: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Records a root starts with (its persisted zone).
    pub initial: Vec<SignedRecord>,
    /// Called with every record a root takes into its zone (to persist it).
    pub on_accept: Option<OnAccept>,
    /// A root's trust authority.
    pub authority: Option<Authority>,
    /// Exchanges: the delegated sub-zones this node holds and answers for.
    pub zones: Vec<String>,
    /// Connections this node dials go through this fault table, as `domain`.
    pub faults: Option<(Arc<crate::net::fault::Faults>, String)>,
    /// Outbound gossip messages one connection may queue.
    pub gossip_queue: usize,
    /// Roots: enrollments waiting for approval at once.
    pub max_waiting_enrollments: usize,
    /// Records cached from lookups at once.
    pub max_cached_records: usize,
    /// Incoming libp2p connections established, and being set up, at once.
    pub max_connections: u32,
    pub max_pending_connections: u32,
    /// Where the zone's size, anti-entropy rounds and enrollments are counted.
    pub metrics: Arc<Metrics>,
}

/// What an enrollment request came to.
#[derive(Clone, Debug)]
pub enum Enrolled {
    /// The certificate chain (PEM) and the roots' authority records.
    Issued {
        chain_pem: String,
        authorities: Vec<SignedRecord>,
    },
    Pending(String),
    Refused(String),
}

/// A hook run on each record a root accepts.
pub type OnAccept = std::sync::Arc<dyn Fn(&SignedRecord) + Send + Sync>;

/// The Kademlia protocol of the Intercloud's DHT.
const KAD_PROTOCOL: &str = "/intercloud/kad/1";
/// The DHT key roots provide, so any node finds every root from any one peer.
const ROOTS_KEY: &[u8] = b"intercloud/roots";
/// Below this many known roots, a node looks for more on every round.
const WANTED_ROOTS: usize = 3;

#[derive(NetworkBehaviour)]
struct Behaviour {
    /// Connections a peer (or many made-up peers) may hold open with us.
    limits: libp2p::connection_limits::Behaviour,
    identify: identify::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Roots only: they replicate records over gossip among themselves;
    /// other nodes would only run its heartbeat.
    gossip: Toggle<gossipsub::Behaviour>,
    rr: request_response::json::Behaviour<Request, Response>,
}

enum Command {
    Register(SignedRecord, oneshot::Sender<Result<(), Refusal>>),
    Resolve(String, oneshot::Sender<Lookup>),
    Revocation(String, oneshot::Sender<Lookup>),
    Zone(oneshot::Sender<Vec<SignedRecord>>),
    Enroll(SignedEnrollment, oneshot::Sender<Result<Enrolled, Refusal>>),
    Authorities(oneshot::Sender<Vec<SignedRecord>>),
    PendingEnrollments(oneshot::Sender<Vec<(String, String)>>),
    /// Peers connected now.
    Connected(oneshot::Sender<usize>),
    Listening(oneshot::Sender<Vec<Multiaddr>>),
    Block(HashSet<PeerId>),
    Roots(oneshot::Sender<Vec<PeerId>>),
    Stop(oneshot::Sender<()>),
}

/// The handle the rest of the node (and tests) use.
#[derive(Clone)]
pub struct Host {
    tx: mpsc::Sender<Command>,
    pub peer_id: PeerId,
}

impl Host {
    /// Builds the swarm, starts listening, joins the bootstrap roots.
    pub async fn start(cfg: HostConfig) -> Result<Host, P2pError> {
        let peer_id = cfg.keypair.public().to_peer_id();
        let mut swarm = build_swarm(&cfg)?;
        let mut listener_ids = Vec::new();
        for a in &cfg.listen {
            listener_ids.push(
                swarm
                    .listen_on(a.clone())
                    .map_err(|e| P2pError::Listen(a.clone(), e.to_string()))?,
            );
        }
        let topic = gossipsub::IdentTopic::new(TOPIC);
        if cfg.root {
            if let Some(g) = swarm.behaviour_mut().gossip.as_mut() {
                g.subscribe(&topic)
                    .map_err(|e| P2pError::Build(e.to_string()))?;
            }
        }
        let bootstrap: Vec<(PeerId, Multiaddr)> = cfg
            .bootstrap
            .iter()
            .filter_map(|a| match a.iter().last() {
                Some(Protocol::P2p(p)) => Some((p, a.clone())),
                _ => None,
            })
            .collect();
        let (tx, rx) = mpsc::channel(1024);
        let mut zone = Zone::new(cfg.root_keys.clone());
        for r in cfg.initial {
            if let Err(e) = zone.accept(r) {
                tracing::warn!(error = %e, "stored record refused");
            }
        }
        let mut state = State {
            swarm,
            root: cfg.root,
            zone,
            authority: cfg.authority,
            waiting: BTreeMap::new(),
            max_waiting_enrollments: cfg.max_waiting_enrollments.max(1),
            max_cached_records: cfg.max_cached_records.max(1),
            on_accept: cfg.on_accept,
            roots: Vec::new(),
            bootstrap,
            pending: HashMap::new(),
            cache: HashMap::new(),
            blocked: HashSet::new(),
            topic,
            listening: Vec::new(),
            rounds: 0,
            zones: cfg.zones,
            listener_ids,
            metrics: cfg.metrics,
        };
        state
            .metrics
            .directory_zone_records
            .set(state.zone.len() as i64);
        if let Some(r) = state.authority.as_ref().map(Authority::authority_record) {
            if let Err(e) = state.accept(r, false) {
                tracing::warn!(error = %e, "own authority record refused");
            }
        }
        state.dial_bootstrap();
        tokio::spawn(state.run(rx, cfg.anti_entropy));
        let host = Host { tx, peer_id };
        // Wait until the listeners are up.
        for _ in 0..200 {
            if !host.listen_addrs().await.is_empty() || cfg.listen.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(host)
    }

    async fn ask<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(f(tx)).await.map_err(|_| P2pError::Stopped)?;
        rx.await.map_err(|_| P2pError::Stopped)
    }

    /// Registers a record: into the zone on a root, through a root elsewhere.
    pub async fn register(&self, r: SignedRecord) -> Result<(), Refusal> {
        self.ask(|tx| Command::Register(r, tx))
            .await
            .map_err(|_| Refusal::Stopped)?
    }

    /// Resolves a domain (verified, cached by TTL).
    pub async fn resolve(&self, domain: &str) -> Option<SignedRecord> {
        self.lookup(domain).await.ok().flatten()
    }

    /// `domain`'s record; `Ok(None)` when the directory answered that it
    /// holds none, `Err` when no root (or exchange) could be asked.
    pub async fn lookup(&self, domain: &str) -> Lookup {
        self.ask(|tx| Command::Resolve(domain.to_string(), tx))
            .await
            .unwrap_or(Err(Unreachable))
    }

    /// The revocation a root holds for `domain`, if any (not cached).
    pub async fn revocation(&self, domain: &str) -> Option<SignedRecord> {
        self.ask(|tx| Command::Revocation(domain.to_string(), tx))
            .await
            .ok()
            .and_then(|l| l.ok())
            .flatten()
    }

    /// Asks the trust authority (this root's, or a reachable root's) for a certificate.
    pub async fn enroll(&self, req: SignedEnrollment) -> Result<Enrolled, Refusal> {
        self.ask(|tx| Command::Enroll(req, tx))
            .await
            .map_err(|_| Refusal::Stopped)?
    }

    /// The roots' authority records (CA certificates), unverified.
    pub async fn authorities(&self) -> Vec<SignedRecord> {
        self.ask(Command::Authorities).await.unwrap_or_default()
    }

    /// Peers connected now (tests, status).
    pub async fn connected(&self) -> usize {
        self.ask(Command::Connected).await.unwrap_or_default()
    }

    /// Enrollments waiting for approval on the first root that answers: (domain, key).
    pub async fn pending_enrollments(&self) -> Vec<(String, String)> {
        self.ask(Command::PendingEnrollments)
            .await
            .unwrap_or_default()
    }

    /// Every record this node holds (roots: the whole zone).
    pub async fn zone(&self) -> Vec<SignedRecord> {
        self.ask(Command::Zone).await.unwrap_or_default()
    }

    /// Addresses (with `/p2p/<id>`) others can dial.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.ask(Command::Listening).await.unwrap_or_default()
    }

    /// The roots this node is connected to (found by bootstrap, identify and the DHT).
    pub async fn roots(&self) -> Vec<PeerId> {
        self.ask(Command::Roots).await.unwrap_or_default()
    }

    /// Cuts this node off from `peers` (a network partition) until called again without them.
    pub async fn block(&self, peers: HashSet<PeerId>) {
        let _ = self.tx.send(Command::Block(peers)).await;
    }

    pub async fn stop(&self) {
        let _ = self.ask(Command::Stop).await;
    }
}

mod state;
mod swarm;

use state::State;
pub use state::{Lookup, Unreachable};
use swarm::build_swarm;
pub use swarm::memory_transport;
