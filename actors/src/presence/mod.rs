//! The presence actor: availability of local resources, broadcasts, probes, and the RFC 6121 §3 subscription state machine.

use crate::element::{Element, NS_CLIENT};
use crate::jid::Jid;
use crate::messages::{Deliver, Report, Route};
use crate::roster::{self, RosterSet};
use crate::stanza::{self, error_reply, iq_result};
use crate::store::{RosterItem, Store};
use crate::Settings;
use actix::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A flood of presence past the bound logs a few lines, not one each.
static REMOTE_FULL: crate::lograte::LogRate =
    crate::lograte::LogRate::new(5, std::time::Duration::from_secs(10));

/// Tracks who is available and applies subscriptions to rosters.
pub struct Presence {
    settings: Settings,
    store: Arc<Store>,
    router: PresenceEvents,
    /// Available local resources and their last presence, by bare JID.
    online: HashMap<Jid, HashMap<String, Element>>,
    /// Remote resources we passed available presence of, by domain: full
    /// JID -> the local accounts that saw it (told when the domain's link dies).
    remote: HashMap<String, HashMap<Jid, HashSet<Jid>>>,
    /// What a broken link made unavailable, by domain: (local account,
    /// remote bare JID) pairs to probe again when the domain is back.
    lost: HashMap<String, HashSet<(Jid, Jid)>>,
    /// (remote resource, local account) pairs in `remote`: a remote server
    /// may send presence from any resource of its domain, so this is bounded
    /// by `max_remote_presences` (past it, presence is passed on untracked).
    remote_pairs: usize,
    /// Who hears of the presence local accounts send and receive (the
    /// personal eventing service), if anyone.
    watcher: Option<Recipient<crate::messages::PresenceSeen>>,
}

impl Actor for Presence {
    type Context = Context<Self>;
}

/// Presence a local resource broadcast (no `to`; available or unavailable).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Broadcast {
    pub from: Jid,
    pub stanza: Element,
}

/// A subscription stanza a local user sent (subscribe, subscribed, unsubscribe, unsubscribed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct OutboundSubscription {
    pub from: Jid,
    pub stanza: Element,
}

/// Presence addressed to a local user, from anywhere.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InboundPresence(pub Element);

/// A resource is gone (session ended or replaced): broadcast its unavailability.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ResourceGone {
    pub full: Jid,
}

/// A roster get or set from a local resource; the reply goes to `reply_to`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RosterIq {
    pub from: Jid,
    pub iq: Element,
    pub reply_to: Recipient<Deliver>,
}

/// The s2s link with a domain broke (not a clean close): its contacts are unavailable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DomainDown(pub String);

/// A link with a domain came up (again): probe what its fall made unavailable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DomainUp(pub String);

/// Is this full or bare JID available? (Used by the App-Engine-like API and tests.)
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsAvailable(pub Jid);

fn presence(ty: Option<&str>, from: &Jid, to: &Jid) -> Element {
    let mut p = Element::new("presence", NS_CLIENT)
        .attr("from", from.to_string())
        .attr("to", to.to_string());
    if let Some(t) = ty {
        p.set_attr("type", t);
    }
    p
}

impl Presence {
    pub fn new(settings: Settings, store: Arc<Store>, router: PresenceEvents) -> Presence {
        Presence {
            settings,
            store,
            router,
            online: HashMap::new(),
            remote: HashMap::new(),
            lost: HashMap::new(),
            remote_pairs: 0,
            watcher: None,
        }
    }

    /// Tells the watcher that `owner` sent or received `st` from `from`.
    fn seen(&self, owner: &Jid, from: &Jid, st: &Element) {
        if let Some(w) = &self.watcher {
            w.do_send(crate::messages::PresenceSeen {
                owner: owner.to_bare(),
                from: from.clone(),
                stanza: st.clone(),
            });
        }
    }

    fn is_local(&self, j: &Jid) -> bool {
        j.domain() == self.settings.domain
    }

    fn route(&self, st: Element) {
        self.router.do_send(Route(st));
    }

    /// Delivers to every available resource of a local account.
    fn to_available(&self, bare: &Jid, st: &Element) {
        if let Some(m) = self.online.get(bare) {
            for r in m.keys() {
                if let Ok(full) = bare.with_resource(r) {
                    self.router.do_send(DeliverTo {
                        to: full,
                        stanza: st.clone(),
                    });
                }
            }
        }
    }

    fn broadcast(&mut self, from: Jid, mut st: Element) {
        let bare = from.to_bare();
        let Some(res) = from.resource().map(String::from) else {
            return;
        };
        let available = stanza::stype(&st) != "unavailable";
        st.set_attr("from", from.to_string());
        st.remove_attr("to");
        let was_online = self
            .online
            .get(&bare)
            .map(|m| m.contains_key(&res))
            .unwrap_or(false);
        if !available && !was_online {
            return;
        }
        self.seen(&bare, &from, &st);
        let items = self.roster(&bare);
        if available {
            self.online
                .entry(bare.clone())
                .or_default()
                .insert(res.clone(), st.clone());
        } else if let Some(m) = self.online.get_mut(&bare) {
            m.remove(&res);
            if m.is_empty() {
                self.online.remove(&bare);
            }
        }
        for it in items.iter().filter(|i| i.subscription.has_from()) {
            let mut p = st.clone();
            p.set_attr("to", it.contact.clone());
            self.route(p);
        }
        // The account's other resources see it too.
        if let Some(m) = self.online.get(&bare) {
            for (r, last) in m {
                if *r == res {
                    continue;
                }
                if let Ok(other) = bare.with_resource(r) {
                    self.router.do_send(DeliverTo {
                        to: other.clone(),
                        stanza: st.clone(),
                    });
                    if available && !was_online {
                        self.router.do_send(DeliverTo {
                            to: from.clone(),
                            stanza: last.clone(),
                        });
                    }
                }
            }
        }
        if available && !was_online {
            // Initial presence: probe the contacts we are subscribed to and
            // hand over subscription requests that waited for us.
            for it in &items {
                let Ok(contact) = it.contact.parse::<Jid>() else {
                    continue;
                };
                if it.subscription.has_to() {
                    self.route(presence(Some("probe"), &bare, &contact));
                }
                if it.pending_in {
                    self.router.do_send(DeliverTo {
                        to: from.clone(),
                        stanza: presence(Some("subscribe"), &contact, &bare),
                    });
                }
            }
        }
    }

    fn outbound(&mut self, from: Jid, mut st: Element) {
        let user = from.to_bare();
        let Ok(Some(to)) = stanza::to(&st) else {
            return;
        };
        let contact = to.to_bare();
        if contact == user {
            return;
        }
        st.set_attr("from", user.to_string());
        st.set_attr("to", contact.to_string());
        let ty = stanza::stype(&st).to_string();
        let existing = self.item(&user, &contact);
        let mut item = existing
            .clone()
            .unwrap_or_else(|| RosterItem::new(&contact.to_string()));
        match ty.as_str() {
            "subscribe" => {
                if !item.subscription.has_to() && (!item.ask || !item.visible) {
                    if existing.is_none()
                        && self.roster(&user).len() >= self.settings.max_roster_items
                    {
                        return;
                    }
                    item.ask = true;
                    item.visible = true;
                    self.save(&user, &item);
                }
                self.route(st);
            }
            "subscribed" if item.pending_in => {
                item.pending_in = false;
                item.subscription = item.subscription.with_from(true);
                item.visible = true;
                self.save(&user, &item);
                self.route(st);
                self.send_current_presence(&user, &contact);
            }
            "unsubscribe" => {
                if existing.is_some() && (item.subscription.has_to() || item.ask) {
                    item.subscription = item.subscription.with_to(false);
                    item.ask = false;
                    self.save(&user, &item);
                }
                self.route(st);
            }
            "unsubscribed"
                if existing.is_some() && (item.subscription.has_from() || item.pending_in) =>
            {
                let had_from = item.subscription.has_from();
                item.subscription = item.subscription.with_from(false);
                item.pending_in = false;
                if item.visible {
                    self.save(&user, &item);
                } else if let Err(e) = self
                    .store
                    .delete_roster_item(&user.to_string(), &contact.to_string())
                {
                    tracing::error!(error = %e, "roster write failed");
                }
                self.route(st);
                if had_from {
                    self.send_unavailable_from(&user, &contact);
                }
            }
            _ => {}
        }
    }

    /// Sends `to` the last presence of each available resource of `user`.
    fn send_current_presence(&self, user: &Jid, to: &Jid) {
        if let Some(m) = self.online.get(user) {
            for (r, last) in m {
                let mut p = last.clone();
                if let Ok(f) = user.with_resource(r) {
                    p.set_attr("from", f.to_string());
                }
                p.set_attr("to", to.to_string());
                self.route(p);
            }
        }
    }

    fn send_unavailable_from(&self, user: &Jid, to: &Jid) {
        if let Some(m) = self.online.get(user) {
            for r in m.keys() {
                if let Ok(f) = user.with_resource(r) {
                    self.route(presence(Some("unavailable"), &f, to));
                }
            }
        }
    }

    fn inbound(&mut self, st: Element) {
        let (Ok(Some(to)), Ok(Some(from))) = (stanza::to(&st), stanza::from(&st)) else {
            return;
        };
        let local = to.to_bare();
        let sender = from.to_bare();
        let ty = stanza::stype(&st).to_string();
        match ty.as_str() {
            "" | "unavailable" => {
                if !self.is_local(&from) {
                    self.track_remote(&from, &local, ty.is_empty());
                }
                self.seen(&local, &from, &st);
                if to.is_bare() {
                    self.to_available(&local, &st);
                } else {
                    self.router.do_send(DeliverTo { to, stanza: st });
                }
            }
            "error" => {
                if !to.is_bare() {
                    self.router.do_send(DeliverTo { to, stanza: st });
                } else {
                    self.to_available(&local, &st);
                }
            }
            "probe" => {
                let Some(item) = self.item(&local, &sender) else {
                    return;
                };
                if !item.subscription.has_from() {
                    return;
                }
                self.send_current_presence(&local, &from);
            }
            "subscribe" => {
                if !self.store.user_exists(&local.to_string()).unwrap_or(false)
                    && !self.online.contains_key(&local)
                {
                    return;
                }
                let existing = self.item(&local, &sender);
                let mut item = existing
                    .clone()
                    .unwrap_or_else(|| RosterItem::new(&sender.to_string()));
                if item.subscription.has_from() {
                    // Already approved: answer for the contact (RFC 6121 §3.1.3).
                    self.route(presence(Some("subscribed"), &local, &sender));
                    return;
                }
                if existing.is_none() && self.roster(&local).len() >= self.settings.max_roster_items
                {
                    return;
                }
                if !item.pending_in {
                    item.pending_in = true;
                    if let Err(e) = self.store.put_roster_item(&local.to_string(), &item) {
                        tracing::error!(error = %e, "roster write failed");
                    }
                }
                let mut p = st.clone();
                p.set_attr("from", sender.to_string());
                self.to_available(&local, &p);
            }
            "subscribed" => {
                let Some(mut item) = self.item(&local, &sender) else {
                    return;
                };
                if !item.ask {
                    return;
                }
                item.ask = false;
                item.subscription = item.subscription.with_to(true);
                item.visible = true;
                self.save(&local, &item);
                let mut p = st.clone();
                p.set_attr("from", sender.to_string());
                self.to_available(&local, &p);
            }
            "unsubscribe" => {
                let Some(mut item) = self.item(&local, &sender) else {
                    return;
                };
                if !(item.subscription.has_from() || item.pending_in) {
                    return;
                }
                let had_from = item.subscription.has_from();
                item.subscription = item.subscription.with_from(false);
                item.pending_in = false;
                self.save(&local, &item);
                let mut p = st.clone();
                p.set_attr("from", sender.to_string());
                self.to_available(&local, &p);
                if had_from {
                    self.send_unavailable_from(&local, &sender);
                }
            }
            "unsubscribed" => {
                let Some(mut item) = self.item(&local, &sender) else {
                    return;
                };
                if !(item.subscription.has_to() || item.ask) {
                    return;
                }
                item.subscription = item.subscription.with_to(false);
                item.ask = false;
                self.save(&local, &item);
                let mut p = st.clone();
                p.set_attr("from", sender.to_string());
                self.to_available(&local, &p);
            }
            _ => {}
        }
    }
}

impl Handler<Broadcast> for Presence {
    type Result = ();
    fn handle(&mut self, m: Broadcast, _: &mut Context<Self>) {
        self.broadcast(m.from, m.stanza);
    }
}

impl Handler<OutboundSubscription> for Presence {
    type Result = ();
    fn handle(&mut self, m: OutboundSubscription, _: &mut Context<Self>) {
        self.outbound(m.from, m.stanza);
    }
}

impl Handler<InboundPresence> for Presence {
    type Result = ();
    fn handle(&mut self, m: InboundPresence, _: &mut Context<Self>) {
        if let Ok(Some(to)) = stanza::to(&m.0) {
            if !self.is_local(&to) {
                return;
            }
        }
        self.inbound(m.0);
    }
}

impl Handler<ResourceGone> for Presence {
    type Result = ();
    fn handle(&mut self, m: ResourceGone, _: &mut Context<Self>) {
        let p = Element::new("presence", NS_CLIENT).attr("type", "unavailable");
        self.broadcast(m.full, p);
    }
}

/// `to` hears of the presence local accounts send and receive.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchPresence(pub Recipient<crate::messages::PresenceSeen>);

impl Handler<WatchPresence> for Presence {
    type Result = ();
    fn handle(&mut self, m: WatchPresence, _: &mut Context<Self>) {
        self.watcher = Some(m.0);
    }
}

impl Handler<IsAvailable> for Presence {
    type Result = bool;
    fn handle(&mut self, m: IsAvailable, _: &mut Context<Self>) -> bool {
        match self.online.get(&m.0.to_bare()) {
            None => false,
            Some(r) => m.0.resource().map(|x| r.contains_key(x)).unwrap_or(true),
        }
    }
}

// ------------------------------------------- what presence asks the router

crate::recipients! {
    /// Where presence sends what it decided: the router, seen only through the
    /// messages it takes.
    pub struct PresenceEvents {
        route: Route,
        deliver_to: DeliverTo,
        roster_push: RosterPush,
        interested: SetInterested,
    }
}

/// A resource asked for its roster.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetInterested {
    pub full: Jid,
}

/// Delivers to one full JID if it is bound; dropped otherwise.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliverTo {
    pub to: Jid,
    pub stanza: Element,
}

/// Sends a roster push to every interested resource of `owner`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RosterPush {
    pub owner: Jid,
    pub item: Element,
}

mod remote;
pub use remote::CountRemote;

mod roster_iq;

#[cfg(test)]
mod tests;
