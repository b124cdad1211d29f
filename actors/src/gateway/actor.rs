//! The gateway's actor: its in-process session on the node (login, presence, contacts, iq requests awaiting answers) and the messages the `Gateway` handle sends it.

use super::*;

pub(super) struct GatewayActor {
    pub(super) cloud: Arc<Cloud>,
    pub(super) settings: GatewaySettings,
    pub(super) parse: ParseFn,
    pub(super) session: Option<Addr<Session>>,
    pub(super) conn: u64,
    /// Contacts' presence: bare JID -> resource -> presence.
    pub(super) contacts: HashMap<Jid, HashMap<String, PresenceInfo>>,
    /// Resources in `contacts` (bounded by `max_remote_presences`).
    pub(super) contact_resources: usize,
    /// Our iq requests waiting for their answer, by id.
    pub(super) pending: HashMap<String, oneshot::Sender<Element>>,
    pub(super) handler: Option<Box<dyn GatewayHandler>>,
    pub(super) presence_payload: Vec<Element>,
    pub(super) invited: HashSet<Jid>,
    pub(super) next_id: u64,
    pub(super) stopping: bool,
}

impl Actor for GatewayActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.login(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(s) = self.session.take() {
            s.do_send(Closed {
                conn: self.conn,
                resumable: false,
            });
        }
    }
}

impl GatewayActor {
    pub(super) fn handle_of(&self, ctx: &Context<Self>) -> Gateway {
        Gateway {
            addr: ctx.address(),
            jid: self.settings.jid.clone(),
            full: self
                .settings
                .jid
                .with_resource(&self.settings.resource)
                .unwrap_or_else(|_| self.settings.jid.clone()),
            metrics: self.cloud.metrics.clone(),
        }
    }

    /// A session bound to our resource, fed through a channel instead of a socket.
    pub(super) fn login(&mut self, ctx: &mut Context<Self>) {
        self.conn += 1;
        let conn = self.conn;
        let (tx, mut rx) = crate::outbox::outbox(
            self.cloud.settings.session_queue.max(16),
            self.cloud.settings.session_queue_bytes,
        );
        let session = Session::new(
            self.cloud.clone(),
            self.settings.jid.clone(),
            false,
            tx,
            conn,
        )
        .start();
        let me = ctx.address();
        actix::spawn(async move {
            while let Some((o, w)) = rx.recv().await {
                rx.written(w);
                me.do_send(FromSession { conn, out: o });
            }
            me.do_send(SessionEnded { conn });
        });
        self.session = Some(session);
        self.contacts.clear();
        self.contact_resources = 0;
        let bind = Element::new("iq", NS_CLIENT)
            .attr("type", "set")
            .attr("id", "gateway-bind")
            .child(
                Element::new("bind", NS_BIND)
                    .child(Element::new("resource", NS_BIND).text(self.settings.resource.clone())),
            );
        self.to_session(bind);
        self.announce();
        tracing::info!(jid = %self.settings.jid, resource = %self.settings.resource, "gateway available");
    }

    fn to_session(&self, stanza: Element) {
        if let Some(s) = &self.session {
            s.do_send(Inbound {
                conn: self.conn,
                stanza,
            });
        }
    }

    /// Our presence: available, the status, and the payloads (capacity).
    fn announce(&self) {
        let mut p = Element::new("presence", NS_CLIENT)
            .child(Element::new("status", NS_CLIENT).text(self.settings.status.clone()));
        for e in &self.presence_payload {
            p = p.child(e.clone());
        }
        self.to_session(p);
    }

    fn subscribe(&mut self, jid: &Jid) {
        let bare = jid.to_bare();
        if bare == self.settings.jid {
            return;
        }
        self.invited.insert(bare.clone());
        self.to_session(
            Element::new("presence", NS_CLIENT)
                .attr("type", "subscribe")
                .attr("to", bare.to_string()),
        );
    }

    fn inbound(&mut self, st: Element, ctx: &mut Context<Self>) {
        let gw = self.handle_of(ctx);
        let from = match stanza::from(&st) {
            Ok(Some(f)) => f,
            _ => return,
        };
        match st.name.as_str() {
            "iq" => {
                let ty = stanza::stype(&st);
                if matches!(ty, "result" | "error") {
                    if let Some(tx) = st.get_attr("id").and_then(|i| self.pending.remove(i)) {
                        let _ = tx.send(st);
                    }
                    return;
                }
                if crate::ping::answer(&st).is_some() {
                    return self.to_session(iq_result(&st));
                }
                let handled = match &mut self.handler {
                    Some(h) => h.on_iq(&gw, st.clone()),
                    None => false,
                };
                if !handled {
                    self.to_session(error_reply(&st, "service-unavailable", None));
                }
            }
            "message" => {
                let msg = InboundMessage {
                    from,
                    body: st.child_text("body", NS_CLIENT),
                    message_type: MessageType::parse(st.get_attr("type").unwrap_or("normal")),
                    stanza: st,
                };
                if let Some(h) = &mut self.handler {
                    h.on_message(&gw, msg);
                }
            }
            "presence" => {
                let ty = stanza::stype(&st).to_string();
                let kind = match ty.as_str() {
                    "" | "unavailable" => None,
                    "subscribe" => Some(SubscriptionKind::Subscribe),
                    "subscribed" => Some(SubscriptionKind::Subscribed),
                    "unsubscribe" => Some(SubscriptionKind::Unsubscribe),
                    "unsubscribed" => Some(SubscriptionKind::Unsubscribed),
                    _ => return,
                };
                if let Some(kind) = kind {
                    let approve = match &mut self.handler {
                        Some(h) => h.on_subscription(&gw, &from, kind),
                        None => false,
                    };
                    if kind == SubscriptionKind::Subscribe {
                        let answer = if approve {
                            "subscribed"
                        } else {
                            "unsubscribed"
                        };
                        tracing::info!(from = %from, answer, "gateway subscription request");
                        self.to_session(
                            Element::new("presence", NS_CLIENT)
                                .attr("type", answer)
                                .attr("to", from.to_bare().to_string()),
                        );
                        if approve && !self.invited.contains(&from.to_bare()) {
                            self.subscribe(&from);
                        }
                    }
                    return;
                }
                let info = PresenceInfo::of(&st);
                let res = from.resource().unwrap_or("").to_string();
                let bare = from.to_bare();
                if info.available {
                    // Any server may send presence from any of its
                    // resources: what is remembered is bounded.
                    let known = self
                        .contacts
                        .get(&bare)
                        .is_some_and(|m| m.contains_key(&res));
                    if known || self.contact_resources < self.cloud.settings.max_remote_presences {
                        if !known {
                            self.contact_resources += 1;
                        }
                        self.contacts
                            .entry(bare)
                            .or_default()
                            .insert(res, info.clone());
                    }
                } else if let Some(m) = self.contacts.get_mut(&bare) {
                    if m.remove(&res).is_some() {
                        self.contact_resources -= 1;
                    }
                    if m.is_empty() {
                        self.contacts.remove(&bare);
                    }
                }
                tracing::debug!(from = %from, available = info.available, "gateway saw presence");
                if let Some(h) = &mut self.handler {
                    h.on_presence(&gw, &from, &info);
                }
            }
            _ => {}
        }
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}-{}", self.conn, self.next_id)
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct FromSession {
    pub(super) conn: u64,
    pub(super) out: Outbound,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SessionEnded {
    pub(super) conn: u64,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SetHandler(pub(super) Box<dyn GatewayHandler>);

#[derive(Message)]
#[rtype(result = "PresenceInfo")]
pub(super) struct GetPresence(pub(super) Jid);

#[derive(Message)]
#[rtype(result = "SendResponse")]
pub(super) struct SendMessage(pub(super) Message);

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Invite(pub(super) Jid);

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SetOwnPresence {
    pub(super) status: Option<String>,
    pub(super) payload: Vec<Element>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SendRaw(pub(super) Element);

#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Element>")]
pub(super) struct SendIq(pub(super) Element);

#[derive(Message)]
#[rtype(result = "Vec<Jid>")]
pub(super) struct Available;

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Stop;

impl Handler<FromSession> for GatewayActor {
    type Result = ();
    fn handle(&mut self, m: FromSession, ctx: &mut Context<Self>) {
        if m.conn != self.conn {
            return;
        }
        match m.out {
            Outbound::Stanza(e) => self.inbound(*e, ctx),
            Outbound::Raw(xml) => match (self.parse)(&xml) {
                Some(e) => self.inbound(e, ctx),
                None => tracing::warn!("gateway could not read a stored stanza"),
            },
            Outbound::Error { condition, text } => {
                tracing::warn!(condition, ?text, "gateway session ended by the server");
                if condition == "system-shutdown" || condition == "conflict" {
                    self.stopping = true;
                }
            }
            Outbound::Close => {}
        }
    }
}

impl Handler<SessionEnded> for GatewayActor {
    type Result = ();
    fn handle(&mut self, m: SessionEnded, ctx: &mut Context<Self>) {
        if m.conn != self.conn {
            return;
        }
        self.session = None;
        self.pending.clear();
        if self.stopping {
            ctx.stop();
            return;
        }
        // Ended for another reason (too slow, …): log in again shortly.
        ctx.run_later(Duration::from_secs(1), |a, ctx| {
            if a.session.is_none() && !a.stopping {
                a.login(ctx)
            }
        });
    }
}

impl Handler<SetHandler> for GatewayActor {
    type Result = ();
    fn handle(&mut self, m: SetHandler, _: &mut Context<Self>) {
        self.handler = Some(m.0);
    }
}

impl Handler<GetPresence> for GatewayActor {
    type Result = MessageResult<GetPresence>;
    fn handle(&mut self, m: GetPresence, _: &mut Context<Self>) -> Self::Result {
        if m.0.to_bare() == self.settings.jid {
            return MessageResult(PresenceInfo {
                available: self.session.is_some(),
                status: Some(self.settings.status.clone()),
                ..Default::default()
            });
        }
        let Some(res) = self.contacts.get(&m.0.to_bare()) else {
            return MessageResult(PresenceInfo::default());
        };
        let info = match m.0.resource() {
            Some(r) => res.get(r).cloned(),
            None => res.values().next().cloned(),
        };
        MessageResult(info.unwrap_or_default())
    }
}

impl Handler<SendMessage> for GatewayActor {
    type Result = MessageResult<SendMessage>;
    fn handle(&mut self, m: SendMessage, _: &mut Context<Self>) -> Self::Result {
        let msg = m.0;
        let from_ok = match &msg.from {
            None => true,
            Some(f) => f
                .parse::<Jid>()
                .map(|j| j.to_bare() == self.settings.jid)
                .unwrap_or(false),
        };
        let mut out = SendResponse::default();
        for r in &msg.recipients {
            let status = match r.parse::<Jid>() {
                Err(_) => SendStatus::InvalidId,
                Ok(_) if !from_ok || self.session.is_none() => SendStatus::OtherError,
                Ok(to) => {
                    let mut st = Element::new("message", NS_CLIENT)
                        .attr("to", to.to_string())
                        .attr("type", msg.message_type.as_str())
                        .attr("id", format!("gw-{:016x}", rand::random::<u64>()));
                    if let Some(f) = &msg.from {
                        st.set_attr("from", f.clone());
                    }
                    if let Some(b) = &msg.body {
                        st = st.child(Element::new("body", NS_CLIENT).text(b.clone()));
                    }
                    for p in &msg.payload {
                        st = st.child(p.clone());
                    }
                    self.to_session(st);
                    SendStatus::Success
                }
            };
            out.status_map.insert(r.clone(), status);
        }
        MessageResult(out)
    }
}

impl Handler<Invite> for GatewayActor {
    type Result = ();
    fn handle(&mut self, m: Invite, _: &mut Context<Self>) {
        self.subscribe(&m.0);
    }
}

impl Handler<SetOwnPresence> for GatewayActor {
    type Result = ();
    fn handle(&mut self, m: SetOwnPresence, _: &mut Context<Self>) {
        if let Some(s) = m.status {
            self.settings.status = s;
        }
        self.presence_payload = m.payload;
        self.announce();
    }
}

impl Handler<SendRaw> for GatewayActor {
    type Result = ();
    fn handle(&mut self, m: SendRaw, _: &mut Context<Self>) {
        self.to_session(m.0);
    }
}

impl Handler<SendIq> for GatewayActor {
    type Result = MessageResult<SendIq>;
    fn handle(&mut self, m: SendIq, _: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let mut iq = m.0;
        let id = match iq.get_attr("id") {
            Some(i) => i.to_string(),
            None => {
                let i = self.next_id("gw-iq");
                iq.set_attr("id", i.clone());
                i
            }
        };
        self.pending.insert(id, tx);
        self.to_session(iq);
        MessageResult(rx)
    }
}

impl Handler<Available> for GatewayActor {
    type Result = MessageResult<Available>;
    fn handle(&mut self, _: Available, _: &mut Context<Self>) -> Self::Result {
        let mut v: Vec<Jid> = self.contacts.keys().cloned().collect();
        v.sort_by_key(|j| j.to_string());
        MessageResult(v)
    }
}

impl Handler<Stop> for GatewayActor {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        self.stopping = true;
        ctx.stop();
    }
}
