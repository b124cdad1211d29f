//! The negotiation actor: the paper's §7 dialog between cloud gateways as a protocol (propose → counter | accept | reject → confirm, cancel) written on the gateway API — timeouts, idempotent retransmission, atomic capacity reservation, agreements kept on both sides, proposals held for peers that are offline — and the paper's whole flow (query the exchange, check presence, propose, fall back).

mod dialog;
pub mod flow;
pub mod policy;
pub mod protocol;
mod timers;

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
