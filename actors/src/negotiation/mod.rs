//! The negotiation actor: the paper's §7 dialog between cloud gateways as a protocol (propose → counter | accept | reject → confirm, cancel) written on the gateway API — timeouts, idempotent retransmission, atomic capacity reservation, agreements kept on both sides, proposals held for peers that are offline — and the paper's whole flow (query the exchange, check presence, propose, fall back).

pub mod flow;
pub mod policy;
pub mod protocol;

use crate::element::Element;
use crate::gateway::{
    Gateway, GatewayHandler, InboundMessage, MessageBuilder, MessageType, PresenceInfo,
    SubscriptionKind, NS_CAPACITY,
};
use crate::jid::Jid;
use crate::stanza::error_reply;
use crate::store::{Agreement, Store};
use actix::prelude::*;
use policy::{Decision, Policy};
use protocol::{Payload, Step, Terms, NS_NEGOTIATION};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// How the negotiation actor behaves.
#[derive(Clone, Debug)]
pub struct NegotiationSettings {
    pub policy: Policy,
    /// How long a step waits for its answer (and a reservation for its confirm).
    pub timeout: Duration,
    /// The last step is sent again this often while no answer came.
    pub retransmit: Duration,
    /// Negotiations open at once; more proposals are rejected.
    pub max_open: usize,
    /// How long the flow waits for a match's presence after subscribing.
    pub presence_wait: Duration,
    /// Exchanges (domains) queried for matching clouds.
    pub exchanges: Vec<String>,
    /// The local part of other clouds' gateway JIDs.
    pub peer_gateway: String,
    /// Clouds sharing an exchange the gateway subscribes to, at most.
    pub max_peers: usize,
    /// How often the exchanges are asked for new clouds to subscribe to.
    pub peers_refresh: Duration,
    /// What retransmissions and timeouts are measured against (tests set
    /// the time and send [`Tick`]).
    pub clock: Arc<dyn crate::clock::Clock>,
}

impl Default for NegotiationSettings {
    fn default() -> Self {
        NegotiationSettings {
            policy: Policy::default(),
            timeout: Duration::from_secs(10),
            retransmit: Duration::from_secs(2),
            max_open: 1000,
            presence_wait: Duration::from_secs(2),
            exchanges: Vec::new(),
            peer_gateway: "gateway".into(),
            max_peers: 256,
            peers_refresh: Duration::from_secs(30),
            clock: Arc::new(crate::clock::SystemClock),
        }
    }
}

/// How one proposal ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Agreed(Agreement),
    Rejected(String),
    TimedOut,
    /// The peer's server could not be reached (the bounce's condition).
    Unreachable(String),
    /// Left for a peer that is offline; it is delivered when the peer returns.
    Offline,
}

/// A proposal's result and the dialog that led to it.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub peer: String,
    pub id: String,
    pub result: Verdict,
    /// One line per step sent (→) or received (←), with its body.
    pub lines: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// We asked for the resources.
    Consumer,
    /// We give them.
    Provider,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Consumer: our propose is out.
    Proposed,
    /// Consumer: we accepted a counter, waiting for the confirm.
    AcceptedCounter,
    /// Provider: we accepted (capacity reserved), waiting for the confirm.
    Accepted,
    /// Provider: we countered (that much reserved), waiting for the accept.
    Countered,
}

struct Open {
    role: Role,
    peer: Jid,
    terms: Terms,
    state: State,
    /// The last step we sent, sent again until answered.
    last: Payload,
    /// None: waiting for an offline peer, no time limit.
    deadline: Option<Instant>,
    next_send: Instant,
    reserved: u64,
    min_amount: u64,
    waiter: Option<oneshot::Sender<Outcome>>,
    lines: Vec<String>,
}

type Key = (String, String);

pub struct Negotiation {
    settings: NegotiationSettings,
    store: Arc<Store>,
    gw: Gateway,
    open: HashMap<Key, Open>,
    /// The final step we sent in recently closed negotiations, replayed to retransmissions.
    closed: HashMap<Key, Payload>,
    closed_order: VecDeque<Key>,
    /// Capacity promised in agreements in force, by service (lower case).
    committed: HashMap<String, u64>,
    /// Capacity reserved by open negotiations, by service.
    reserved: HashMap<String, u64>,
    invited: HashSet<Jid>,
    next: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Negotiation {
    /// Starts the actor and installs it as the gateway's handler.
    pub fn start(
        settings: NegotiationSettings,
        store: Arc<Store>,
        gw: Gateway,
    ) -> Addr<Negotiation> {
        let policy = settings.policy.clone();
        let addr = Negotiation {
            settings,
            store,
            gw: gw.clone(),
            open: HashMap::new(),
            closed: HashMap::new(),
            closed_order: VecDeque::new(),
            committed: HashMap::new(),
            reserved: HashMap::new(),
            invited: HashSet::new(),
            next: 0,
        }
        .start();
        gw.set_handler(Box::new(NegotiationHandler {
            addr: addr.clone(),
            policy,
        }));
        addr
    }

    fn me(&self) -> Jid {
        self.gw.jid().clone()
    }

    fn free(&self, service: &str) -> u64 {
        let Some(o) = self.settings.policy.offer(service) else {
            return 0;
        };
        let k = o.service.to_ascii_lowercase();
        o.capacity
            .saturating_sub(self.committed.get(&k).copied().unwrap_or(0))
            .saturating_sub(self.reserved.get(&k).copied().unwrap_or(0))
    }

    fn reserve(&mut self, service: &str, n: u64) {
        *self
            .reserved
            .entry(service.to_ascii_lowercase())
            .or_default() += n;
    }

    fn release(&mut self, service: &str, n: u64) {
        let r = self
            .reserved
            .entry(service.to_ascii_lowercase())
            .or_default();
        *r = r.saturating_sub(n);
    }

    /// Recomputes what agreements in force promise (at start and as they expire).
    fn recount(&mut self) {
        self.committed.clear();
        let now = now_secs();
        let mut in_force = 0;
        for a in self.store.agreements().unwrap_or_else(|e| {
            tracing::error!(error = %e, "agreements read failed");
            Vec::new()
        }) {
            if a.active(now) {
                in_force += 1;
            }
            if a.role == "provider" && a.active(now) {
                *self
                    .committed
                    .entry(a.service.to_ascii_lowercase())
                    .or_default() += a.amount;
            }
        }
        self.gw.metrics().agreements.set(in_force);
    }

    /// Our presence tells what is free.
    fn announce(&self) {
        if self.settings.policy.offers.is_empty() {
            return;
        }
        let mut cap = Element::new("capacity", NS_CAPACITY);
        let mut words = Vec::new();
        for o in &self.settings.policy.offers {
            let free = self.free(&o.service);
            cap = cap.child(
                Element::new("service", NS_CAPACITY)
                    .attr("name", o.service.clone())
                    .attr("free", free.to_string())
                    .attr("total", o.capacity.to_string())
                    .attr("unit", o.unit.clone()),
            );
            words.push(format!(
                "{}: {free} of {} {} free",
                o.service, o.capacity, o.unit
            ));
        }
        self.gw.send_presence(
            Some(format!("Intercloud gateway; {}", words.join("; "))),
            vec![cap],
        );
    }

    fn send(&self, to: &Jid, p: &Payload) {
        let me = self.me();
        let msg = MessageBuilder::new()
            .with_recipient_jids([to.to_string()])
            .with_message_type(MessageType::Normal)
            .with_body(p.body(to, &me))
            .with_raw_xml(p.element())
            .build();
        self.gw.post_message(msg);
    }

    fn line(out: bool, peer: &Jid, p: &Payload, me: &Jid) -> String {
        let (arrow, body) = if out {
            ("→", p.body(peer, me))
        } else {
            ("←", p.body(me, peer))
        };
        format!("{arrow} {peer} {} [{}]: {body}", p.step.as_str(), p.id)
    }

    fn remember_closed(&mut self, key: Key, last: Payload) {
        if self.closed.insert(key.clone(), last).is_none() {
            self.closed_order.push_back(key);
        }
        while self.closed_order.len() > self.settings.max_open.max(16) {
            if let Some(k) = self.closed_order.pop_front() {
                self.closed.remove(&k);
            }
        }
    }

    fn finish(&mut self, key: &Key, result: Verdict) {
        let Some(mut o) = self.open.remove(key) else {
            return;
        };
        if o.reserved > 0 {
            self.release(&o.terms.service, o.reserved);
            self.announce();
        }
        if let Err(e) = self.store.delete_outbox(&key.1) {
            tracing::error!(error = %e, "outbox delete failed");
        }
        tracing::info!(peer = %o.peer, id = %key.1, ?result, "negotiation ended");
        let outcome = match &result {
            Verdict::Agreed(_) => "agreed",
            Verdict::Rejected(_) => "rejected",
            Verdict::TimedOut => "timed_out",
            Verdict::Unreachable(_) => "unreachable",
            Verdict::Offline => "offline",
        };
        self.gw
            .metrics()
            .negotiations
            .get_or_create(&crate::metrics::Metrics::label("outcome", outcome))
            .inc();
        let last = o.last.clone();
        self.remember_closed(key.clone(), last);
        if let Some(w) = o.waiter.take() {
            let _ = w.send(Outcome {
                peer: o.peer.to_string(),
                id: key.1.clone(),
                result,
                lines: std::mem::take(&mut o.lines),
            });
        }
    }

    /// Keeps the agreement; `role` is ours.
    fn agree(&mut self, key: &Key, role: Role, terms: &Terms) -> Option<Agreement> {
        let a = Agreement {
            id: key.1.clone(),
            peer: key.0.clone(),
            role: match role {
                Role::Consumer => "consumer",
                Role::Provider => "provider",
            }
            .into(),
            service: terms.service.clone(),
            protocol: terms.protocol.clone(),
            transport: terms.transport.clone(),
            amount: terms.amount,
            unit: terms.unit.clone(),
            duration_secs: terms.duration_secs,
            terms: terms.terms.clone(),
            created: now_secs(),
        };
        match self.store.put_agreement(&a) {
            Ok(new) => {
                if new {
                    self.gw.metrics().agreements.inc();
                }
                tracing::info!(peer = %a.peer, id = %a.id, role = %a.role, amount = a.amount, service = %a.service, "agreement");
                Some(a)
            }
            Err(e) => {
                tracing::error!(error = %e, "agreement write failed");
                None
            }
        }
    }

    fn agreement(&self, key: &Key) -> Option<Agreement> {
        self.store
            .agreements()
            .ok()?
            .into_iter()
            .find(|a| a.id == key.1 && a.peer == key.0)
    }

    fn refuse(&self, msg: &InboundMessage, why: &str) {
        tracing::warn!(from = %msg.from, why, "negotiation message refused");
        let mut st = msg.stanza.clone();
        st.set_attr("to", self.gw.full_jid().to_string());
        let mut reply = error_reply(&st, "item-not-found", Some(why));
        reply.remove_attr("from");
        self.gw.send(reply);
    }

    fn inbound(&mut self, msg: InboundMessage) {
        if msg.message_type == MessageType::Error {
            return self.bounced(msg);
        }
        let p = match Payload::parse(&msg.stanza) {
            Ok(p) => p,
            Err(protocol::ProtocolError::Missing) => return,
            Err(e) => return self.refuse(&msg, &e.to_string()),
        };
        let peer = msg.from.to_bare();
        let key: Key = (peer.to_string(), p.id.clone());
        let me = self.me();
        if p.step == Step::Propose {
            return self.proposal(msg, key, p);
        }
        let Some(o) = self.open.get_mut(&key) else {
            // Not open: a replay of something already settled, or unknown.
            return match (p.step, self.closed.get(&key).cloned(), self.agreement(&key)) {
                (Step::Accept, Some(last), _) if last.step == Step::Confirm => {
                    tracing::info!(%peer, id = %p.id, "replayed accept: confirm sent again");
                    self.send(&msg.from, &last);
                }
                (Step::Accept, _, Some(a)) if a.role == "consumer" => {
                    let confirm = Payload {
                        id: a.id.clone(),
                        step: Step::Confirm,
                        terms: Some(Terms {
                            service: a.service,
                            protocol: a.protocol,
                            transport: a.transport,
                            amount: a.amount,
                            unit: a.unit,
                            duration_secs: a.duration_secs,
                            terms: a.terms,
                        }),
                        reason: None,
                    };
                    self.send(&msg.from, &confirm);
                }
                (Step::Confirm, _, Some(_)) => {
                    tracing::debug!(%peer, id = %p.id, "duplicate confirm");
                }
                (Step::Reject | Step::Cancel, Some(_), _) => {}
                _ => self.refuse(&msg, "no such negotiation with this peer"),
            };
        };
        o.lines.push(Self::line(false, &msg.from, &p, &me));
        let role = o.role;
        let state = o.state;
        match (role, state, p.step) {
            (Role::Consumer, State::Proposed, Step::Accept) => {
                let terms = o.terms.clone();
                let confirm = Payload {
                    id: p.id.clone(),
                    step: Step::Confirm,
                    terms: Some(terms.clone()),
                    reason: None,
                };
                o.lines.push(Self::line(true, &msg.from, &confirm, &me));
                o.last = confirm.clone();
                self.send(&msg.from, &confirm);
                match self.agree(&key, Role::Consumer, &terms) {
                    Some(a) => self.finish(&key, Verdict::Agreed(a)),
                    None => self.finish(&key, Verdict::Rejected("local storage failed".into())),
                }
            }
            (Role::Consumer, State::Proposed, Step::Counter) => {
                let Some(t) = p.terms.clone() else { return };
                let same = t.service.eq_ignore_ascii_case(&o.terms.service)
                    && t.protocol.eq_ignore_ascii_case(&o.terms.protocol)
                    && t.transport.eq_ignore_ascii_case(&o.terms.transport);
                if same && t.amount >= o.min_amount && t.amount <= o.terms.amount {
                    let accept = Payload {
                        id: p.id.clone(),
                        step: Step::Accept,
                        terms: Some(t.clone()),
                        reason: None,
                    };
                    o.lines.push(Self::line(true, &msg.from, &accept, &me));
                    o.terms = t;
                    o.state = State::AcceptedCounter;
                    o.last = accept.clone();
                    o.deadline = Some(self.settings.clock.now() + self.settings.timeout);
                    o.next_send = self.settings.clock.now() + self.settings.retransmit;
                    self.send(&msg.from, &accept);
                } else {
                    let reject = Payload {
                        id: p.id.clone(),
                        step: Step::Reject,
                        terms: None,
                        reason: Some(format!(
                            "the counter-offer ({} {}) is below what we need",
                            t.amount, t.unit
                        )),
                    };
                    o.lines.push(Self::line(true, &msg.from, &reject, &me));
                    o.last = reject.clone();
                    self.send(&msg.from, &reject);
                    self.finish(
                        &key,
                        Verdict::Rejected(format!(
                            "counter-offer of {} {} refused",
                            t.amount, t.unit
                        )),
                    );
                }
            }
            (Role::Consumer, State::AcceptedCounter, Step::Confirm) => {
                let terms = o.terms.clone();
                match self.agree(&key, Role::Consumer, &terms) {
                    Some(a) => self.finish(&key, Verdict::Agreed(a)),
                    None => self.finish(&key, Verdict::Rejected("local storage failed".into())),
                }
            }
            (Role::Consumer, _, Step::Reject | Step::Cancel) => {
                let why = p.reason.clone().unwrap_or_else(|| "rejected".into());
                self.finish(&key, Verdict::Rejected(why));
            }
            (Role::Provider, State::Accepted, Step::Confirm) => {
                let terms = o.terms.clone();
                let reserved = std::mem::take(&mut o.reserved);
                self.release(&terms.service, reserved);
                match self.agree(&key, Role::Provider, &terms) {
                    Some(a) => {
                        *self
                            .committed
                            .entry(terms.service.to_ascii_lowercase())
                            .or_default() += terms.amount;
                        self.finish(&key, Verdict::Agreed(a));
                    }
                    None => self.finish(&key, Verdict::Rejected("local storage failed".into())),
                }
                self.announce();
            }
            (Role::Provider, State::Countered, Step::Accept) => {
                let terms = o.terms.clone();
                // They accept what we offered, not something else.
                if p.terms.as_ref().map(|t| t.amount) != Some(terms.amount) {
                    return self.refuse(&msg, "accept does not match the counter-offer");
                }
                let confirm = Payload {
                    id: p.id.clone(),
                    step: Step::Confirm,
                    terms: Some(terms.clone()),
                    reason: None,
                };
                o.lines.push(Self::line(true, &msg.from, &confirm, &me));
                o.last = confirm.clone();
                let reserved = std::mem::take(&mut o.reserved);
                self.release(&terms.service, reserved);
                self.send(&msg.from, &confirm);
                if let Some(a) = self.agree(&key, Role::Provider, &terms) {
                    *self
                        .committed
                        .entry(terms.service.to_ascii_lowercase())
                        .or_default() += terms.amount;
                    self.finish(&key, Verdict::Agreed(a));
                }
                self.announce();
            }
            (Role::Provider, _, Step::Reject | Step::Cancel) => {
                let why = p.reason.clone().unwrap_or_else(|| "cancelled".into());
                self.finish(&key, Verdict::Rejected(why));
            }
            (_, _, step) => {
                if let Some(o) = self.open.get_mut(&key) {
                    o.lines.pop();
                }
                tracing::warn!(%peer, id = %p.id, step = step.as_str(), ?state, "negotiation step out of order");
                self.refuse(&msg, "step out of order");
            }
        }
    }

    /// A propose: a retransmission gets the same answer; a new one is decided by policy and capacity.
    fn proposal(&mut self, msg: InboundMessage, key: Key, p: Payload) {
        if let Some(o) = self.open.get(&key) {
            tracing::debug!(peer = %key.0, id = %key.1, "retransmitted propose: same answer");
            if o.role == Role::Provider {
                let last = o.last.clone();
                self.send(&msg.from, &last);
            }
            return;
        }
        if let Some(last) = self.closed.get(&key).cloned() {
            return self.send(&msg.from, &last);
        }
        let me = self.me();
        let Some(terms) = p.terms.clone() else { return };
        if let Some(a) = self.agreement(&key) {
            // Settled already (e.g. the offline copy arrived after the resent one).
            let accept = Payload {
                id: a.id,
                step: Step::Accept,
                terms: Some(terms),
                reason: None,
            };
            return self.send(&msg.from, &accept);
        }
        let peer = msg.from.to_bare();
        let decision = if self.open.len() >= self.settings.max_open {
            Decision::Reject("too many open negotiations; try later".into())
        } else {
            self.settings
                .policy
                .decide(peer.domain(), &terms, self.free(&terms.service))
        };
        let now = self.settings.clock.now();
        let mut lines = vec![Self::line(false, &msg.from, &p, &me)];
        let (reply, state, reserved, t) = match decision {
            Decision::Accept => (Step::Accept, State::Accepted, terms.amount, terms.clone()),
            Decision::Counter(n) => {
                let t = Terms {
                    amount: n,
                    ..terms.clone()
                };
                (Step::Counter, State::Countered, n, t)
            }
            Decision::Reject(why) => {
                let reject = Payload {
                    id: p.id.clone(),
                    step: Step::Reject,
                    terms: None,
                    reason: Some(why.clone()),
                };
                tracing::info!(%peer, id = %p.id, why, "proposal rejected");
                self.send(&msg.from, &reject);
                self.remember_closed(key, reject);
                return;
            }
        };
        let answer = Payload {
            id: p.id.clone(),
            step: reply,
            terms: Some(t.clone()),
            reason: None,
        };
        lines.push(Self::line(true, &msg.from, &answer, &me));
        self.reserve(&t.service, reserved);
        tracing::info!(%peer, id = %p.id, step = reply.as_str(), amount = t.amount, "proposal answered");
        self.send(&msg.from, &answer);
        self.open.insert(
            key,
            Open {
                role: Role::Provider,
                peer: msg.from.clone(),
                terms: t,
                state,
                last: answer,
                deadline: Some(now + self.settings.timeout),
                next_send: now + self.settings.retransmit,
                reserved,
                min_amount: 0,
                waiter: None,
                lines,
            },
        );
        self.announce();
    }

    /// A bounce of one of our negotiation messages.
    fn bounced(&mut self, msg: InboundMessage) {
        let Some(n) = msg.stanza.get_child("negotiation", NS_NEGOTIATION) else {
            return;
        };
        let id = n.get_attr("id").unwrap_or("").to_string();
        let key: Key = (msg.from.to_bare().to_string(), id);
        let cond = msg.error_condition().unwrap_or_else(|| "error".into());
        let Some(o) = self.open.get_mut(&key) else {
            return;
        };
        o.lines.push(format!("← {} error: {cond}", msg.from));
        if o.deadline.is_none() {
            // Waiting for an offline peer: it stays held, and goes again when the peer is back.
            tracing::info!(peer = %key.0, id = %key.1, cond, "held for an offline peer");
            return;
        }
        if o.role == Role::Consumer {
            self.finish(&key, Verdict::Unreachable(cond));
        }
    }

    /// Resends what waits for an answer; gives up past the deadline.
    fn tick(&mut self) {
        let now = self.settings.clock.now();
        let mut expired = Vec::new();
        let mut resend = Vec::new();
        for (k, o) in self.open.iter_mut() {
            let Some(d) = o.deadline else {
                // Held for an offline peer: sent again now and then as well as
                // when its presence comes back (a presence can race a link
                // that is still failing).
                if now >= o.next_send {
                    o.next_send = now + self.settings.timeout;
                    resend.push((o.peer.clone(), o.last.clone()));
                }
                continue;
            };
            if now >= d {
                expired.push(k.clone());
            } else if now >= o.next_send {
                o.next_send = now + self.settings.retransmit;
                resend.push((o.peer.clone(), o.last.clone()));
            }
        }
        for (peer, p) in resend {
            tracing::debug!(%peer, id = %p.id, step = p.step.as_str(), "retransmitting");
            self.send(&peer, &p);
        }
        let me = self.me();
        for k in expired {
            let Some(o) = self.open.get_mut(&k) else {
                continue;
            };
            let (step, why) = match o.role {
                Role::Consumer => (Step::Cancel, "no answer in time"),
                Role::Provider => (Step::Reject, "expired: no confirmation in time"),
            };
            let p = Payload {
                id: k.1.clone(),
                step,
                terms: None,
                reason: Some(why.into()),
            };
            o.lines.push(Self::line(true, &o.peer.clone(), &p, &me));
            o.last = p.clone();
            let peer = o.peer.clone();
            self.send(&peer, &p);
            tracing::info!(%peer, id = %k.1, "negotiation timed out");
            self.finish(&k, Verdict::TimedOut);
        }
    }

    fn new_id(&mut self) -> String {
        self.next += 1;
        format!(
            "n-{}-{:08x}-{}",
            self.me().domain(),
            rand::random::<u32>(),
            self.next
        )
    }

    /// Sends a proposal; the outcome comes on the returned channel.
    fn propose(
        &mut self,
        peer: Jid,
        terms: Terms,
        min_amount: u64,
        offline: bool,
    ) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        let id = self.new_id();
        let p = Payload {
            id: id.clone(),
            step: Step::Propose,
            terms: Some(terms.clone()),
            reason: None,
        };
        let me = self.me();
        let now = self.settings.clock.now();
        let mut lines = vec![Self::line(true, &peer, &p, &me)];
        if offline {
            let held = serde_json::json!({ "terms": terms, "min_amount": min_amount }).to_string();
            if let Err(e) = self
                .store
                .put_outbox(&id, &peer.to_string(), &held, now_secs())
            {
                tracing::error!(error = %e, "outbox write failed");
            }
            lines.push(format!(
                "   (left offline: {peer}'s server keeps it if it is up (XEP-0160); {} keeps it and sends it again when {peer} is available)",
                me.domain()
            ));
        }
        self.send(&peer, &p);
        let key: Key = (peer.to_bare().to_string(), id.clone());
        self.open.insert(
            key,
            Open {
                role: Role::Consumer,
                peer: peer.clone(),
                terms,
                state: State::Proposed,
                last: p,
                deadline: (!offline).then(|| now + self.settings.timeout),
                next_send: now + self.settings.retransmit,
                reserved: 0,
                min_amount,
                waiter: None,
                lines: lines.clone(),
            },
        );
        if offline {
            let _ = tx.send(Outcome {
                peer: peer.to_string(),
                id,
                result: Verdict::Offline,
                lines,
            });
        } else if let Some(o) = self.open.get_mut(&(peer.to_bare().to_string(), id)) {
            o.waiter = Some(tx);
        }
        rx
    }

    /// Proposals held for peers that were offline, from the store (after a restart).
    fn reload_outbox(&mut self) {
        let me = self.me();
        for (id, peer, held, _) in self.store.outbox().unwrap_or_default() {
            let Ok(peer_jid) = peer.parse::<Jid>() else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&held) else {
                continue;
            };
            let Ok(terms) = serde_json::from_value::<Terms>(v["terms"].clone()) else {
                continue;
            };
            let min_amount = v["min_amount"].as_u64().unwrap_or(terms.amount);
            let p = Payload {
                id: id.clone(),
                step: Step::Propose,
                terms: Some(terms.clone()),
                reason: None,
            };
            let now = self.settings.clock.now();
            self.open.insert(
                (peer.clone(), id.clone()),
                Open {
                    role: Role::Consumer,
                    peer: peer_jid.clone(),
                    terms: terms.clone(),
                    state: State::Proposed,
                    last: p.clone(),
                    deadline: None,
                    next_send: now,
                    reserved: 0,
                    min_amount,
                    waiter: None,
                    lines: vec![Self::line(true, &peer_jid, &p, &me)],
                },
            );
            self.gw.send_invite(&peer_jid);
            tracing::info!(%peer, %id, "held proposal reloaded");
        }
    }

    /// A peer came online: what waits for it goes now.
    fn peer_available(&mut self, peer: &Jid) {
        let bare = peer.to_bare().to_string();
        let held: Vec<(Jid, Payload)> = self
            .open
            .iter()
            .filter(|((p, _), o)| *p == bare && o.deadline.is_none())
            .map(|(_, o)| (o.peer.clone(), o.last.clone()))
            .collect();
        for (to, p) in held {
            tracing::info!(peer = %to, id = %p.id, "peer is back: sending the held proposal");
            self.send(&to, &p);
        }
    }
}

impl Actor for Negotiation {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.recount();
        self.reload_outbox();
        self.announce();
        let every = (self.settings.retransmit / 4)
            .clamp(Duration::from_millis(50), Duration::from_millis(500));
        ctx.run_interval(every, |a, _| a.tick());
        // Agreements expire: the capacity they held comes back.
        ctx.run_interval(Duration::from_secs(30), |a, _| {
            let before = a.committed.clone();
            a.recount();
            if a.committed != before {
                a.announce();
            }
        });
        // Clouds sharing an exchange see each other's gateway.
        if !self.settings.exchanges.is_empty() && self.settings.max_peers > 0 {
            let refresh = self.settings.peers_refresh.max(Duration::from_secs(1));
            ctx.run_later(Duration::from_millis(500), move |a, ctx| {
                a.refresh_peers(ctx);
                ctx.run_interval(refresh, |a, ctx| a.refresh_peers(ctx));
            });
        }
    }
}

impl Negotiation {
    fn refresh_peers(&mut self, ctx: &mut Context<Self>) {
        let gw = self.gw.clone();
        let exchanges = self.settings.exchanges.clone();
        let timeout = self.settings.timeout;
        let fut = async move {
            let mut domains = Vec::new();
            for ex in exchanges {
                if let Ok(list) = flow::list_clouds(&gw, &ex, timeout).await {
                    domains.extend(list.into_values());
                }
            }
            domains
        };
        ctx.spawn(fut.into_actor(self).map(|domains, a, _| {
            let mine = a.me().domain().to_string();
            for d in domains {
                if a.invited.len() >= a.settings.max_peers {
                    break;
                }
                if d == mine {
                    continue;
                }
                let Ok(j) = format!("{}@{d}", a.settings.peer_gateway).parse::<Jid>() else {
                    continue;
                };
                if a.invited.insert(j.clone()) {
                    tracing::debug!(peer = %j, "subscribing to a cloud sharing our exchange");
                    a.gw.send_invite(&j);
                }
            }
        }));
    }
}

/// What the gateway hands over.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Inbound(pub InboundMessage);

/// A contact's presence changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerPresence {
    pub peer: Jid,
    pub available: bool,
}

/// Proposes `terms` to `peer`; `offline`: leave it for a peer that is not available.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Outcome>")]
pub struct Propose {
    pub peer: Jid,
    pub terms: Terms,
    /// The least a counter-offer may give for us to take it.
    pub min_amount: u64,
    pub offline: bool,
}

/// Runs the timers now: retransmissions due and negotiations past their
/// deadline (the actor also ticks by itself, every quarter retransmit).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Tick;

impl Handler<Tick> for Negotiation {
    type Result = ();
    fn handle(&mut self, _: Tick, _: &mut Context<Self>) {
        self.tick();
    }
}

/// The `negotiate` ad-hoc command sent to the gateway.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Command(pub Element);

/// Every agreement this cloud holds.
#[derive(Message)]
#[rtype(result = "Vec<Agreement>")]
pub struct Agreements;

/// What is free of a service now.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct Free(pub String);

impl Handler<Inbound> for Negotiation {
    type Result = ();
    fn handle(&mut self, m: Inbound, _: &mut Context<Self>) {
        self.inbound(m.0);
    }
}

impl Handler<PeerPresence> for Negotiation {
    type Result = ();
    fn handle(&mut self, m: PeerPresence, _: &mut Context<Self>) {
        if m.available {
            self.peer_available(&m.peer);
        }
    }
}

impl Handler<Propose> for Negotiation {
    type Result = MessageResult<Propose>;
    fn handle(&mut self, m: Propose, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.propose(m.peer, m.terms, m.min_amount, m.offline))
    }
}

impl Handler<Agreements> for Negotiation {
    type Result = MessageResult<Agreements>;
    fn handle(&mut self, _: Agreements, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.store.agreements().unwrap_or_default())
    }
}

impl Handler<Free> for Negotiation {
    type Result = u64;
    fn handle(&mut self, m: Free, _: &mut Context<Self>) -> u64 {
        self.free(&m.0)
    }
}

impl Handler<Command> for Negotiation {
    type Result = ();
    fn handle(&mut self, m: Command, ctx: &mut Context<Self>) {
        let gw = self.gw.clone();
        let settings = self.settings.clone();
        let me = ctx.address();
        actix::spawn(async move {
            let reply = flow::command(&gw, &me, &settings, m.0).await;
            gw.send(reply);
        });
    }
}

/// The gateway handler of the negotiation actor.
struct NegotiationHandler {
    addr: Addr<Negotiation>,
    policy: Policy,
}

impl GatewayHandler for NegotiationHandler {
    fn on_message(&mut self, _gw: &Gateway, msg: InboundMessage) {
        if msg
            .stanza
            .get_child("negotiation", NS_NEGOTIATION)
            .is_some()
        {
            self.addr.do_send(Inbound(msg));
        }
    }

    fn on_presence(&mut self, _gw: &Gateway, from: &Jid, p: &PresenceInfo) {
        self.addr.do_send(PeerPresence {
            peer: from.to_bare(),
            available: p.is_available(),
        });
    }

    fn on_subscription(&mut self, _gw: &Gateway, from: &Jid, kind: SubscriptionKind) -> bool {
        kind == SubscriptionKind::Subscribe && self.policy.partner_allowed(from.domain())
    }

    fn on_iq(&mut self, gw: &Gateway, iq: Element) -> bool {
        let is_negotiate = iq
            .get_child("command", crate::adhoc::NS_COMMANDS)
            .and_then(|c| c.get_attr("node"))
            == Some(flow::NODE);
        if !is_negotiate {
            return false;
        }
        // Only the gateway's own account (another resource of it) drives it.
        let own = crate::stanza::from(&iq)
            .ok()
            .flatten()
            .map(|f| f.to_bare() == *gw.jid())
            .unwrap_or(false);
        if !own {
            gw.send(crate::adhoc::error(
                &iq,
                "forbidden",
                None,
                Some("only the gateway's own account may negotiate"),
            ));
            return true;
        }
        self.addr.do_send(Command(iq));
        true
    }
}
