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

mod actor;

use actor::*;

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
