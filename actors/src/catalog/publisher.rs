//! A cloud publishes its own resource description to its exchanges and roots (publish_resources, over s2s when remote), and again until each one acknowledges it.

use crate::adhoc::NS_COMMANDS;
use crate::element::{Element, NS_CLIENT};
use crate::iodata::NS_IODATA;
use crate::messages::{IqResponse, Route};
use actix::prelude::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Ids of the publisher's requests start with this; the router hands their answers back (`HandleIqResults`).
pub const ID_PREFIX: &str = "publish-resources-";

/// Where each target stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Published,
    Refused(String),
}

/// The state of every target (status, tests).
#[derive(Message)]
#[rtype(result = "Vec<(String, Status)>")]
pub struct Statuses;

pub struct Publisher {
    domain: String,
    turtle: String,
    router: Recipient<Route>,
    targets: HashMap<String, Status>,
    retry: Duration,
    sent: u64,
    /// Per pending target: when it may be sent again, and how many times it was.
    next: HashMap<String, (Instant, u32)>,
}

impl Publisher {
    /// `targets` are exchange or root domains; the description goes to `service.<target>`.
    pub fn new(
        domain: String,
        turtle: String,
        targets: Vec<String>,
        router: Recipient<Route>,
        retry: Duration,
    ) -> Publisher {
        Publisher {
            domain,
            turtle,
            router,
            targets: targets.into_iter().map(|t| (t, Status::Pending)).collect(),
            retry,
            sent: 0,
            next: HashMap::new(),
        }
    }

    /// Sends to every pending target whose last request has had its time:
    /// an answer normally comes (a result, a refusal, or the router's bounce
    /// when the exchange is unreachable), so a request in flight is not
    /// doubled — under load the first s2s link can take longer than `retry`
    /// to come up, and every duplicate is one more catalog update for the
    /// exchange. Without an answer, the wait doubles (up to 32 × `retry`).
    fn send_pending(&mut self) {
        let now = Instant::now();
        let pending: Vec<String> = self
            .targets
            .iter()
            .filter(|(_, s)| **s == Status::Pending)
            .map(|(t, _)| t.clone())
            .filter(|t| self.next.get(t).is_none_or(|(at, _)| now >= *at))
            .collect();
        for t in pending {
            let tries = self.next.get(&t).map(|(_, n)| n + 1).unwrap_or(0);
            self.next.insert(
                t.clone(),
                (now + self.retry * 2u32.pow(tries.min(5)), tries),
            );
            self.sent += 1;
            let iq = Element::new("iq", NS_CLIENT)
                .attr("type", "set")
                .attr("from", self.domain.clone())
                .attr("to", format!("service.{t}"))
                .attr("id", format!("{ID_PREFIX}{t}-{}", self.sent))
                .child(
                    Element::new("command", NS_COMMANDS)
                        .attr("node", "publish_resources")
                        .attr("action", "execute")
                        .child(
                            Element::new("iodata", NS_IODATA)
                                .attr("type", "input")
                                .child(
                                    Element::new("in", NS_IODATA).child(
                                        Element::new("description", NS_IODATA)
                                            .text(self.turtle.clone()),
                                    ),
                                ),
                        ),
                );
            self.router.do_send(Route(iq));
        }
    }
}

impl Actor for Publisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.send_pending();
        ctx.run_interval(self.retry, |p, _| p.send_pending());
    }
}

impl Handler<IqResponse> for Publisher {
    type Result = ();
    fn handle(&mut self, msg: IqResponse, _: &mut Context<Self>) {
        let Some(target) = msg
            .0
            .get_attr("from")
            .and_then(|f| f.strip_prefix("service."))
            .map(str::to_string)
        else {
            return;
        };
        let Some(st) = self.targets.get_mut(&target) else {
            return;
        };
        if msg.0.get_attr("type") == Some("result") {
            tracing::info!(exchange = %target, "resource description published");
            *st = Status::Published;
            return;
        }
        let cond = msg
            .0
            .get_child("error", NS_CLIENT)
            .and_then(|e| e.first_element().map(|c| c.name.clone()))
            .unwrap_or_default();
        let text = msg
            .0
            .get_child("error", NS_CLIENT)
            .and_then(|e| {
                e.elements()
                    .find(|c| c.name == "text")
                    .map(|t| t.text_content())
            })
            .unwrap_or_default();
        // Unreachable or not yet up: try again; anything else is a refusal.
        if matches!(
            cond.as_str(),
            "remote-server-not-found"
                | "remote-server-timeout"
                | "service-unavailable"
                | "resource-constraint"
        ) {
            tracing::debug!(exchange = %target, cond, "publication will be retried");
            // Answered: again at the next round, not after the doubled wait.
            if let Some((at, _)) = self.next.get_mut(&target) {
                *at = Instant::now();
            }
        } else {
            tracing::warn!(exchange = %target, cond, text, "resource description refused");
            *st = Status::Refused(format!("{cond}: {text}"));
        }
    }
}

impl Handler<Statuses> for Publisher {
    type Result = MessageResult<Statuses>;
    fn handle(&mut self, _: Statuses, _: &mut Context<Self>) -> Self::Result {
        let mut v: Vec<(String, Status)> = self
            .targets
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        MessageResult(v)
    }
}
