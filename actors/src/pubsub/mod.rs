//! XEP-0060 Publish-Subscribe at `pubsub.<domain>`: the actor around the service core (`service.rs`), fed by the router with what is addressed to the service and answering through it.

pub mod node;
pub mod service;

use crate::messages::{Route, ToService};
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
}

impl PubSubActor {
    pub fn new(
        core: PubSub,
        store: Arc<Store>,
        route: Recipient<Route>,
        metrics: Arc<Metrics>,
    ) -> PubSubActor {
        PubSubActor {
            core,
            rosters: StoreRosters(store),
            route,
            metrics,
        }
    }
}

impl Actor for PubSubActor {
    type Context = Context<Self>;
}

impl Handler<ToService> for PubSubActor {
    type Result = ();
    fn handle(&mut self, msg: ToService, _: &mut Context<Self>) {
        let out = self.core.handle(&msg.0, &self.rosters);
        let notifications = out.iter().filter(|e| e.name == "message").count();
        self.metrics
            .pubsub_notifications
            .inc_by(notifications as u64);
        self.metrics.pubsub_nodes.set(self.core.node_count() as i64);
        for e in out {
            self.route.do_send(Route(e));
        }
    }
}
