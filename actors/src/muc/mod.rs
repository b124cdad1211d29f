//! XEP-0045 Multi-User Chat at `conference.<domain>`: the actor around the service core (`service.rs`), fed by the router with what is addressed to the service, its rooms and their occupants, and answering through it.

pub mod room;
pub mod service;

use crate::messages::{DomainGone, Route, ToService};
use crate::metrics::Metrics;
use actix::prelude::*;
use std::sync::Arc;

pub use service::{Limits, Muc};

/// The service as an actor.
pub struct MucActor {
    core: Muc,
    route: Recipient<Route>,
    metrics: Arc<Metrics>,
}

impl MucActor {
    pub fn new(core: Muc, route: Recipient<Route>, metrics: Arc<Metrics>) -> MucActor {
        MucActor {
            core,
            route,
            metrics,
        }
    }
}

impl Actor for MucActor {
    type Context = Context<Self>;
}

impl MucActor {
    /// Routes what the service sends; `counted` when occupancy may have
    /// changed (counting walks every room: not for each groupchat message).
    fn send(&mut self, out: Vec<crate::element::Element>, counted: bool) {
        if counted {
            self.metrics.muc_rooms.set(self.core.room_count() as i64);
            self.metrics
                .muc_occupants
                .set(self.core.occupant_count() as i64);
        }
        for e in out {
            self.route.do_send(Route(e));
        }
    }
}

impl Handler<DomainGone> for MucActor {
    type Result = ();
    fn handle(&mut self, msg: DomainGone, _: &mut Context<Self>) {
        let out = self.core.domain_gone(&msg.0);
        self.send(out, true);
    }
}

impl Handler<ToService> for MucActor {
    type Result = ();
    fn handle(&mut self, msg: ToService, _: &mut Context<Self>) {
        let out = self.core.handle(&msg.0, crate::clock::unix_now());
        // Only presences, iqs and bounced messages change who is in which room.
        let counted = msg.0.name != "message" || msg.0.get_attr("type") == Some("error");
        self.send(out, counted);
    }
}
