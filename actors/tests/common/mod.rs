//! What the actors' integration tests share: clouds in one process linked by an in-memory s2s dialer, gateways, negotiation settings, and waits for what a gateway receives.
#![allow(dead_code)]

use actix::prelude::*;
use intercloud_actors::element::Element;
use intercloud_actors::gateway::{
    Gateway, GatewayHandler, GatewaySettings, InboundMessage, MessageBuilder, MessageType,
};
use intercloud_actors::jid::Jid;
use intercloud_actors::link::{DialError, DialFuture, Dialer, LinkSettings, LinkSink};
use intercloud_actors::messages::Route;
use intercloud_actors::negotiation::policy::{Offer, Policy};
use intercloud_actors::negotiation::protocol::{Payload, Step, Terms};
use intercloud_actors::negotiation::NegotiationSettings;
use intercloud_actors::router::{CountSessions, Router, SetDialer};
use intercloud_actors::store::Store;
use intercloud_actors::{Cloud, Settings};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Delivers stanzas straight to the other cloud's router: the s2s layer without sockets.
#[derive(Clone, Default)]
pub struct MemDialer(pub Arc<Mutex<HashMap<String, Addr<Router>>>>);

impl Dialer for MemDialer {
    fn dial(&self, _local: &str, remote: &str) -> DialFuture {
        let target = self.0.lock().unwrap().get(remote).cloned();
        let remote = remote.to_string();
        Box::pin(async move {
            let router = target.ok_or(DialError::NotFound(remote))?;
            let (tx, mut rx) = mpsc::channel::<Element>(4096);
            let (done_tx, done_rx) = oneshot::channel();
            let inflight: Arc<std::sync::atomic::AtomicUsize> = Default::default();
            let written = inflight.clone();
            actix::spawn(async move {
                while let Some(e) = rx.recv().await {
                    written.fetch_sub(e.weight(), std::sync::atomic::Ordering::Relaxed);
                    router.do_send(Route(e));
                }
                let _ = done_tx.send(Vec::new());
            });
            Ok(LinkSink {
                tx,
                closed: done_rx,
                inflight,
            })
        })
    }
}

pub fn cloud(net: &MemDialer, domain: &str) -> Arc<Cloud> {
    let store = Arc::new(Store::in_memory().unwrap());
    store
        .add_user(&format!("gateway@{domain}"), "pw", 64)
        .unwrap();
    let c = Cloud::start(
        Settings {
            domain: domain.into(),
            ..Settings::default()
        },
        store,
    );
    c.router.do_send(SetDialer(
        Arc::new(net.clone()),
        LinkSettings {
            queue: 1000,
            queue_bytes: 4 << 20,
            max_domains: 100,
            max_pending: 100,
            max_pending_per_sender: 100,
            redial_window: Duration::from_secs(30),
            idle: Duration::from_secs(600),
            metrics: Default::default(),
        },
    ));
    net.0
        .lock()
        .unwrap()
        .insert(domain.to_string(), c.router.clone());
    c
}

/// Waits (at most 20 s) until `f` holds, asking again every 20 ms.
pub async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until each cloud has `n` sessions bound (its gateways logged in).
pub async fn logged_in(clouds: &[&Arc<Cloud>], n: usize) {
    for c in clouds {
        until("the gateways to log in", || async {
            c.router.send(CountSessions).await.unwrap() >= n
        })
        .await;
    }
}

pub fn gateway(c: &Arc<Cloud>) -> Gateway {
    gateway_as(c, "node")
}

/// The gateway account logged in with another resource.
pub fn gateway_as(c: &Arc<Cloud>, resource: &str) -> Gateway {
    Gateway::start(
        c.clone(),
        GatewaySettings {
            jid: format!("gateway@{}", c.settings.domain).parse().unwrap(),
            resource: resource.into(),
            status: "test".into(),
        },
        Arc::new(|_: &str| None),
    )
}

pub fn settings(capacity: u64) -> NegotiationSettings {
    NegotiationSettings {
        policy: Policy {
            offers: if capacity > 0 {
                vec![Offer {
                    service: "storage-replication".into(),
                    protocols: vec!["AMQP".into()],
                    transports: vec!["UDT".into()],
                    capacity,
                    unit: "GB".into(),
                    max_duration_secs: 0,
                }]
            } else {
                vec![]
            },
            partners: vec![],
            counter: true,
        },
        timeout: Duration::from_secs(10),
        retransmit: Duration::from_secs(1),
        ..NegotiationSettings::default()
    }
}

pub fn terms(amount: u64) -> Terms {
    Terms {
        service: "storage-replication".into(),
        protocol: "AMQP".into(),
        transport: "UDT".into(),
        amount,
        unit: "GB".into(),
        duration_secs: 3600,
        terms: String::new(),
    }
}

pub fn provider_jid() -> Jid {
    "gateway@provider.test".parse().unwrap()
}

pub struct Recorder(pub mpsc::UnboundedSender<InboundMessage>);

impl GatewayHandler for Recorder {
    fn on_message(&mut self, _gw: &Gateway, msg: InboundMessage) {
        let _ = self.0.send(msg);
    }
}

pub fn raw(gw: &Gateway, to: &Jid, p: &Payload) {
    gw.post_message(
        MessageBuilder::new()
            .with_recipient_jids([to.to_string()])
            .with_message_type(MessageType::Normal)
            .with_body(p.body(to, gw.jid()))
            .with_raw_xml(p.element())
            .build(),
    );
}

/// Waits for a negotiation message about negotiation `id` (of `step`, or any
/// that is not an error).
pub async fn answer_for(
    rx: &mut mpsc::UnboundedReceiver<InboundMessage>,
    id: &str,
    step: Option<Step>,
) -> InboundMessage {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {step:?} for {id}"))
            .unwrap();
        let fits = |p: Payload| p.id == id && step.as_ref().map(|s| *s == p.step).unwrap_or(true);
        if m.message_type != MessageType::Error
            && Payload::parse(&m.stanza).map(fits).unwrap_or(false)
        {
            return m;
        }
    }
}

pub async fn error_for(
    rx: &mut mpsc::UnboundedReceiver<InboundMessage>,
    id: &str,
) -> InboundMessage {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an answer")
            .unwrap();
        let is_for = Payload::parse(&m.stanza)
            .map(|p| p.id == id)
            .unwrap_or(false)
            || m.stanza.to_xml().contains(id);
        if m.message_type == MessageType::Error && is_for {
            return m;
        }
    }
}
