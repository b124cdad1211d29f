//! The directory host's event loop and protocol decisions: requests it answers (register, resolve, enroll, sync), referrals to delegated zones, failover between roots, enrollment at the trust authority, anti-entropy pacing.

use super::*;

mod answer;
mod ask;

impl Drop for State {
    fn drop(&mut self) {
        for id in self.listener_ids.drain(..) {
            self.swarm.remove_listener(id);
        }
    }
}

/// What an outstanding request is for.
pub(super) enum Pending {
    Register {
        record: SignedRecord,
        reply: oneshot::Sender<Result<(), Refusal>>,
        tried: Vec<PeerId>,
    },
    Resolve {
        domain: String,
        reply: oneshot::Sender<Lookup>,
        tried: Vec<PeerId>,
        revocation: bool,
    },
    Sync,
    /// A summary sent: a `Sync` answer means the zones differ.
    Summary,
    Enroll {
        req: SignedEnrollment,
        reply: oneshot::Sender<Result<Enrolled, Refusal>>,
        tried: Vec<PeerId>,
    },
    Authorities {
        reply: oneshot::Sender<Vec<SignedRecord>>,
        tried: Vec<PeerId>,
    },
    Waiting(oneshot::Sender<Vec<(String, String)>>),
    /// A request sent to the exchanges of a delegated zone; `left` are the ones not yet asked.
    Delegated {
        domain: String,
        ask: Delegated,
        left: Vec<PeerId>,
    },
}

/// What a node asks a delegated zone's exchanges.
/// The directory could not be asked: no root (or exchange of a delegated
/// zone) answered. Not the same as a name it does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no root or exchange of the directory could be asked")]
pub struct Unreachable;

/// A lookup's answer: the record, none, or nobody to ask.
pub type Lookup = Result<Option<SignedRecord>, Unreachable>;

pub(super) enum Delegated {
    Resolve(oneshot::Sender<Lookup>),
    Register(Box<SignedRecord>, oneshot::Sender<Result<(), Refusal>>),
}

/// Whether `domain` lies below `zone`.
fn below(domain: &str, zone: &str) -> bool {
    domain
        .strip_suffix(zone)
        .map(|rest| rest.ends_with('.'))
        .unwrap_or(false)
}

pub(super) struct State {
    pub(super) swarm: Swarm<Behaviour>,
    /// Removed when the host ends, however it ends: libp2p's memory
    /// transport frees a port only then (TCP ports the OS frees anyway).
    pub(super) listener_ids: Vec<libp2p::core::transport::ListenerId>,
    pub(super) root: bool,
    pub(super) zone: Zone,
    pub(super) authority: Option<Authority>,
    /// Enrollments waiting for approval: domain -> key.
    pub(super) waiting: BTreeMap<String, String>,
    pub(super) max_waiting_enrollments: usize,
    pub(super) max_cached_records: usize,
    pub(super) on_accept: Option<OnAccept>,
    /// Connected roots, in the order they were found.
    pub(super) roots: Vec<PeerId>,
    pub(super) bootstrap: Vec<(PeerId, Multiaddr)>,
    pub(super) pending: HashMap<OutboundRequestId, Pending>,
    pub(super) cache: HashMap<String, (SignedRecord, Instant)>,
    pub(super) blocked: HashSet<PeerId>,
    pub(super) topic: gossipsub::IdentTopic,
    pub(super) listening: Vec<Multiaddr>,
    /// Anti-entropy rounds so far (paces DHT announcements and lookups).
    pub(super) rounds: u64,
    /// Delegated zones this node (an exchange) answers for.
    pub(super) zones: Vec<String>,
    pub(super) metrics: Arc<Metrics>,
}

impl State {
    /// Caches a looked-up record, within `max_cached_records`: expired
    /// entries go first, then the one expiring soonest.
    fn cache_record(&mut self, domain: String, r: SignedRecord, ttl: Duration) {
        if !self.cache.contains_key(&domain) && self.cache.len() >= self.max_cached_records {
            let now = Instant::now();
            self.cache.retain(|_, (_, until)| *until > now);
            if self.cache.len() >= self.max_cached_records {
                if let Some(k) = self
                    .cache
                    .iter()
                    .min_by_key(|(_, (_, until))| *until)
                    .map(|(k, _)| k.clone())
                {
                    self.cache.remove(&k);
                }
            }
        }
        self.cache.insert(domain, (r, Instant::now() + ttl));
    }

    pub(super) fn dial_bootstrap(&mut self) {
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        for (p, a) in self.bootstrap.clone() {
            if p != *self.swarm.local_peer_id()
                && !connected.contains(&p)
                && !self.blocked.contains(&p)
            {
                // Not again while a dial to it is still in flight: under
                // load a handshake can outlast a round, and every extra dial
                // is one more handshake for a busy root.
                let opts = DialOpts::peer_id(p)
                    .addresses(vec![a])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let _ = self.swarm.dial(opts);
            }
        }
    }

    /// A connected root not yet tried.
    fn next_root(&self, tried: &[PeerId]) -> Option<PeerId> {
        self.roots
            .iter()
            .find(|p| !tried.contains(p) && !self.blocked.contains(p))
            .copied()
    }

    pub(super) fn accept(&mut self, r: SignedRecord, gossip: bool) -> Result<Accepted, ZoneError> {
        self.take(r, gossip, false)
    }

    /// Takes a record replicated from another root.
    fn replicate(&mut self, r: SignedRecord) {
        if let Err(e) = self.take(r, false, true) {
            tracing::trace!(error = %e, "replicated record not taken");
        }
    }

    fn take(
        &mut self,
        r: SignedRecord,
        gossip: bool,
        from_peer: bool,
    ) -> Result<Accepted, ZoneError> {
        let out = if from_peer {
            self.zone.accept_from_peer(r.clone())
        } else {
            self.zone.accept(r.clone())
        }?;
        if out != Accepted::Unchanged {
            self.metrics
                .directory_zone_records
                .set(self.zone.len() as i64);
            if let Some(f) = &self.on_accept {
                f(&r);
            }
        }
        if out != Accepted::Unchanged && gossip {
            if let Some(g) = self.swarm.behaviour_mut().gossip.as_mut() {
                let _ = g.publish(self.topic.clone(), r.to_json().into_bytes());
            }
        }
        Ok(out)
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Command>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Command::Stop(done)) => { let _ = done.send(()); break; }
                    Some(c) => self.command(c),
                },
                ev = self.swarm.select_next_some() => self.event(ev),
                _ = tick.tick() => self.anti_entropy(),
            }
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Register(r, reply) => {
                if self.root {
                    let _ = reply.send(self.accept(r, true).map(|_| ()).map_err(Refusal::from));
                } else {
                    self.send_register(r, reply, Vec::new());
                }
            }
            Command::Resolve(domain, reply) => {
                if self.root {
                    match self.referral(&domain) {
                        Some(Response::Referral {
                            delegation,
                            exchanges,
                        }) => {
                            self.follow(domain, Delegated::Resolve(reply), &delegation, &exchanges)
                        }
                        _ => {
                            let _ = reply.send(Ok(self.zone.get(&domain).cloned()));
                        }
                    }
                    return;
                }
                if let Some((r, until)) = self.cache.get(&domain) {
                    if *until > Instant::now() {
                        let _ = reply.send(Ok(Some(r.clone())));
                        return;
                    }
                }
                self.send_resolve(domain, reply, Vec::new(), false);
            }
            Command::Revocation(domain, reply) => {
                if self.root {
                    let _ = reply.send(Ok(self.zone.revocation(&domain).cloned()));
                    return;
                }
                self.send_resolve(domain, reply, Vec::new(), true);
            }
            Command::Enroll(req, reply) => {
                if self.authority.is_some() {
                    let _ = reply.send(Ok(match self.enroll(req) {
                        Response::Enrolled {
                            chain_pem,
                            authorities,
                        } => Enrolled::Issued {
                            chain_pem,
                            authorities,
                        },
                        Response::Pending(m) => Enrolled::Pending(m),
                        Response::Refused(m) => Enrolled::Refused(m),
                        _ => Enrolled::Refused("unexpected".into()),
                    }));
                } else {
                    self.send_enroll(req, reply, Vec::new());
                }
            }
            Command::Authorities(reply) => {
                if self.root {
                    let _ = reply.send(self.zone.authorities().cloned().collect());
                } else {
                    self.send_authorities(reply, Vec::new());
                }
            }
            Command::Connected(reply) => {
                let _ = reply.send(self.swarm.connected_peers().count());
            }
            Command::PendingEnrollments(reply) => {
                if self.root {
                    let _ = reply.send(self.waiting.clone().into_iter().collect());
                } else if let Some((id, _)) = self.ask_root(Request::PendingEnrollments, Vec::new())
                {
                    self.pending.insert(id, Pending::Waiting(reply));
                } else {
                    let _ = reply.send(Vec::new());
                }
            }
            Command::Zone(reply) => {
                let mut all: Vec<SignedRecord> = self.zone.all().cloned().collect();
                all.extend(self.cache.values().map(|(r, _)| r.clone()));
                let _ = reply.send(all);
            }
            Command::Listening(reply) => {
                let _ = reply.send(self.listening.clone());
            }
            Command::Roots(reply) => {
                let _ = reply.send(self.roots.clone());
            }
            Command::Block(peers) => {
                for p in &peers {
                    let _ = self.swarm.disconnect_peer_id(*p);
                }
                self.roots.retain(|p| !peers.contains(p));
                self.blocked = peers;
                self.dial_bootstrap();
            }
            Command::Stop(_) => {}
        }
    }

    /// Finds roots through the DHT: roots announce themselves as providers
    /// of one key; everyone asks for its providers while it knows few roots.
    fn discover(&mut self) {
        self.rounds += 1;
        let key = kad::RecordKey::new(&ROOTS_KEY);
        let kad = &mut self.swarm.behaviour_mut().kad;
        if self.root && self.rounds % 10 == 1 {
            if let Err(e) = kad.start_providing(key.clone()) {
                tracing::debug!(error = %e, "cannot announce this root in the DHT");
            }
        }
        // Roots look again every tenth round; a node that knows enough
        // roots only now and then (every query is work for the roots).
        let again = if self.root { 10 } else { 60 };
        // "Enough": the wanted number, or every root it was told of.
        let enough = WANTED_ROOTS.min(self.bootstrap.len().max(1));
        if self.roots.len() < enough || self.rounds.is_multiple_of(again) {
            kad.get_providers(key);
        }
    }

    fn anti_entropy(&mut self) {
        self.dial_bootstrap();
        self.discover();
        if !self.root {
            return;
        }
        self.metrics.directory_anti_entropy_rounds.inc();
        // Only a summary each round: the full digest of a large zone is
        // sent when the summaries differ.
        let summary = hex(&self.zone.summary());
        for p in self.roots.clone() {
            let id = self
                .swarm
                .behaviour_mut()
                .rr
                .send_request(&p, Request::Summary(summary.clone()));
            self.pending.insert(id, Pending::Summary);
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
