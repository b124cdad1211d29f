//! The router actor: bare JID -> bound sessions, and RFC 6121 §8 delivery rules for every stanza.

use crate::element::Element;
use crate::jid::Jid;
use crate::link::{
    Dialer, DomainReachable, DomainUnreachable, IsUp, Link, LinkEvents, LinkIdle, LinkSettings,
    Outgoing,
};
use crate::messages::{Deliver, IqResponse, Route, ToService};
use crate::presence::{
    DeliverTo, InboundPresence, Presence, ResourceGone, RosterPush, SetInterested,
};
use crate::server_iq::answer_server_iq;
use crate::session::{
    Attached, Bind, BindError, DeliverRaw, Detached, Kick, Session, SetPresence, Unbind,
};
use crate::stanza::{self, error_reply, Kind};
use crate::store::Store;
use crate::{offline, Settings};
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

struct Entry {
    addr: Addr<Session>,
    /// None while the resource is not available.
    priority: Option<i8>,
    /// The resource asked for its roster, so it gets roster pushes.
    interested: bool,
    /// Since when the session waits for its client to resume (XEP-0198).
    detached: Option<std::time::Instant>,
}

/// Routes stanzas between the sessions of one cloud.
pub struct Router {
    settings: Settings,
    store: Arc<Store>,
    presence: Addr<Presence>,
    sessions: HashMap<Jid, HashMap<String, Entry>>,
    /// Opens links to other domains (the s2s layer), when there is one.
    dialer: Option<(Arc<dyn Dialer>, LinkSettings)>,
    /// One link actor per remote domain.
    links: HashMap<String, Addr<Link>>,
    /// Domains dialed for the first time, not yet up or given up: by
    /// domain, the sender whose stanza made the link.
    pending: HashMap<String, String>,
    /// How many of `pending` each sender made.
    pending_by_sender: HashMap<String, usize>,
    /// The services at subdomains of ours (`service.`, `pubsub.`, …), by host.
    services: HashMap<String, Recipient<ToService>>,
    /// The personal eventing service: iqs to accounts' bare JIDs for it.
    pep: Option<Recipient<ToService>>,
    /// Who hears of remote domains becoming unreachable (the room service).
    domain_watchers: Vec<Recipient<crate::messages::DomainGone>>,
    /// Who hears of remote domains reachable again (the pubsub service).
    return_watchers: Vec<Recipient<crate::messages::DomainBack>>,
    /// Who gets the answers to iqs it sent, by id prefix.
    iq_results: Vec<(String, Recipient<IqResponse>)>,
    /// New domains refused (the log says so at powers of two, not each time).
    refused_dials: u64,
    /// Sessions detached now (they count against the connection limit).
    pub detached: Arc<std::sync::atomic::AtomicUsize>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Actor for Router {
    type Context = Context<Self>;
}

/// The connection limit is reached: the session detached longest ends (what
/// it held unacknowledged is routed again). Answers whether there was one.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct EndOldestDetached;

/// Plugs in a service at a subdomain (the catalog at `service.<domain>`,
/// publish-subscribe at `pubsub.<domain>`); stanzas to that host go to it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetService {
    pub host: String,
    pub to: Recipient<ToService>,
}

/// `to` hears of every remote domain whose link comes up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchReturns(pub Recipient<crate::messages::DomainBack>);

/// Plugs in the personal eventing service (XEP-0163): publish-subscribe and
/// disco requests to accounts' bare JIDs, and the answers to its queries.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetPep(pub Recipient<ToService>);

/// `to` hears of every remote domain that becomes unreachable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchDomains(pub Recipient<crate::messages::DomainGone>);

/// Results and errors of iqs whose id starts with `prefix` go to `to`
/// (whoever sent the requests: the catalog publisher, …).
#[derive(Message)]
#[rtype(result = "()")]
pub struct HandleIqResults {
    pub prefix: String,
    pub to: Recipient<IqResponse>,
}

/// Plugs in the s2s layer: stanzas for other domains go over links it dials.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetDialer(pub Arc<dyn Dialer>, pub LinkSettings);

/// Whether the link to a domain is up (for tests and metrics).
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct LinksUp;

/// The node is stopping: every session ends with `<system-shutdown/>`.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Shutdown;

/// Counts bound sessions (for status and tests).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountSessions;

impl Router {
    pub fn new(
        settings: Settings,
        store: Arc<Store>,
        presence: Addr<Presence>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Router {
        Router {
            metrics,
            settings,
            store,
            presence,
            sessions: HashMap::new(),
            dialer: None,
            links: HashMap::new(),
            pending: HashMap::new(),
            pending_by_sender: HashMap::new(),
            services: HashMap::new(),
            pep: None,
            domain_watchers: Vec::new(),
            return_watchers: Vec::new(),
            iq_results: Vec::new(),
            refused_dials: 0,
            detached: Default::default(),
        }
    }

    fn deliver(&self, to: &Jid, st: Element) -> bool {
        self.deliver_with(to, st, |addr, st| addr.do_send(Deliver(st)))
    }

    /// Hands `st`, addressed to the full JID `to`, to that session with `send`.
    fn deliver_with(
        &self,
        to: &Jid,
        mut st: Element,
        send: impl FnOnce(&Addr<crate::session::Session>, Element),
    ) -> bool {
        let Some(res) = to.resource() else {
            return false;
        };
        match self.sessions.get(&to.to_bare()).and_then(|m| m.get(res)) {
            Some(e) => {
                st.set_attr("to", to.to_string());
                send(&e.addr, st);
                true
            }
            None => false,
        }
    }

    /// Sends an error reply for `st` back to its sender.
    fn bounce(&mut self, st: &Element, condition: &str, ctx: &mut Context<Self>) {
        if stanza::may_bounce(st) && st.get_attr("from").is_some() {
            tracing::debug!(condition, to = ?st.get_attr("to"), "bouncing stanza");
            self.metrics.bounced(condition);
            let reply = error_reply(st, condition, None);
            self.route(reply, ctx);
        }
    }

    fn route_remote(&mut self, domain: String, st: Element, ctx: &mut Context<Self>) {
        let Some((dialer, settings)) = self.dialer.clone() else {
            return self.bounce(&st, "remote-server-not-found", ctx);
        };
        if let Some(link) = self.links.get(&domain) {
            return link.do_send(Outgoing(st));
        }
        // A new domain: bounded in all, in dials under way, and per sender,
        // so that no one can make the node dial without end.
        let sender = st
            .get_attr("from")
            .and_then(|f| f.parse::<Jid>().ok())
            .map(|j| j.to_bare().to_string())
            .unwrap_or_default();
        let by_sender = self.pending_by_sender.get(&sender).copied().unwrap_or(0);
        let refused = if self.links.len() >= settings.max_domains {
            Some("remote domains")
        } else if self.pending.len() >= settings.max_pending {
            Some("new remote domains being dialed")
        } else if by_sender >= settings.max_pending_per_sender {
            Some("new remote domains being dialed for this sender")
        } else {
            None
        };
        if let Some(what) = refused {
            self.refused_dials += 1;
            if self.refused_dials.is_power_of_two() {
                tracing::warn!(%domain, %sender, refused = self.refused_dials, "too many {what}: stanza bounced");
            }
            return self.bounce(&st, "resource-constraint", ctx);
        }
        let link = Link::new(
            self.settings.domain.clone(),
            domain.clone(),
            dialer,
            LinkEvents::of(&ctx.address()),
            settings,
        )
        .start();
        link.do_send(Outgoing(st));
        self.links.insert(domain.clone(), link);
        *self.pending_by_sender.entry(sender.clone()).or_insert(0) += 1;
        self.pending.insert(domain, sender);
    }

    /// The first dial to `domain` ended (up, or given up).
    fn dialed(&mut self, domain: &str) {
        let Some(sender) = self.pending.remove(domain) else {
            return;
        };
        if let Some(n) = self.pending_by_sender.get_mut(&sender) {
            *n -= 1;
            if *n == 0 {
                self.pending_by_sender.remove(&sender);
            }
        }
    }

    fn route(&mut self, st: Element, ctx: &mut Context<Self>) {
        let to = match stanza::to(&st) {
            Ok(Some(t)) => t,
            _ => {
                self.bounce(&st, "jid-malformed", ctx);
                return;
            }
        };
        if to.domain() != self.settings.domain {
            // Services of a domain are reached through its server.
            if let Some(svc) = self.services.get(to.domain()) {
                svc.do_send(ToService(st));
                return;
            }
            if crate::jid::server_of(to.domain()) == self.settings.domain {
                // A service of ours that is switched off.
                return self.bounce(&st, "service-unavailable", ctx);
            }
            let server = crate::jid::server_of(to.domain()).to_string();
            return self.route_remote(server, st, ctx);
        }
        let Some(kind) = stanza::kind(&st) else {
            return;
        };
        if to.local().is_none() {
            // Addressed to the server itself.
            if kind == Kind::Iq && matches!(stanza::stype(&st), "result" | "error") {
                let id = st.get_attr("id").unwrap_or("");
                if let Some((_, to)) = self
                    .iq_results
                    .iter()
                    .find(|(p, _)| id.starts_with(p.as_str()))
                {
                    to.do_send(IqResponse(st));
                    return;
                }
            }
            if kind == Kind::Iq {
                if let Some(reply) = answer_server_iq(&st, &self.settings.services) {
                    self.route(reply, ctx);
                }
            }
            return;
        }
        match kind {
            Kind::Presence => self.presence.do_send(InboundPresence(st)),
            Kind::Message => self.route_message(&to, st, ctx),
            Kind::Iq => self.route_iq(&to, st, ctx),
        }
    }

    fn available(&self, bare: &Jid) -> Vec<(&String, i8)> {
        self.sessions
            .get(bare)
            .map(|m| {
                m.iter()
                    .filter_map(|(r, e)| e.priority.filter(|p| *p >= 0).map(|p| (r, p)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn route_message(&mut self, to: &Jid, st: Element, ctx: &mut Context<Self>) {
        if !to.is_bare() && self.deliver(to, st.clone()) {
            return;
        }
        let bare = to.to_bare();
        let ty = st.get_attr("type").unwrap_or("normal").to_string();
        match ty.as_str() {
            "error" => return,
            "groupchat" => return self.bounce(&st, "service-unavailable", ctx),
            _ => {}
        }
        let avail = self.available(&bare);
        if avail.is_empty() {
            let bare_s = bare.to_string();
            let exists = self.store.user_exists(&bare_s).unwrap_or(false);
            if !exists {
                return self.bounce(&st, "service-unavailable", ctx);
            }
            if ty == "headline" || !offline::keeps(&st) {
                return;
            }
            match self.store.push_offline(
                &bare_s,
                &st.to_xml_in(crate::element::NS_CLIENT),
                self.settings.max_offline_per_user,
            ) {
                Ok(true) => tracing::debug!(to = %bare_s, "message stored offline"),
                Ok(false) => {
                    tracing::info!(to = %bare_s, "offline storage full");
                    self.bounce(&st, "service-unavailable", ctx)
                }
                Err(e) => {
                    tracing::error!(error = %e, "offline store failed");
                    self.bounce(&st, "internal-server-error", ctx)
                }
            }
            return;
        }
        let max = avail.iter().map(|(_, p)| *p).max().unwrap_or(0);
        let targets: Vec<String> = match ty.as_str() {
            "headline" => avail.iter().map(|(r, _)| (*r).clone()).collect(),
            "chat" => avail
                .iter()
                .filter(|(_, p)| *p == max)
                .map(|(r, _)| (*r).clone())
                .collect(),
            _ => avail
                .iter()
                .filter(|(_, p)| *p == max)
                .map(|(r, _)| (*r).clone())
                .take(1)
                .collect(),
        };
        if targets.len() == 1 {
            // The resource is bound: no need to build and check a full JID.
            if let Some(e) = self.sessions.get(&bare).and_then(|m| m.get(&targets[0])) {
                let mut st = st;
                st.set_attr("to", format!("{bare}/{}", targets[0]));
                e.addr.do_send(Deliver(st));
            }
            return;
        }
        // Several resources: one group of copies, so that sessions ending
        // unacknowledged route the message again once, not once each.
        for (r, copy) in targets.iter().zip(crate::copies::copies(targets.len())) {
            if let Ok(full) = bare.with_resource(r) {
                self.deliver_with(&full, st.clone(), |addr, st| {
                    addr.do_send(crate::session::DeliverCopy(st, copy))
                });
            }
        }
    }

    fn route_iq(&mut self, to: &Jid, st: Element, ctx: &mut Context<Self>) {
        let is_request = matches!(stanza::stype(&st), "get" | "set");
        if to.is_bare() {
            if let Some(pep) = self.pep.as_ref().filter(|_| for_pep(&st, is_request)) {
                let pep = pep.clone();
                if is_request && !self.store.user_exists(&to.to_string()).unwrap_or(false) {
                    return self.bounce(&st, "service-unavailable", ctx);
                }
                pep.do_send(ToService(st));
                return;
            }
            if !is_request {
                return;
            }
            let exists = self.store.user_exists(&to.to_string()).unwrap_or(false);
            match crate::disco::answer_account(&st).or_else(|| crate::ping::answer(&st)) {
                Some(reply) if exists => self.route(reply, ctx),
                _ => self.bounce(&st, "service-unavailable", ctx),
            }
            return;
        }
        if !self.deliver(to, st.clone()) && is_request {
            self.bounce(&st, "service-unavailable", ctx);
        }
    }
}

impl Handler<SetInterested> for Router {
    type Result = ();
    fn handle(&mut self, msg: SetInterested, _: &mut Context<Self>) {
        if let Some(e) = msg
            .full
            .resource()
            .and_then(|r| self.sessions.get_mut(&msg.full.to_bare())?.get_mut(r))
        {
            e.interested = true;
        }
    }
}

impl Handler<HandleIqResults> for Router {
    type Result = ();
    fn handle(&mut self, msg: HandleIqResults, _: &mut Context<Self>) {
        self.iq_results.retain(|(p, _)| *p != msg.prefix);
        self.iq_results.push((msg.prefix, msg.to));
    }
}

impl Handler<SetService> for Router {
    type Result = ();
    fn handle(&mut self, msg: SetService, _: &mut Context<Self>) {
        self.services.insert(msg.host, msg.to);
    }
}

impl Handler<WatchReturns> for Router {
    type Result = ();
    fn handle(&mut self, msg: WatchReturns, _: &mut Context<Self>) {
        self.return_watchers.push(msg.0);
    }
}

impl Handler<SetPep> for Router {
    type Result = ();
    fn handle(&mut self, m: SetPep, _: &mut Context<Self>) {
        self.pep = Some(m.0);
    }
}

impl Handler<WatchDomains> for Router {
    type Result = ();
    fn handle(&mut self, msg: WatchDomains, _: &mut Context<Self>) {
        self.domain_watchers.push(msg.0);
    }
}

impl Handler<Route> for Router {
    type Result = ();
    fn handle(&mut self, msg: Route, ctx: &mut Context<Self>) {
        self.route(msg.0, ctx);
    }
}

impl Handler<DeliverTo> for Router {
    type Result = ();
    fn handle(&mut self, msg: DeliverTo, _: &mut Context<Self>) {
        self.deliver(&msg.to, msg.stanza);
    }
}

impl Handler<RosterPush> for Router {
    type Result = ();
    fn handle(&mut self, msg: RosterPush, _: &mut Context<Self>) {
        let Some(map) = self.sessions.get(&msg.owner) else {
            return;
        };
        for (r, e) in map {
            if e.interested {
                let push = crate::roster::push(msg.item.clone())
                    .attr("to", format!("{}/{}", msg.owner, r));
                e.addr.do_send(Deliver(push));
            }
        }
    }
}

impl Handler<SetDialer> for Router {
    type Result = ();
    fn handle(&mut self, msg: SetDialer, _: &mut Context<Self>) {
        self.dialer = Some((msg.0, msg.1));
    }
}

impl Handler<Shutdown> for Router {
    type Result = usize;
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> usize {
        let mut n = 0;
        for (_, map) in self.sessions.drain() {
            for (_, e) in map {
                self.metrics.c2s_sessions.dec();
                e.addr.do_send(Kick {
                    condition: "system-shutdown",
                    text: Some("the node is stopping".into()),
                });
                n += 1;
            }
        }
        n
    }
}

impl Handler<LinksUp> for Router {
    type Result = ResponseFuture<Vec<String>>;
    fn handle(&mut self, _: LinksUp, _: &mut Context<Self>) -> Self::Result {
        let links: Vec<(String, Addr<Link>)> = self
            .links
            .iter()
            .map(|(d, a)| (d.clone(), a.clone()))
            .collect();
        Box::pin(async move {
            let mut up = Vec::new();
            for (d, a) in links {
                if a.send(IsUp).await.unwrap_or(false) {
                    up.push(d);
                }
            }
            up.sort();
            up
        })
    }
}

impl Handler<CountSessions> for Router {
    type Result = usize;
    fn handle(&mut self, _: CountSessions, _: &mut Context<Self>) -> usize {
        self.sessions.values().map(|m| m.len()).sum()
    }
}

impl Handler<LinkIdle> for Router {
    type Result = ();
    fn handle(&mut self, msg: LinkIdle, _: &mut Context<Self>) {
        if self.links.get(&msg.domain) == Some(&msg.link) {
            self.links.remove(&msg.domain);
            self.dialed(&msg.domain);
        }
        msg.link.do_send(crate::link::Retire);
    }
}

impl Handler<DomainReachable> for Router {
    type Result = ();
    fn handle(&mut self, msg: DomainReachable, _: &mut Context<Self>) {
        self.dialed(&msg.0);
        for w in &self.return_watchers {
            w.do_send(crate::messages::DomainBack(msg.0.clone()));
        }
        self.presence.do_send(crate::presence::DomainUp(msg.0));
    }
}

impl Handler<DomainUnreachable> for Router {
    type Result = ();
    fn handle(&mut self, msg: DomainUnreachable, _: &mut Context<Self>) {
        for w in &self.domain_watchers {
            w.do_send(crate::messages::DomainGone(msg.0.clone()));
        }
        self.presence.do_send(crate::presence::DomainDown(msg.0));
    }
}

mod bindings;

/// Whether an iq to an account's bare JID is for its personal service: a
/// publish-subscribe or disco request, or the answer to a capabilities query.
fn for_pep(st: &Element, is_request: bool) -> bool {
    use crate::pubsub::node::{NS_OWNER, NS_PUBSUB};
    use crate::stanza::{NS_DISCO_INFO, NS_DISCO_ITEMS};
    if !is_request {
        return st
            .get_attr("id")
            .is_some_and(|id| id.starts_with(crate::pep::QUERY_PREFIX));
    }
    st.get_child("pubsub", NS_PUBSUB).is_some()
        || st.get_child("pubsub", NS_OWNER).is_some()
        || st.get_child("query", NS_DISCO_INFO).is_some()
        || st.get_child("query", NS_DISCO_ITEMS).is_some()
}
