//! The session actor: one per client stream, after authentication — binding, `from` checks, and dispatch of the client's stanzas.

use crate::element::{Element, NS_CLIENT};
use crate::jid::Jid;
use crate::presence::{Broadcast, OutboundSubscription, RosterIq};
use crate::router::{answer_server_iq, Bind, Route, SetPresence, Unbind};
use crate::stanza::{self, error_reply, iq_result, Kind, NS_BIND, NS_ROSTER, NS_SESSION};
use crate::Cloud;
use actix::prelude::*;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a session hands to the wire layer.
#[derive(Debug)]
pub enum Outbound {
    Stanza(Element),
    /// Already serialised stanza (e.g. from offline storage).
    Raw(String),
    /// Send this stream error, then close.
    Error {
        condition: &'static str,
        text: Option<String>,
    },
    /// Close the stream normally.
    Close,
}

/// A stanza the client sent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Inbound(pub Element);

/// A stanza for the client.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver(pub Element);

/// A serialised stanza for the client.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliverRaw(pub String);

/// End the session with a stream error.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kick {
    pub condition: &'static str,
    pub text: Option<String>,
}

/// The client's stream is over (closed, broken or timed out).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Closed;

/// One authenticated client stream.
pub struct Session {
    cloud: Arc<Cloud>,
    /// Bare until a resource is bound, full after.
    jid: Jid,
    bound: bool,
    anonymous: bool,
    tx: mpsc::Sender<Outbound>,
    available: bool,
    directed: HashSet<Jid>,
    ending: bool,
}

impl Actor for Session {
    type Context = Context<Self>;

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.cleanup(ctx);
    }
}

impl Session {
    /// A session for the authenticated account `bare`; `tx` feeds the socket writer.
    pub fn new(
        cloud: Arc<Cloud>,
        bare: Jid,
        anonymous: bool,
        tx: mpsc::Sender<Outbound>,
    ) -> Session {
        Session {
            cloud,
            jid: bare,
            bound: false,
            anonymous,
            tx,
            available: false,
            directed: HashSet::new(),
            ending: false,
        }
    }

    fn send(&mut self, ctx: &mut Context<Self>, out: Outbound) {
        if self.ending {
            return;
        }
        if let Err(e) = self.tx.try_send(out) {
            match e {
                mpsc::error::TrySendError::Full(_) => {
                    tracing::warn!(jid = %self.jid, "client is not reading; closing its session");
                }
                mpsc::error::TrySendError::Closed(_) => {}
            }
            self.ending = true;
            ctx.stop();
        }
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

    fn cleanup(&mut self, _ctx: &mut Context<Self>) {
        if !self.bound {
            return;
        }
        self.bound = false;
        self.end_directed_presence();
        // The router tells the presence actor, which broadcasts unavailability.
        self.cloud.router.do_send(Unbind {
            full: self.jid.clone(),
            session: _ctx.address(),
        });
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
                self.send(ctx, Outbound::Stanza(e));
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
                        act.send(ctx, Outbound::Stanza(r));
                    }
                    _ => {
                        let e = error_reply(&iq, "bad-request", None);
                        act.send(ctx, Outbound::Stanza(e));
                    }
                });
        // No other stanza is handled until the bind is answered.
        ctx.wait(fut);
    }

    fn handle_inbound(&mut self, mut st: Element, ctx: &mut Context<Self>) {
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
                return self.send(ctx, Outbound::Stanza(e));
            }
        };
        match kind {
            Kind::Iq => self.handle_iq(st, to, ctx),
            Kind::Presence => self.handle_presence(st, to),
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
        if !matches!(ty, "get" | "set" | "result" | "error") || st.get_attr("id").is_none() {
            let e = error_reply(&st, "bad-request", None);
            return self.send(ctx, Outbound::Stanza(e));
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
                return self.send(ctx, Outbound::Stanza(e));
            }
            if st.get_child("session", NS_SESSION).is_some() {
                return self.send(ctx, Outbound::Stanza(iq_result(&st)));
            }
            let mut st = st;
            st.set_attr("to", self.cloud.settings.domain.clone());
            if let Some(mut reply) = answer_server_iq(&st) {
                reply.set_attr("to", self.jid.to_string());
                self.send(ctx, Outbound::Stanza(reply));
            }
            return;
        }
        self.cloud.router.do_send(Route(st));
    }

    fn handle_presence(&mut self, st: Element, to: Option<Jid>) {
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
        if !self.ending {
            self.handle_inbound(msg.0, ctx);
        }
    }
}

impl Handler<Deliver> for Session {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        self.send(ctx, Outbound::Stanza(msg.0));
    }
}

impl Handler<DeliverRaw> for Session {
    type Result = ();
    fn handle(&mut self, msg: DeliverRaw, ctx: &mut Context<Self>) {
        self.send(ctx, Outbound::Raw(msg.0));
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

impl Handler<Closed> for Session {
    type Result = ();
    fn handle(&mut self, _: Closed, ctx: &mut Context<Self>) {
        self.ending = true;
        ctx.stop();
    }
}
