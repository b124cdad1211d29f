//! The gateway JID of a cloud (e.g. `gateway@cloud2.test`): an in-process client of its own node — a session without a socket — and the App-Engine-like API cloud logic is written on (presence, message builder, per-recipient send status, handlers).
//!
//! The gateway logs in like any client: its stanzas go through a
//! [`Session`], so rosters, subscriptions, offline storage and s2s apply to
//! it exactly as to a person's client. The API follows Google App Engine's
//! XMPP service, which the paper's §7 code uses:
//!
//! ```ignore
//! if gw.get_presence(&jid).await.is_available() {
//!     let msg = MessageBuilder::new()
//!         .with_recipient_jids([jid.to_string()])
//!         .with_body("Cloud 2, I would like to use your resources …")
//!         .build();
//!     let sent = gw.send_message(msg).await.status_of(&jid.to_string()) == Some(SendStatus::Success);
//! }
//! ```

use crate::element::{Element, NS_CLIENT};
use crate::jid::Jid;
use crate::session::{Closed, Inbound, Outbound, Session};
use crate::stanza::{self, error_reply, iq_result, NS_BIND};
use crate::Cloud;
use actix::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Namespace of the capacity a gateway announces in its presence.
pub const NS_CAPACITY: &str = "urn:intercloud:capacity:0";

/// Turns a serialized stanza (offline storage hands those over) back into an element.
pub type ParseFn = Arc<dyn Fn(&str) -> Option<Element> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the gateway is not running")]
    Gone,
}

/// What the gateway is.
#[derive(Clone, Debug)]
pub struct GatewaySettings {
    /// The gateway's account (bare JID, in the node's domain).
    pub jid: Jid,
    /// The resource the node binds for it.
    pub resource: String,
    /// Human status in its presence.
    pub status: String,
}

/// A message type (RFC 6121 §5.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Chat,
    Normal,
    Headline,
    Error,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Chat => "chat",
            MessageType::Normal => "normal",
            MessageType::Headline => "headline",
            MessageType::Error => "error",
        }
    }

    fn parse(s: &str) -> MessageType {
        match s {
            "chat" => MessageType::Chat,
            "headline" => MessageType::Headline,
            "error" => MessageType::Error,
            _ => MessageType::Normal,
        }
    }
}

/// An outgoing message: recipients, body, type, raw XML payload, sender.
#[derive(Clone, Debug)]
pub struct Message {
    pub recipients: Vec<String>,
    pub body: Option<String>,
    pub message_type: MessageType,
    pub payload: Vec<Element>,
    /// The gateway's bare or full JID (another resource of it); None: the gateway itself.
    pub from: Option<String>,
}

/// Builds a [`Message`] (App Engine's `MessageBuilder`).
#[derive(Clone, Debug)]
pub struct MessageBuilder(Message);

impl Default for MessageBuilder {
    fn default() -> Self {
        MessageBuilder::new()
    }
}

impl MessageBuilder {
    pub fn new() -> MessageBuilder {
        MessageBuilder(Message {
            recipients: Vec::new(),
            body: None,
            message_type: MessageType::Chat,
            payload: Vec::new(),
            from: None,
        })
    }
    pub fn with_recipient_jids<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        jids: I,
    ) -> Self {
        self.0.recipients.extend(jids.into_iter().map(Into::into));
        self
    }
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.0.body = Some(body.into());
        self
    }
    pub fn with_message_type(mut self, t: MessageType) -> Self {
        self.0.message_type = t;
        self
    }
    /// An extension element carried beside the body.
    pub fn with_raw_xml(mut self, payload: Element) -> Self {
        self.0.payload.push(payload);
        self
    }
    pub fn with_from_jid(mut self, from: impl Into<String>) -> Self {
        self.0.from = Some(from.into());
        self
    }
    pub fn build(self) -> Message {
        self.0
    }
}

/// The outcome for one recipient (App Engine's `SendResponse.Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    /// Handed to the router for delivery.
    Success,
    /// Not a JID.
    InvalidId,
    /// Not sent (bad sender, gateway not running).
    OtherError,
}

/// Status per recipient.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendResponse {
    pub status_map: BTreeMap<String, SendStatus>,
}

impl SendResponse {
    pub fn status_of(&self, jid: &str) -> Option<SendStatus> {
        self.status_map.get(jid).copied()
    }
}

/// What the gateway knows of a JID's presence (App Engine's `Presence`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PresenceInfo {
    pub available: bool,
    pub show: Option<String>,
    pub status: Option<String>,
    /// The `urn:intercloud:capacity:0` child, when the contact announced one.
    pub capacity: Option<Element>,
}

impl PresenceInfo {
    pub fn is_available(&self) -> bool {
        self.available
    }
    pub fn get_show(&self) -> Option<&str> {
        self.show.as_deref()
    }
    pub fn get_status(&self) -> Option<&str> {
        self.status.as_deref()
    }

    fn of(p: &Element) -> PresenceInfo {
        PresenceInfo {
            available: stanza::stype(p).is_empty(),
            show: p.child_text("show", NS_CLIENT),
            status: p.child_text("status", NS_CLIENT),
            capacity: p.get_child("capacity", NS_CAPACITY).cloned(),
        }
    }
}

/// A message the gateway received.
#[derive(Clone, Debug)]
pub struct InboundMessage {
    pub from: Jid,
    pub body: Option<String>,
    pub message_type: MessageType,
    /// The whole stanza (payloads, error).
    pub stanza: Element,
}

impl InboundMessage {
    /// The defined condition of an error message (`remote-server-not-found` …).
    pub fn error_condition(&self) -> Option<String> {
        self.stanza
            .get_child("error", NS_CLIENT)
            .and_then(|e| e.first_element())
            .map(|c| c.name.clone())
    }
}

/// A subscription request or answer from a contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionKind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

/// Cloud logic: what the gateway does with what arrives (App Engine's inbound
/// handlers). Called on the gateway's actor; keep it quick (hand work to an
/// actor of your own).
pub trait GatewayHandler: Send + 'static {
    /// A `chat`, `normal`, `headline` or `error` message.
    fn on_message(&mut self, _gw: &Gateway, _msg: InboundMessage) {}
    /// A contact's presence changed (available, unavailable, status, capacity).
    fn on_presence(&mut self, _gw: &Gateway, _from: &Jid, _presence: &PresenceInfo) {}
    /// A subscription stanza; for `Subscribe`, return true to approve (the
    /// gateway then subscribes back: cloud gateways see each other).
    fn on_subscription(&mut self, _gw: &Gateway, _from: &Jid, _kind: SubscriptionKind) -> bool {
        false
    }
    /// An iq get/set to the gateway; return false to answer `service-unavailable`.
    /// A handler that returns true answers later with [`Gateway::send`].
    fn on_iq(&mut self, _gw: &Gateway, _iq: Element) -> bool {
        false
    }
}

/// A handle on a running gateway: the API.
#[derive(Clone)]
pub struct Gateway {
    addr: Addr<GatewayActor>,
    jid: Jid,
    full: Jid,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Gateway {
    /// Logs the gateway in on `cloud` and makes it available.
    pub fn start(cloud: Arc<Cloud>, settings: GatewaySettings, parse: ParseFn) -> Gateway {
        let full = settings
            .jid
            .with_resource(&settings.resource)
            .unwrap_or_else(|_| settings.jid.clone());
        let jid = settings.jid.clone();
        let metrics = cloud.metrics.clone();
        let addr = GatewayActor {
            cloud,
            settings,
            parse,
            session: None,
            conn: 0,
            contacts: HashMap::new(),
            contact_resources: 0,
            pending: HashMap::new(),
            handler: None,
            presence_payload: Vec::new(),
            invited: HashSet::new(),
            next_id: 0,
            stopping: false,
        }
        .start();
        Gateway {
            addr,
            jid,
            full,
            metrics,
        }
    }

    /// The gateway's bare JID.
    pub fn jid(&self) -> &Jid {
        &self.jid
    }

    /// Its cloud's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The gateway's full JID (the resource the node bound).
    pub fn full_jid(&self) -> &Jid {
        &self.full
    }

    /// Installs the cloud logic.
    pub fn set_handler(&self, h: Box<dyn GatewayHandler>) {
        self.addr.do_send(SetHandler(h));
    }

    /// What the gateway knows of `jid`'s presence (a bare JID: any resource).
    pub async fn get_presence(&self, jid: &Jid) -> PresenceInfo {
        self.addr
            .send(GetPresence(jid.clone()))
            .await
            .unwrap_or_default()
    }

    /// Sends `msg` to each recipient; the status of each.
    pub async fn send_message(&self, msg: Message) -> SendResponse {
        let recipients = msg.recipients.clone();
        self.addr
            .send(SendMessage(msg))
            .await
            .unwrap_or_else(|_| SendResponse {
                status_map: recipients
                    .into_iter()
                    .map(|r| (r, SendStatus::OtherError))
                    .collect(),
            })
    }

    /// Sends `msg` without waiting for the statuses (in order with the
    /// gateway's other stanzas; for actors that must not wait).
    pub fn post_message(&self, msg: Message) {
        self.addr.do_send(SendMessage(msg));
    }

    /// Asks to see `jid`'s presence (a subscription request; App Engine's `sendInvitation`).
    pub fn send_invite(&self, jid: &Jid) {
        self.addr.do_send(Invite(jid.clone()));
    }

    /// Changes the gateway's own presence: status text and extension payloads (capacity).
    pub fn send_presence(&self, status: Option<String>, payload: Vec<Element>) {
        self.addr.do_send(SetOwnPresence { status, payload });
    }

    /// Sends any stanza from the gateway (answers to iqs, errors).
    pub fn send(&self, stanza: Element) {
        self.addr.do_send(SendRaw(stanza));
    }

    /// Sends an iq request and waits for its answer.
    pub async fn iq(&self, iq: Element, timeout: Duration) -> Result<Element, GatewayError> {
        let rx = self
            .addr
            .send(SendIq(iq))
            .await
            .map_err(|_| GatewayError::Gone)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(e)) => Ok(e),
            Ok(Err(_)) => Err(GatewayError::Gone),
            Err(_) => Err(GatewayError::Timeout(timeout)),
        }
    }

    /// Contacts currently available (bare JIDs), for status and tests.
    pub async fn available_contacts(&self) -> Vec<Jid> {
        self.addr.send(Available).await.unwrap_or_default()
    }

    /// Logs the gateway out (unavailable presence goes to its contacts).
    pub fn stop(&self) {
        self.addr.do_send(Stop);
    }
}

struct GatewayActor {
    cloud: Arc<Cloud>,
    settings: GatewaySettings,
    parse: ParseFn,
    session: Option<Addr<Session>>,
    conn: u64,
    /// Contacts' presence: bare JID -> resource -> presence.
    contacts: HashMap<Jid, HashMap<String, PresenceInfo>>,
    /// Resources in `contacts` (bounded by `max_remote_presences`).
    contact_resources: usize,
    /// Our iq requests waiting for their answer, by id.
    pending: HashMap<String, oneshot::Sender<Element>>,
    handler: Option<Box<dyn GatewayHandler>>,
    presence_payload: Vec<Element>,
    invited: HashSet<Jid>,
    next_id: u64,
    stopping: bool,
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
    fn handle_of(&self, ctx: &Context<Self>) -> Gateway {
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
    fn login(&mut self, ctx: &mut Context<Self>) {
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
struct FromSession {
    conn: u64,
    out: Outbound,
}

#[derive(Message)]
#[rtype(result = "()")]
struct SessionEnded {
    conn: u64,
}

#[derive(Message)]
#[rtype(result = "()")]
struct SetHandler(Box<dyn GatewayHandler>);

#[derive(Message)]
#[rtype(result = "PresenceInfo")]
struct GetPresence(Jid);

#[derive(Message)]
#[rtype(result = "SendResponse")]
struct SendMessage(Message);

#[derive(Message)]
#[rtype(result = "()")]
struct Invite(Jid);

#[derive(Message)]
#[rtype(result = "()")]
struct SetOwnPresence {
    status: Option<String>,
    payload: Vec<Element>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct SendRaw(Element);

#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Element>")]
struct SendIq(Element);

#[derive(Message)]
#[rtype(result = "Vec<Jid>")]
struct Available;

#[derive(Message)]
#[rtype(result = "()")]
struct Stop;

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

#[cfg(test)]
mod tests {
    //! The gateway as a client of its cloud, fed presence through the router.
    use super::*;
    use crate::messages::Route;
    use crate::store::Store;
    use crate::Settings;

    #[actix_rt::test]
    async fn contacts_remembered_are_bounded() {
        let store = Arc::new(Store::in_memory().unwrap());
        store.add_user("gateway@local.test", "pw", 64).unwrap();
        let cloud = Cloud::start(
            Settings {
                domain: "local.test".into(),
                max_remote_presences: 5,
                ..Settings::default()
            },
            store,
        );
        let gw = Gateway::start(
            cloud.clone(),
            GatewaySettings {
                jid: "gateway@local.test".parse().unwrap(),
                resource: "node".into(),
                status: "test".into(),
            },
            Arc::new(|_: &str| None),
        );
        // Its session is bound before anything is sent to it.
        for _ in 0..500 {
            if cloud
                .router
                .send(crate::router::CountSessions)
                .await
                .unwrap()
                > 0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A server may send presence from any number of its resources.
        for i in 0..40 {
            cloud.router.do_send(Route(
                Element::new("presence", NS_CLIENT)
                    .attr("from", format!("c{i}@remote.test/r"))
                    .attr("to", "gateway@local.test/node"),
            ));
        }
        let mut seen = 0;
        for _ in 0..200 {
            seen = gw.available_contacts().await.len();
            if seen >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Every presence went through the router before the count is read.
        let _ = cloud.router.send(crate::router::CountSessions).await;
        assert_eq!(gw.available_contacts().await.len(), 5, "saw {seen}");
    }
}
