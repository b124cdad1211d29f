//! A cloud's negotiation policy: which services it offers (protocols, transports, capacity, longest duration), which partners it deals with, and the decision on a proposal given what is free.

use super::protocol::Terms;
use serde::{Deserialize, Serialize};

/// One service a cloud offers to others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// e.g. `storage-replication`.
    pub service: String,
    /// Supported protocols (e.g. `["AMQP"]`); empty: any.
    #[serde(default)]
    pub protocols: Vec<String>,
    /// Supported transports (e.g. `["UDT", "TCP"]`); empty: any.
    #[serde(default)]
    pub transports: Vec<String>,
    /// Total amount that may be promised at once (in `unit`).
    pub capacity: u64,
    #[serde(default = "default_unit")]
    pub unit: String,
    /// Longest agreement accepted, seconds; 0: no limit.
    #[serde(default)]
    pub max_duration_secs: u64,
}

fn default_unit() -> String {
    "GB".into()
}

/// What a cloud accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub offers: Vec<Offer>,
    /// Domains allowed to negotiate; empty: any.
    pub partners: Vec<String>,
    /// Offer what is left when less than asked is free.
    pub counter: bool,
}

/// The answer to a proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Accept,
    /// Only this much is free.
    Counter(u64),
    Reject(String),
}

fn listed(list: &[String], v: &str) -> bool {
    list.is_empty() || list.iter().any(|x| x.eq_ignore_ascii_case(v))
}

impl Policy {
    pub fn offer(&self, service: &str) -> Option<&Offer> {
        self.offers
            .iter()
            .find(|o| o.service.eq_ignore_ascii_case(service))
    }

    pub fn partner_allowed(&self, domain: &str) -> bool {
        listed(&self.partners, domain)
    }

    /// Decides on `t` from `domain`, with `free` of the service's capacity not promised.
    pub fn decide(&self, domain: &str, t: &Terms, free: u64) -> Decision {
        if !self.partner_allowed(domain) {
            return Decision::Reject(format!("{domain} is not a partner of this cloud"));
        }
        let Some(o) = self.offer(&t.service) else {
            return Decision::Reject(format!("service {} is not offered", t.service));
        };
        if !listed(&o.protocols, &t.protocol) {
            return Decision::Reject(format!(
                "protocol {} is not supported (supported: {})",
                t.protocol,
                o.protocols.join(", ")
            ));
        }
        if !listed(&o.transports, &t.transport) {
            return Decision::Reject(format!(
                "transport {} is not supported (supported: {})",
                t.transport,
                o.transports.join(", ")
            ));
        }
        if !t.unit.eq_ignore_ascii_case(&o.unit) {
            return Decision::Reject(format!("amounts are in {}, not {}", o.unit, t.unit));
        }
        if o.max_duration_secs > 0
            && (t.duration_secs == 0 || t.duration_secs > o.max_duration_secs)
        {
            return Decision::Reject(format!("agreements last at most {} s", o.max_duration_secs));
        }
        if t.amount == 0 {
            return Decision::Reject("amount must be at least 1".into());
        }
        if t.amount <= free {
            Decision::Accept
        } else if free > 0 && self.counter {
            Decision::Counter(free)
        } else {
            Decision::Reject(format!(
                "no capacity: {free} {} of {} free",
                o.unit, o.capacity
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let p = Policy {
            offers: vec![Offer {
                service: "storage-replication".into(),
                protocols: vec!["AMQP".into()],
                transports: vec!["UDT".into(), "TCP".into()],
                capacity: 10,
                unit: "GB".into(),
                max_duration_secs: 0,
            }],
            partners: vec![],
            counter: true,
        };
        let t = Terms {
            service: "storage-replication".into(),
            protocol: "amqp".into(),
            transport: "UDT".into(),
            amount: 5,
            unit: "GB".into(),
            duration_secs: 60,
            terms: String::new(),
        };
        assert_eq!(p.decide("c.test", &t, 10), Decision::Accept);
        assert_eq!(p.decide("c.test", &t, 3), Decision::Counter(3));
        assert!(
            matches!(p.decide("c.test", &t, 0), Decision::Reject(r) if r.contains("no capacity"))
        );
        let other = Terms {
            protocol: "HTTP".into(),
            ..t.clone()
        };
        assert!(
            matches!(p.decide("c.test", &other, 10), Decision::Reject(r) if r.contains("protocol"))
        );
        let p2 = Policy {
            partners: vec!["friend.test".into()],
            ..p.clone()
        };
        assert!(matches!(p2.decide("c.test", &t, 10), Decision::Reject(_)));
        assert_eq!(p2.decide("friend.test", &t, 10), Decision::Accept);
    }
}
