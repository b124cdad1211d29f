//! The session actor: one per client stream, after authentication — binding, `from` checks, and dispatch of the client's stanzas.

use crate::element::{Element, NS_CLIENT};
use crate::jid::Jid;
pub use crate::messages::Deliver;
use crate::messages::Route;
use crate::presence::{Broadcast, OutboundSubscription, RosterIq};
use crate::server_iq::answer_server_iq;
use crate::sm::{self, StreamManagement, Unacked, NS_SM};
use crate::stanza::{self, error_reply, iq_result, Kind, NS_BIND, NS_ROSTER, NS_SESSION};
use crate::Cloud;
use actix::prelude::*;
use std::collections::HashSet;
use std::sync::Arc;

pub use crate::outbox::Outbound;
use crate::outbox::{Outbox, Refused};

/// A stanza the client sent on connection `conn`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Inbound {
    pub conn: u64,
    pub stanza: Element,
}

/// One of the copies of a message to several resources of the account.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliverCopy(pub Element, pub crate::copies::Copy);

/// An offline message for the client: as written (stamped) and as stored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliverRaw {
    pub xml: String,
    pub stored: String,
}

/// End the session with a stream error.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kick {
    pub condition: &'static str,
    pub text: Option<String>,
}

/// Connection `conn` of the client is over (closed, broken or timed out).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Closed {
    pub conn: u64,
    /// False when the stream ended cleanly or by a stream error: no resumption then.
    pub resumable: bool,
}

/// A new connection resumes this session (XEP-0198 §5): `h` is what the
/// client says it handled. Answers with our own count.
#[derive(Message)]
#[rtype(result = "Result<u32, &'static str>")]
pub struct Resume {
    pub account: Jid,
    pub h: u32,
    pub conn: u64,
    pub tx: Outbox,
}

/// One authenticated client stream.
pub struct Session {
    cloud: Arc<Cloud>,
    /// Bare until a resource is bound, full after.
    jid: Jid,
    bound: bool,
    anonymous: bool,
    /// The writer of the current connection; None while detached.
    tx: Option<Outbox>,
    /// Which connection feeds us now.
    conn: u64,
    available: bool,
    directed: HashSet<Jid>,
    ending: bool,
    /// XEP-0198 state once the client enabled it.
    sm: Option<StreamManagement>,
}

impl Actor for Session {
    type Context = Context<Self>;

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.cleanup(ctx);
    }
}

impl Session {
    /// A session for the authenticated account `bare`; `tx` feeds the socket writer.
    pub fn new(cloud: Arc<Cloud>, bare: Jid, anonymous: bool, tx: Outbox, conn: u64) -> Session {
        Session {
            cloud,
            jid: bare,
            bound: false,
            anonymous,
            tx: Some(tx),
            conn,
            available: false,
            directed: HashSet::new(),
            ending: false,
            sm: None,
        }
    }

    /// Hands a stanza to the client, counting it when stream management is on.
    fn deliver(&mut self, ctx: &mut Context<Self>, item: Unacked) {
        if self.sm.is_none() {
            // Without acknowledgements, written is as delivered as it gets
            // (and nothing is kept, so the stanza moves to the writer).
            let out = match item {
                Unacked::Stanza(e) => Outbound::stanza(e),
                Unacked::Copy(e, c) => {
                    if self.tx.is_some() {
                        c.delivered();
                    }
                    Outbound::stanza(e)
                }
                Unacked::Offline { xml, .. } => Outbound::Raw(xml),
            };
            if self.tx.is_some() {
                self.send(ctx, out);
            }
            return;
        }
        let out = match &item {
            Unacked::Stanza(e) | Unacked::Copy(e, _) => Outbound::stanza(e.clone()),
            Unacked::Offline { xml, .. } => Outbound::Raw(xml.clone()),
        };
        let every = self.cloud.settings.sm_ack_every;
        let Some(sm) = self.sm.as_mut() else {
            return;
        };
        let s = &self.cloud.settings;
        if sm.unacked_len() >= s.session_queue || sm.unacked_bytes() >= s.session_queue_bytes {
            tracing::warn!(jid = %self.jid, stanzas = sm.unacked_len(), bytes = sm.unacked_bytes(), "client does not acknowledge; closing its session");
            // Kept: it goes back to the router with the rest.
            sm.sent(item, every);
            return self.too_slow(ctx, "too much unacknowledged");
        }
        let request = sm.sent(item, every);
        if self.tx.is_some() {
            self.send(ctx, out);
            if request {
                self.send(ctx, Outbound::stanza(sm::request()));
            }
        }
    }

    fn send(&mut self, ctx: &mut Context<Self>, out: Outbound) {
        if self.ending {
            return;
        }
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send(out) {
            Ok(()) => {}
            Err(Refused::Closed) => {
                self.ending = true;
                ctx.stop();
            }
            Err(e) => {
                tracing::warn!(jid = %self.jid, queued = %e, "client is not reading; closing its session");
                self.too_slow(ctx, "too much queued to the client");
            }
        }
    }

    /// Ends a client that does not keep up (reading or acknowledging) with
    /// `<policy-violation/>`; with stream management, what it did not
    /// acknowledge is routed again when the session stops.
    fn too_slow(&mut self, ctx: &mut Context<Self>, text: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Outbound::Error {
                condition: "policy-violation",
                text: Some(text.to_string()),
            });
        }
        self.ending = true;
        ctx.stop();
    }

    fn stream_error(&mut self, ctx: &mut Context<Self>, condition: &'static str, text: &str) {
        tracing::info!(jid = %self.jid, condition, text, "stream error");
        self.send(
            ctx,
            Outbound::Error {
                condition,
                text: Some(text.to_string()),
            },
        );
        self.ending = true;
        ctx.stop();
    }

    /// Tells everyone we sent directed presence to that we are gone (RFC 6121 §4.6.3).
    fn end_directed_presence(&mut self) {
        for to in self.directed.drain() {
            let p = Element::new("presence", NS_CLIENT)
                .attr("type", "unavailable")
                .attr("from", self.jid.to_string())
                .attr("to", to.to_string());
            self.cloud.router.do_send(Route(p));
        }
    }

    fn cleanup(&mut self, ctx: &mut Context<Self>) {
        if let Some(sm) = &self.sm {
            self.cloud.forget_resumable(&sm.id);
        }
        if self.bound {
            self.bound = false;
            self.end_directed_presence();
            // The router tells the presence actor, which broadcasts unavailability.
            self.cloud.router.do_send(Unbind {
                full: self.jid.clone(),
                session: ctx.address(),
            });
        }
        self.requeue_unacked();
        if self.anonymous {
            if let Err(e) = self.cloud.store.forget(&self.jid.to_bare().to_string()) {
                tracing::error!(error = %e, "forgetting anonymous user failed");
            }
        }
    }

    fn handle_bind(&mut self, iq: Element, ctx: &mut Context<Self>) {
        let Some(b) = iq.get_child("bind", NS_BIND) else {
            return;
        };
        let resource = b
            .child_text("resource", NS_BIND)
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        if let Some(r) = &resource {
            if self.jid.with_resource(r).is_err() {
                let e = error_reply(&iq, "bad-request", None);
                self.send(ctx, Outbound::stanza(e));
                return;
            }
        }
        let msg = Bind {
            bare: self.jid.clone(),
            resource,
            session: ctx.address(),
        };
        let fut =
            self.cloud
                .router
                .send(msg)
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(Ok(full)) => {
                        act.jid = full.clone();
                        act.bound = true;
                        tracing::info!(jid = %full, "resource bound");
                        let r = iq_result(&iq).child(
                            Element::new("bind", NS_BIND)
                                .child(Element::new("jid", NS_BIND).text(full.to_string())),
                        );
                        act.send(ctx, Outbound::stanza(r));
                    }
                    Ok(Err(BindError::ResourceConstraint)) => {
                        // RFC 6120 §7.6.2.1: the account has its most sessions.
                        let e = error_reply(&iq, "resource-constraint", None);
                        act.send(ctx, Outbound::stanza(e));
                    }
                    _ => {
                        let e = error_reply(&iq, "bad-request", None);
                        act.send(ctx, Outbound::stanza(e));
                    }
                });
        // No other stanza is handled until the bind is answered.
        ctx.wait(fut);
    }

    fn handle_inbound(&mut self, mut st: Element, ctx: &mut Context<Self>) {
        if st.ns == NS_SM {
            return self.handle_sm(st, ctx);
        }
        if let Some(sm) = &mut self.sm {
            sm.received();
        }
        let Some(kind) = stanza::kind(&st) else {
            return self.stream_error(ctx, "unsupported-stanza-type", "not a stanza");
        };
        if st.ns != NS_CLIENT {
            return self.stream_error(ctx, "invalid-namespace", "stanzas must be jabber:client");
        }
        if !self.bound {
            if kind == Kind::Iq
                && stanza::stype(&st) == "set"
                && st.get_child("bind", NS_BIND).is_some()
            {
                return self.handle_bind(st, ctx);
            }
            return self.stream_error(ctx, "not-authorized", "bind a resource first");
        }
        // RFC 6120 §8.1.2.1: the server stamps `from`; anything but our own JID is spoofing.
        match stanza::from(&st) {
            Ok(None) => {}
            Ok(Some(f)) if f == self.jid || f == self.jid.to_bare() => {}
            _ => {
                tracing::warn!(jid = %self.jid, from = ?st.get_attr("from"), "spoofed from");
                return self.stream_error(ctx, "invalid-from", "from does not match your JID");
            }
        }
        st.set_attr("from", self.jid.to_string());
        let to = match stanza::to(&st) {
            Ok(t) => t,
            Err(_) => {
                let e = error_reply(&st, "jid-malformed", None);
                return self.send(ctx, Outbound::stanza(e));
            }
        };
        match kind {
            Kind::Iq => self.handle_iq(st, to, ctx),
            Kind::Presence => {
                // RFC 6121 §4.7.1: the types there are; anything else is malformed.
                let known = matches!(
                    stanza::stype(&st),
                    "" | "unavailable"
                        | "subscribe"
                        | "subscribed"
                        | "unsubscribe"
                        | "unsubscribed"
                        | "probe"
                        | "error"
                );
                if !known {
                    tracing::debug!(jid = %self.jid, r#type = stanza::stype(&st), "presence of no known type");
                    let e = error_reply(&st, "bad-request", None);
                    return self.send(ctx, Outbound::stanza(e));
                }
                self.handle_presence(st, to, ctx)
            }
            Kind::Message => {
                if to.is_none() {
                    // A message with no `to` is for the account itself (RFC 6121 §8.5.1).
                    st.set_attr("to", self.jid.to_bare().to_string());
                }
                self.cloud.router.do_send(Route(st));
            }
        }
    }

    fn handle_iq(&mut self, st: Element, to: Option<Jid>, ctx: &mut Context<Self>) {
        let ty = stanza::stype(&st);
        // RFC 6120 §8.2.3: an id always; a get or set has exactly one payload.
        if !matches!(ty, "get" | "set" | "result" | "error")
            || st.get_attr("id").is_none()
            || (matches!(ty, "get" | "set") && st.elements().count() != 1)
        {
            let e = error_reply(&st, "bad-request", None);
            return self.send(ctx, Outbound::stanza(e));
        }
        let own_bare = self.jid.to_bare();
        let for_account = to.as_ref().map(|t| *t == own_bare).unwrap_or(true);
        if for_account && st.get_child("query", NS_ROSTER).is_some() {
            self.cloud.presence.do_send(RosterIq {
                from: self.jid.clone(),
                iq: st,
                reply_to: ctx.address().recipient(),
            });
            return;
        }
        // XEP-0163: pubsub without a `to` is for the account's own service.
        let pubsub = st
            .get_child("pubsub", crate::pubsub::node::NS_PUBSUB)
            .or_else(|| st.get_child("pubsub", crate::pubsub::node::NS_OWNER))
            .is_some();
        if to.is_none() && pubsub {
            let mut st = st;
            st.set_attr("to", own_bare.to_string());
            return self.cloud.router.do_send(Route(st));
        }
        let for_server = match &to {
            None => true,
            Some(t) => {
                t.local().is_none()
                    && t.resource().is_none()
                    && t.domain() == self.cloud.settings.domain
            }
        };
        if for_server || (for_account && to.is_none()) {
            if st.get_child("bind", NS_BIND).is_some() {
                let e = error_reply(&st, "not-allowed", Some("already bound"));
                return self.send(ctx, Outbound::stanza(e));
            }
            if st.get_child("session", NS_SESSION).is_some() {
                return self.send(ctx, Outbound::stanza(iq_result(&st)));
            }
            let mut st = st;
            st.set_attr("to", self.cloud.settings.domain.clone());
            if let Some(mut reply) = answer_server_iq(&st, &self.cloud.settings.services) {
                reply.set_attr("to", self.jid.to_string());
                self.send(ctx, Outbound::stanza(reply));
            }
            return;
        }
        self.cloud.router.do_send(Route(st));
    }

    fn handle_presence(&mut self, st: Element, to: Option<Jid>, ctx: &mut Context<Self>) {
        let ty = stanza::stype(&st).to_string();
        match (to, ty.as_str()) {
            (None, "" | "unavailable") => {
                let priority = if ty.is_empty() {
                    let p = st
                        .child_text("priority", NS_CLIENT)
                        .and_then(|p| p.trim().parse::<i8>().ok())
                        .unwrap_or(0);
                    Some(p)
                } else {
                    None
                };
                self.available = priority.is_some();
                self.cloud.router.do_send(SetPresence {
                    full: self.jid.clone(),
                    priority,
                });
                self.cloud.presence.do_send(Broadcast {
                    from: self.jid.clone(),
                    stanza: st,
                });
                if !self.available {
                    self.end_directed_presence();
                }
            }
            (None, _) => {}
            (Some(_), "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => {
                self.cloud.presence.do_send(OutboundSubscription {
                    from: self.jid.clone(),
                    stanza: st,
                });
            }
            (Some(to), "" | "unavailable") => {
                if ty.is_empty() {
                    // Remembered to say goodbye at the end: bounded.
                    if !self.directed.contains(&to)
                        && self.directed.len() >= self.cloud.settings.max_directed_presences
                    {
                        tracing::warn!(jid = %self.jid, n = self.directed.len(), "directed presence refused: too many at once");
                        let e = error_reply(
                            &st,
                            "resource-constraint",
                            Some("too many directed presences"),
                        );
                        return self.send(ctx, Outbound::stanza(e));
                    }
                    self.directed.insert(to);
                } else {
                    self.directed.remove(&to);
                }
                self.cloud.router.do_send(Route(st));
            }
            (Some(_), "error") => self.cloud.router.do_send(Route(st)),
            _ => {}
        }
    }
}

impl Handler<Inbound> for Session {
    type Result = ();
    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        if !self.ending && msg.conn == self.conn {
            self.handle_inbound(msg.stanza, ctx);
        }
    }
}

impl Handler<Deliver> for Session {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        self.deliver(ctx, Unacked::Stanza(msg.0));
    }
}

impl Handler<DeliverCopy> for Session {
    type Result = ();
    fn handle(&mut self, msg: DeliverCopy, ctx: &mut Context<Self>) {
        self.deliver(ctx, Unacked::Copy(msg.0, msg.1));
    }
}

impl Handler<DeliverRaw> for Session {
    type Result = ();
    fn handle(&mut self, msg: DeliverRaw, ctx: &mut Context<Self>) {
        self.deliver(
            ctx,
            Unacked::Offline {
                xml: msg.xml,
                stored: msg.stored,
            },
        );
    }
}

impl Handler<Kick> for Session {
    type Result = ();
    fn handle(&mut self, msg: Kick, ctx: &mut Context<Self>) {
        // The router already replaced us: do not unbind the newcomer.
        self.send(
            ctx,
            Outbound::Error {
                condition: msg.condition,
                text: msg.text,
            },
        );
        self.ending = true;
        self.bound = false;
        self.directed.clear();
        ctx.stop();
    }
}

// ------------------------------------------- what a session asks the router

/// Why a resource could not be bound.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BindError {
    #[error("bad resource")]
    BadRequest,
    /// The account has as many connected sessions as it may have.
    #[error("too many sessions of the account")]
    ResourceConstraint,
}

/// The session of `full` lost its connection and waits to be resumed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detached {
    pub full: Jid,
    pub session: Addr<Session>,
}

/// The session of `full` was resumed by a new connection.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attached {
    pub full: Jid,
    pub session: Addr<Session>,
}

/// Binds a resource for an authenticated account (RFC 6120 §7).
#[derive(Message)]
#[rtype(result = "Result<Jid, BindError>")]
pub struct Bind {
    pub bare: Jid,
    pub resource: Option<String>,
    pub session: Addr<Session>,
}

/// A session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unbind {
    pub full: Jid,
    pub session: Addr<Session>,
}

/// A resource's availability changed: `Some(priority)` when available.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetPresence {
    pub full: Jid,
    pub priority: Option<i8>,
}

mod stream_management;
