//! The directory host's event loop and protocol decisions: requests it answers (register, resolve, enroll, sync), referrals to delegated zones, failover between roots, enrollment at the trust authority, anti-entropy pacing.

use super::*;

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

    /// The referral a root gives for a name in a delegated zone (not for the
    /// zone's own exchanges, whose records the root keeps as glue).
    fn referral(&self, domain: &str) -> Option<Response> {
        let d = self.zone.delegation_for(domain)?;
        let Body::Delegation { exchanges } = &d.record.body else {
            return None;
        };
        if exchanges.iter().any(|e| e == domain) {
            return None;
        }
        Some(Response::Referral {
            delegation: d.clone(),
            exchanges: exchanges
                .iter()
                .filter_map(|e| self.zone.get(e).cloned())
                .collect(),
        })
    }

    /// Follows a referral: checks that a root signed the delegation and that
    /// it covers `domain`, learns where the exchanges listen, asks the first.
    fn follow(
        &mut self,
        domain: String,
        ask: Delegated,
        delegation: &SignedRecord,
        exchanges: &[SignedRecord],
    ) {
        let valid = delegation.verify().is_ok()
            && self.zone.is_root_key(&delegation.record.key)
            && below(&domain, &delegation.record.domain);
        let named = match &delegation.record.body {
            Body::Delegation { exchanges } => exchanges.clone(),
            _ => Vec::new(),
        };
        let mut left = Vec::new();
        if valid {
            for x in exchanges {
                let Body::Cloud { peer_id, p2p, .. } = &x.record.body else {
                    continue;
                };
                if x.verify().is_err() || !named.contains(&x.record.domain) {
                    continue;
                }
                let Ok(peer) = peer_id.parse::<PeerId>() else {
                    continue;
                };
                for a in p2p.iter().filter_map(|a| a.parse::<Multiaddr>().ok()) {
                    self.swarm.add_peer_address(peer, a);
                }
                left.push(peer);
            }
        } else {
            tracing::warn!(%domain, "referral with a delegation no root signed; ignored");
        }
        self.ask_exchange(domain, ask, left);
    }

    /// Sends the request to the next exchange in `left`, or gives up.
    fn ask_exchange(&mut self, domain: String, ask: Delegated, mut left: Vec<PeerId>) {
        if left.is_empty() {
            match ask {
                Delegated::Resolve(reply) => {
                    let _ = reply.send(Err(Unreachable));
                }
                Delegated::Register(_, reply) => {
                    let _ = reply.send(Err(Refusal::NoExchange(domain.clone())));
                }
            }
            return;
        }
        let p = left.remove(0);
        let req = match &ask {
            Delegated::Resolve(_) => Request::Resolve(domain.clone()),
            Delegated::Register(r, _) => Request::Register((**r).clone()),
        };
        let id = self.swarm.behaviour_mut().rr.send_request(&p, req);
        self.pending
            .insert(id, Pending::Delegated { domain, ask, left });
    }

    /// Sends `req` to a connected root not in `tried`: the request id and
    /// `tried` with that root added, or None when no root is left.
    fn ask_root(
        &mut self,
        req: Request,
        mut tried: Vec<PeerId>,
    ) -> Option<(OutboundRequestId, Vec<PeerId>)> {
        let p = self.next_root(&tried)?;
        tried.push(p);
        Some((self.swarm.behaviour_mut().rr.send_request(&p, req), tried))
    }

    fn send_register(
        &mut self,
        record: SignedRecord,
        reply: oneshot::Sender<Result<(), Refusal>>,
        tried: Vec<PeerId>,
    ) {
        match self.ask_root(Request::Register(record.clone()), tried) {
            None => {
                let _ = reply.send(Err(Refusal::NoRoot));
            }
            Some((id, tried)) => {
                let p = Pending::Register {
                    record,
                    reply,
                    tried,
                };
                self.pending.insert(id, p);
            }
        }
    }

    fn send_resolve(
        &mut self,
        domain: String,
        reply: oneshot::Sender<Lookup>,
        tried: Vec<PeerId>,
        revocation: bool,
    ) {
        let req = if revocation {
            Request::Revocation(domain.clone())
        } else {
            Request::Resolve(domain.clone())
        };
        match self.ask_root(req, tried) {
            None => {
                let _ = reply.send(Err(Unreachable));
            }
            Some((id, tried)) => {
                let p = Pending::Resolve {
                    domain,
                    reply,
                    tried,
                    revocation,
                };
                self.pending.insert(id, p);
            }
        }
    }

    fn send_enroll(
        &mut self,
        req: SignedEnrollment,
        reply: oneshot::Sender<Result<Enrolled, Refusal>>,
        tried: Vec<PeerId>,
    ) {
        match self.ask_root(Request::Enroll(req.clone()), tried) {
            None => {
                let _ = reply.send(Err(Refusal::NoRoot));
            }
            Some((id, tried)) => {
                self.pending
                    .insert(id, Pending::Enroll { req, reply, tried });
            }
        }
    }

    fn send_authorities(&mut self, reply: oneshot::Sender<Vec<SignedRecord>>, tried: Vec<PeerId>) {
        match self.ask_root(Request::Authorities, tried) {
            None => {
                let _ = reply.send(Vec::new());
            }
            Some((id, tried)) => {
                self.pending
                    .insert(id, Pending::Authorities { reply, tried });
            }
        }
    }

    /// The trust authority's answer to an enrollment request.
    fn enroll(&mut self, req: SignedEnrollment) -> Response {
        let r = self.decide_enrollment(req);
        let outcome = match &r {
            Response::Enrolled { .. } => "issued",
            Response::Pending(_) => "pending",
            _ => "refused",
        };
        self.metrics
            .directory_enrollments
            .get_or_create(&Metrics::label("outcome", outcome))
            .inc();
        r
    }

    fn decide_enrollment(&mut self, req: SignedEnrollment) -> Response {
        let Some(a) = &self.authority else {
            return Response::Refused("not a trust authority".into());
        };
        let now = super::super::authority::now();
        let domain = req.enrollment.domain.clone();
        let (issued, record) = match a.decide(&self.zone, &req, now) {
            Decision::Refuse(m) => {
                tracing::info!(%domain, reason = %m, "enrollment refused");
                return Response::Refused(m);
            }
            Decision::Pending => {
                tracing::info!(%domain, key = %req.enrollment.key, "enrollment waits for approval (intercloud directory approve)");
                if !self.waiting.contains_key(&domain)
                    && self.waiting.len() >= self.max_waiting_enrollments
                {
                    tracing::warn!(%domain, waiting = self.waiting.len(), "enrollment refused: too many waiting for approval");
                    return Response::Refused(format!(
                        "{} enrollments are waiting for approval; try again later",
                        self.waiting.len()
                    ));
                }
                self.waiting.insert(domain, req.enrollment.key);
                return Response::Pending("waiting for an administrator's approval".into());
            }
            Decision::Issue { renewal } => match a.issue(&req, now) {
                Ok(i) => {
                    let rec = a.certificate_record(&req, &i, renewal);
                    (i, rec)
                }
                Err(e) => return Response::Refused(e.to_string()),
            },
        };
        if let Err(e) = self.accept(record, true) {
            return Response::Refused(format!("could not record the certificate: {e}"));
        }
        self.waiting.remove(&domain);
        tracing::info!(%domain, not_after = issued.not_after, "certificate issued");
        Response::Enrolled {
            chain_pem: issued.chain_pem,
            authorities: self.zone.authorities().cloned().collect(),
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

    fn respond(&mut self, ch: ResponseChannel<Response>, r: Response) {
        let _ = self.swarm.behaviour_mut().rr.send_response(ch, r);
    }

    fn event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                let me = *self.swarm.local_peer_id();
                self.listening.push(address.with(Protocol::P2p(me)));
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. }
                if self.blocked.contains(&peer_id) =>
            {
                let _ = self.swarm.disconnect_peer_id(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.roots.retain(|p| *p != peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if self.blocked.contains(&peer_id) {
                    return;
                }
                if info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL) {
                    for a in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, a);
                    }
                }
                if info.agent_version == ROOT_AGENT && !self.roots.contains(&peer_id) {
                    tracing::debug!(%peer_id, "root found");
                    self.roots.push(peer_id);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result:
                    kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                        providers,
                        ..
                    })),
                ..
            })) => {
                let me = *self.swarm.local_peer_id();
                for p in providers {
                    if p != me && !self.blocked.contains(&p) && !self.swarm.is_connected(&p) {
                        // The query still holds the provider's addresses.
                        if let Err(e) = self.swarm.dial(p) {
                            tracing::debug!(peer = %p, error = %e, "cannot dial a root found in the DHT");
                        } else {
                            tracing::debug!(peer = %p, "dialing a root found in the DHT");
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                message,
                ..
            })) => {
                if !self.root
                    || message
                        .source
                        .map(|s| self.blocked.contains(&s))
                        .unwrap_or(false)
                {
                    return;
                }
                if let Ok(r) = std::str::from_utf8(&message.data)
                    .map_err(|e| e.to_string())
                    .and_then(|s| SignedRecord::from_json(s).map_err(|e| e.to_string()))
                {
                    self.replicate(r);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.response(peer, request_id, response),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Rr(
                request_response::Event::OutboundFailure {
                    request_id,
                    peer,
                    error,
                    ..
                },
            )) => {
                tracing::debug!(%peer, %error, "directory request failed; trying another root");
                match self.pending.remove(&request_id) {
                    Some(Pending::Register {
                        record,
                        reply,
                        tried,
                    }) => self.send_register(record, reply, tried),
                    Some(Pending::Resolve {
                        domain,
                        reply,
                        tried,
                        revocation,
                    }) => self.send_resolve(domain, reply, tried, revocation),
                    Some(Pending::Enroll { req, reply, tried }) => {
                        self.send_enroll(req, reply, tried)
                    }
                    Some(Pending::Authorities { reply, tried }) => {
                        self.send_authorities(reply, tried)
                    }
                    Some(Pending::Delegated { domain, ask, left }) => {
                        self.ask_exchange(domain, ask, left)
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn request(&mut self, peer: PeerId, req: Request, ch: ResponseChannel<Response>) {
        if self.blocked.contains(&peer) {
            return;
        }
        let resp = match req {
            Request::Register(r) => {
                let referral = self.root.then(|| self.referral(&r.record.domain)).flatten();
                // Roots gossip what they take; exchanges hold their zones quietly.
                let taken = match referral {
                    Some(refer) => return self.respond(ch, refer),
                    None if self.serves(&r.record.domain) => self.accept(r, false),
                    None if self.root => self.accept(r, true),
                    None => return self.respond(ch, Response::Refused("not a root".into())),
                };
                match taken {
                    Ok(_) => Response::Accepted,
                    Err(e) => Response::Refused(e.to_string()),
                }
            }
            Request::Resolve(d) if self.root => self
                .referral(&d)
                .unwrap_or_else(|| Response::Record(self.zone.get(&d).cloned())),
            Request::Resolve(d) => Response::Record(self.zone.get(&d).cloned()),
            Request::Revocation(d) => Response::Record(self.zone.revocation(&d).cloned()),
            Request::Summary(theirs) if theirs == hex(&self.zone.summary()) => Response::Accepted,
            Request::Summary(_) => Response::Sync {
                records: Vec::new(),
                digest: protocol::to_wire(&self.zone.digest()),
            },
            Request::Digest(theirs) => Response::Sync {
                records: self.zone.missing_from(&protocol::from_wire(&theirs)),
                digest: protocol::to_wire(&self.zone.digest()),
            },
            Request::Push(rs) => {
                if self.root {
                    for r in rs {
                        self.replicate(r);
                    }
                }
                Response::Accepted
            }
            Request::Enroll(req) => self.enroll(req),
            Request::Authorities => Response::Records(self.zone.authorities().cloned().collect()),
            Request::PendingEnrollments => {
                Response::Enrollments(self.waiting.clone().into_iter().collect())
            }
        };
        self.respond(ch, resp);
    }

    /// Whether this node is an exchange holding `domain`'s delegated zone.
    fn serves(&self, domain: &str) -> bool {
        self.zones.iter().any(|z| below(domain, z))
    }

    fn response(&mut self, peer: PeerId, id: OutboundRequestId, resp: Response) {
        match (self.pending.remove(&id), resp) {
            (
                Some(Pending::Resolve {
                    domain,
                    reply,
                    revocation: false,
                    ..
                }),
                Response::Referral {
                    delegation,
                    exchanges,
                },
            ) => self.follow(domain, Delegated::Resolve(reply), &delegation, &exchanges),
            (
                Some(Pending::Register { record, reply, .. }),
                Response::Referral {
                    delegation,
                    exchanges,
                },
            ) => {
                let domain = record.record.domain.clone();
                self.follow(
                    domain,
                    Delegated::Register(Box::new(record), reply),
                    &delegation,
                    &exchanges,
                )
            }
            (
                Some(Pending::Delegated {
                    domain,
                    ask: Delegated::Resolve(reply),
                    left,
                }),
                Response::Record(r),
            ) => match r {
                Some(r) if r.record.domain == domain && r.verify().is_ok() => {
                    let ttl = Duration::from_secs(r.record.ttl as u64);
                    self.cache_record(domain, r.clone(), ttl);
                    let _ = reply.send(Ok(Some(r)));
                }
                Some(_) => {
                    tracing::warn!(%peer, %domain, "an exchange answered with a record that does not verify");
                    self.ask_exchange(domain, Delegated::Resolve(reply), left);
                }
                None => {
                    let _ = reply.send(Ok(None));
                }
            },
            (
                Some(Pending::Delegated {
                    domain,
                    ask: Delegated::Register(record, reply),
                    left,
                }),
                Response::Accepted,
            ) => {
                // The other exchanges of the zone get it too; the first answer decides.
                let _ = reply.send(Ok(()));
                for p in left {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .rr
                        .send_request(&p, Request::Register((*record).clone()));
                    self.pending.insert(id, Pending::Sync);
                }
                tracing::debug!(%domain, "registered with the zone's exchanges");
            }
            (
                Some(Pending::Delegated {
                    ask: Delegated::Register(_, reply),
                    ..
                }),
                Response::Refused(e),
            ) => {
                let _ = reply.send(Err(Refusal::Refused(e)));
            }
            (Some(Pending::Register { reply, .. }), Response::Accepted) => {
                let _ = reply.send(Ok(()));
            }
            (Some(Pending::Register { reply, .. }), Response::Refused(e)) => {
                let _ = reply.send(Err(Refusal::Refused(e)));
            }
            (
                Some(Pending::Resolve {
                    domain,
                    reply,
                    tried,
                    revocation,
                }),
                Response::Record(r),
            ) => match r {
                Some(r) if r.record.domain == domain && r.verify().is_ok() => {
                    if !revocation {
                        let ttl = Duration::from_secs(r.record.ttl as u64);
                        self.cache_record(domain, r.clone(), ttl);
                    }
                    let _ = reply.send(Ok(Some(r)));
                }
                Some(_) => {
                    tracing::warn!(%peer, %domain, "a root answered with a record that does not verify");
                    self.send_resolve(domain, reply, tried, revocation);
                }
                None => {
                    let _ = reply.send(Ok(None));
                }
            },
            (Some(p @ (Pending::Sync | Pending::Summary)), Response::Sync { records, digest }) => {
                let answered_summary = matches!(p, Pending::Summary);
                for r in records {
                    self.replicate(r);
                }
                let theirs = protocol::from_wire(&digest);
                let push = self.zone.missing_from(&theirs);
                if !push.is_empty() {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .rr
                        .send_request(&peer, Request::Push(push));
                    self.pending.insert(id, Pending::Sync);
                }
                // They hold records we lack: ask for them with our digest.
                let ours = self.zone.digest();
                if answered_summary && theirs.iter().any(|(k, h)| ours.get(k) != Some(h)) {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .rr
                        .send_request(&peer, Request::Digest(protocol::to_wire(&ours)));
                    self.pending.insert(id, Pending::Sync);
                }
            }
            (
                Some(Pending::Enroll { reply, .. }),
                Response::Enrolled {
                    chain_pem,
                    authorities,
                },
            ) => {
                let _ = reply.send(Ok(Enrolled::Issued {
                    chain_pem,
                    authorities,
                }));
            }
            (Some(Pending::Enroll { reply, .. }), Response::Pending(m)) => {
                let _ = reply.send(Ok(Enrolled::Pending(m)));
            }
            (Some(Pending::Enroll { reply, .. }), Response::Refused(m)) => {
                let _ = reply.send(Ok(Enrolled::Refused(m)));
            }
            (Some(Pending::Authorities { reply, .. }), Response::Records(rs)) => {
                let _ = reply.send(rs);
            }
            (Some(Pending::Waiting(reply)), Response::Enrollments(list)) => {
                let _ = reply.send(list);
            }
            _ => {}
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
