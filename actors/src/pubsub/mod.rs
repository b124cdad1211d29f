//! XEP-0060 Publish-Subscribe at `pubsub.<domain>`: the actor around the service core (`service.rs`), fed by the router with what is addressed to the service and answering through it.

pub mod held;
pub mod node;
pub mod service;

use crate::messages::{DomainBack, Route, ToService};
use crate::metrics::Metrics;
use crate::store::Store;
use actix::prelude::*;
use std::sync::Arc;

pub use service::{Limits, PubSub};

/// Rosters from the store, for the presence and roster access models.
pub struct StoreRosters(pub Arc<Store>);

impl service::Env for StoreRosters {
    fn roster(&self, owner: &str, contact: &str) -> Option<(bool, Vec<String>)> {
        let item = self.0.roster_item(owner, contact).ok()??;
        let from = matches!(
            item.subscription,
            crate::store::Subscription::From | crate::store::Subscription::Both
        );
        Some((from, item.groups))
    }
}

/// The service as an actor.
pub struct PubSubActor {
    core: PubSub,
    rosters: StoreRosters,
    route: Recipient<Route>,
    metrics: Arc<Metrics>,
    /// Notifications for servers that cannot be reached now.
    held: held::Held,
    /// How often one held notification per unreachable server is sent as a probe.
    probe_every: std::time::Duration,
}

/// The link-level conditions that say a server could not be reached (the
/// notification did not arrive), rather than that it refused.
const UNREACHABLE: [&str; 2] = ["remote-server-not-found", "remote-server-timeout"];

/// The server (link domain) a JID is reached through.
fn server_of_jid(jid: &str) -> Option<String> {
    let j: crate::jid::Jid = jid.parse().ok()?;
    Some(crate::jid::server_of(j.domain()).to_string())
}

impl PubSubActor {
    pub fn new(
        core: PubSub,
        store: Arc<Store>,
        route: Recipient<Route>,
        metrics: Arc<Metrics>,
        max_held: usize,
        probe_every: std::time::Duration,
    ) -> PubSubActor {
        PubSubActor {
            core,
            rosters: StoreRosters(store),
            route,
            metrics,
            held: held::Held::new(max_held),
            probe_every,
        }
    }

    /// Routes what the core made; notifications for a server that cannot
    /// be reached are held for it instead.
    fn send(&mut self, out: Vec<crate::element::Element>) {
        for e in out {
            if e.name == "message" {
                self.metrics.pubsub_notifications.inc();
            }
            if e.name == "message" && !self.held.is_empty() {
                let to = e.get_attr("to").and_then(server_of_jid);
                if let Some(d) = to.filter(|d| self.held.is_down(d)) {
                    if let Some(n) = self.core.note_order(&e) {
                        self.held.hold(&d, n, e);
                        continue;
                    }
                }
            }
            self.route.do_send(Route(e));
        }
    }

    /// A notification of ours came back because its server could not be
    /// reached: held until the server is back. True when it was one.
    fn returned(&mut self, st: &crate::element::Element) -> bool {
        let Some((n, note)) = self.core.returned(st) else {
            return false;
        };
        let unreachable = st
            .get_child("error", NS_CLIENT)
            .and_then(|e| e.elements().find(|c| c.ns == crate::stanza::NS_STANZAS))
            .is_some_and(|c| UNREACHABLE.contains(&c.name.as_str()));
        if let (true, Some(d)) = (unreachable, st.get_attr("from").and_then(server_of_jid)) {
            tracing::debug!(domain = %d, n, "notification returned: held until its server is back");
            self.held.hold(&d, n, note);
        }
        true
    }
}

use crate::element::NS_CLIENT;

impl Actor for PubSubActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.probe_every, |act, _| {
            for e in act.held.round() {
                act.route.do_send(Route(e));
            }
        });
    }
}

impl Handler<ToService> for PubSubActor {
    type Result = ();
    fn handle(&mut self, msg: ToService, _: &mut Context<Self>) {
        if self.returned(&msg.0) {
            return;
        }
        let out = self.core.handle(&msg.0, &self.rosters);
        self.send(out);
        self.metrics.pubsub_nodes.set(self.core.node_count() as i64);
    }
}

impl Handler<DomainBack> for PubSubActor {
    type Result = ();
    fn handle(&mut self, m: DomainBack, _: &mut Context<Self>) {
        let missed = self.held.back(&m.0);
        if !missed.is_empty() {
            tracing::info!(domain = %m.0, notifications = missed.len(), "server reachable again: held notifications sent");
        }
        for e in missed {
            self.route.do_send(Route(e));
        }
    }
}
