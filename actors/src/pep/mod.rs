//! XEP-0163 Personal Eventing: the actor around the core (`service.rs`), fed by the router with iqs to accounts' bare JIDs and by the presence actor with who is available with which XEP-0115 capabilities (`caps.rs`).

pub mod caps;
pub mod service;

#[cfg(test)]
mod tests;

use crate::messages::{DomainGone, PresenceSeen, Route, ToService};
use crate::metrics::Metrics;
use crate::pubsub::StoreRosters;
use crate::store::Store;
use actix::prelude::*;
use std::sync::Arc;

pub use service::{Limits, Pep, QUERY_PREFIX};

/// The personal services as an actor.
pub struct PepActor {
    core: Pep,
    rosters: StoreRosters,
    route: Recipient<Route>,
    metrics: Arc<Metrics>,
}

impl PepActor {
    pub fn new(
        core: Pep,
        store: Arc<Store>,
        route: Recipient<Route>,
        metrics: Arc<Metrics>,
    ) -> PepActor {
        PepActor {
            core,
            rosters: StoreRosters(store),
            route,
            metrics,
        }
    }

    fn send(&self, out: Vec<crate::element::Element>) {
        let notifications = out.iter().filter(|e| e.name == "message").count();
        self.metrics
            .pubsub_notifications
            .inc_by(notifications as u64);
        self.metrics.pep_nodes.set(self.core.node_count() as i64);
        self.metrics.pep_interests.set(self.core.tracked() as i64);
        for e in out {
            self.route.do_send(Route(e));
        }
    }
}

impl Actor for PepActor {
    type Context = Context<Self>;
}

impl Handler<ToService> for PepActor {
    type Result = ();
    fn handle(&mut self, msg: ToService, _: &mut Context<Self>) {
        let out = self.core.iq(&msg.0, &self.rosters);
        self.send(out);
    }
}

impl Handler<PresenceSeen> for PepActor {
    type Result = ();
    fn handle(&mut self, m: PresenceSeen, _: &mut Context<Self>) {
        let out = self
            .core
            .presence(&m.owner, &m.from, &m.stanza, &self.rosters);
        self.send(out);
    }
}

impl Handler<DomainGone> for PepActor {
    type Result = ();
    fn handle(&mut self, m: DomainGone, _: &mut Context<Self>) {
        self.core.domain_gone(&m.0);
        self.metrics.pep_interests.set(self.core.tracked() as i64);
    }
}
