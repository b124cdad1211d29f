//! The negotiation messages between cloud gateways (`urn:intercloud:negotiation:0`): steps, terms, and the human `<body>` in the paper's §7 style each one carries.

use crate::element::{Element, NS_CLIENT};
use crate::jid::Jid;

pub const NS_NEGOTIATION: &str = "urn:intercloud:negotiation:0";

/// Longest id, text field and terms accepted from a peer.
const MAX_ID: usize = 128;
const MAX_FIELD: usize = 256;
const MAX_TERMS: usize = 4096;

/// One step of the dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Propose,
    Counter,
    Accept,
    Reject,
    Confirm,
    Cancel,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Propose => "propose",
            Step::Counter => "counter",
            Step::Accept => "accept",
            Step::Reject => "reject",
            Step::Confirm => "confirm",
            Step::Cancel => "cancel",
        }
    }

    fn parse(s: &str) -> Option<Step> {
        Some(match s {
            "propose" => Step::Propose,
            "counter" => Step::Counter,
            "accept" => Step::Accept,
            "reject" => Step::Reject,
            "confirm" => Step::Confirm,
            "cancel" => Step::Cancel,
            _ => return None,
        })
    }
}

/// What is being agreed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Terms {
    /// e.g. `storage-replication`.
    pub service: String,
    /// e.g. `AMQP`.
    pub protocol: String,
    /// e.g. `UDT`.
    pub transport: String,
    pub amount: u64,
    /// e.g. `GB`.
    pub unit: String,
    /// 0: open-ended.
    pub duration_secs: u64,
    /// Free text (price, SLA reference …).
    pub terms: String,
}

/// A parsed negotiation payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    pub id: String,
    pub step: Step,
    /// Present on propose, counter, accept and confirm.
    pub terms: Option<Terms>,
    /// Why (reject, cancel).
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("no negotiation payload")]
    Missing,
    #[error("bad negotiation id")]
    BadId,
    #[error("unknown step {0:?}")]
    BadStep(String),
    #[error("{0}: missing or malformed")]
    BadField(&'static str),
}

fn field(e: &Element, name: &'static str, max: usize) -> Result<String, ProtocolError> {
    let v = e
        .child_text(name, NS_NEGOTIATION)
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    if v.len() > max || v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ProtocolError::BadField(name));
    }
    Ok(v)
}

impl Payload {
    /// Reads the payload of a message, if it has one.
    pub fn parse(msg: &Element) -> Result<Payload, ProtocolError> {
        let n = msg
            .get_child("negotiation", NS_NEGOTIATION)
            .ok_or(ProtocolError::Missing)?;
        let id = n.get_attr("id").unwrap_or("").to_string();
        if id.is_empty()
            || id.len() > MAX_ID
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(ProtocolError::BadId);
        }
        let step_s = n.get_attr("step").unwrap_or("");
        let step = Step::parse(step_s).ok_or_else(|| ProtocolError::BadStep(step_s.into()))?;
        let terms = if matches!(
            step,
            Step::Propose | Step::Counter | Step::Accept | Step::Confirm
        ) {
            let amount_el = n.get_child("amount", NS_NEGOTIATION);
            let amount = amount_el
                .and_then(|a| a.text_content().trim().parse::<u64>().ok())
                .ok_or(ProtocolError::BadField("amount"))?;
            let unit = amount_el
                .and_then(|a| a.get_attr("unit"))
                .unwrap_or("")
                .trim()
                .to_string();
            if unit.len() > 32 {
                return Err(ProtocolError::BadField("unit"));
            }
            let duration_secs = match n.child_text("duration", NS_NEGOTIATION) {
                None => 0,
                Some(d) => d
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| ProtocolError::BadField("duration"))?,
            };
            let t = Terms {
                service: field(n, "service", MAX_FIELD)?,
                protocol: field(n, "protocol", MAX_FIELD)?,
                transport: field(n, "transport", MAX_FIELD)?,
                amount,
                unit,
                duration_secs,
                terms: field(n, "terms", MAX_TERMS)?,
            };
            if t.service.is_empty() {
                return Err(ProtocolError::BadField("service"));
            }
            Some(t)
        } else {
            None
        };
        let reason = n
            .child_text("reason", NS_NEGOTIATION)
            .map(|r| r.trim().chars().take(MAX_FIELD).collect());
        Ok(Payload {
            id,
            step,
            terms,
            reason,
        })
    }

    /// The payload element.
    pub fn element(&self) -> Element {
        let mut n = Element::new("negotiation", NS_NEGOTIATION)
            .attr("id", self.id.clone())
            .attr("step", self.step.as_str());
        if let Some(t) = &self.terms {
            n = n
                .child(Element::new("service", NS_NEGOTIATION).text(t.service.clone()))
                .child(Element::new("protocol", NS_NEGOTIATION).text(t.protocol.clone()))
                .child(Element::new("transport", NS_NEGOTIATION).text(t.transport.clone()))
                .child(
                    Element::new("amount", NS_NEGOTIATION)
                        .attr("unit", t.unit.clone())
                        .text(t.amount.to_string()),
                )
                .child(Element::new("duration", NS_NEGOTIATION).text(t.duration_secs.to_string()));
            if !t.terms.is_empty() {
                n = n.child(Element::new("terms", NS_NEGOTIATION).text(t.terms.clone()));
            }
        }
        if let Some(r) = &self.reason {
            n = n.child(Element::new("reason", NS_NEGOTIATION).text(r.clone()));
        }
        n
    }

    /// The whole message to `to`, with the human body.
    pub fn message(&self, to: &Jid, me: &Jid) -> Element {
        Element::new("message", NS_CLIENT)
            .attr("to", to.to_string())
            .attr("type", "normal")
            .attr("id", format!("neg-{}-{}", self.id, self.step.as_str()))
            .child(Element::new("body", NS_CLIENT).text(self.body(to, me)))
            .child(self.element())
    }

    /// The sentence a person reads, in the paper's style.
    pub fn body(&self, to: &Jid, _me: &Jid) -> String {
        let who = cloud_name(to.domain());
        let what = |t: &Terms| t.service.replace('-', " ");
        match (self.step, &self.terms) {
            (Step::Propose, Some(t)) => format!(
                "{who}, I would like to use your resources for {} using {} over {} protocol ({} {}{}).",
                what(t),
                t.protocol,
                t.transport,
                t.amount,
                t.unit,
                duration_words(t.duration_secs)
            ),
            (Step::Accept, Some(t)) => format!(
                "{who}, please go ahead and use my resources for {} using {}/{} protocol.",
                what(t),
                t.protocol,
                t.transport
            ),
            (Step::Counter, Some(t)) => format!(
                "{who}, I can offer {} {} for {} using {}/{} protocol{}.",
                t.amount,
                t.unit,
                what(t),
                t.protocol,
                t.transport,
                duration_words(t.duration_secs)
            ),
            (Step::Confirm, Some(t)) => format!(
                "{who}, confirmed: {} {} of {} using {}/{} protocol.",
                t.amount,
                t.unit,
                what(t),
                t.protocol,
                t.transport
            ),
            (Step::Reject, _) => format!(
                "{who}, I cannot accept: {}.",
                self.reason.as_deref().unwrap_or("no reason given")
            ),
            (Step::Cancel, _) => format!(
                "{who}, I withdraw my request ({}).",
                self.reason.as_deref().unwrap_or("cancelled")
            ),
            (s, None) => format!("{who}, {}.", s.as_str()),
        }
    }
}

fn duration_words(secs: u64) -> String {
    if secs == 0 {
        String::new()
    } else {
        format!(", for {secs} s")
    }
}

/// "cloud2.test" -> "Cloud 2" (as the paper addresses clouds); other names as they are.
pub fn cloud_name(domain: &str) -> String {
    let label = domain.split('.').next().unwrap_or(domain);
    match label.strip_prefix("cloud") {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => format!("Cloud {n}"),
        _ => label.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> Terms {
        Terms {
            service: "storage-replication".into(),
            protocol: "AMQP".into(),
            transport: "UDT".into(),
            amount: 100,
            unit: "GB".into(),
            duration_secs: 3600,
            terms: "".into(),
        }
    }

    #[test]
    fn round_trip_and_bodies() {
        let p = Payload {
            id: "n-1".into(),
            step: Step::Propose,
            terms: Some(terms()),
            reason: None,
        };
        let to: Jid = "gateway@cloud2.test".parse().unwrap();
        let me: Jid = "gateway@cloud1.test".parse().unwrap();
        let m = p.message(&to, &me);
        assert_eq!(Payload::parse(&m).unwrap(), p);
        let body = m.child_text("body", NS_CLIENT).unwrap();
        assert!(
            body.starts_with("Cloud 2, I would like to use your resources for storage replication using AMQP over UDT protocol"),
            "{body}"
        );
        let a = Payload {
            step: Step::Accept,
            ..p.clone()
        };
        assert!(a
            .body(&me, &to)
            .starts_with("Cloud 1, please go ahead and use my resources for storage replication using AMQP/UDT protocol"));
    }

    #[test]
    fn bad_payloads() {
        let bad = |n: Element| Payload::parse(&Element::new("message", NS_CLIENT).child(n));
        assert_eq!(
            Payload::parse(&Element::new("message", NS_CLIENT)),
            Err(ProtocolError::Missing)
        );
        let n = |id: &str, step: &str| {
            Element::new("negotiation", NS_NEGOTIATION)
                .attr("id", id)
                .attr("step", step)
        };
        assert_eq!(bad(n("", "propose")), Err(ProtocolError::BadId));
        assert_eq!(bad(n("a b", "propose")), Err(ProtocolError::BadId));
        assert!(matches!(
            bad(n("x", "steal")),
            Err(ProtocolError::BadStep(_))
        ));
        assert_eq!(
            bad(n("x", "propose")),
            Err(ProtocolError::BadField("amount"))
        );
        assert!(bad(n("x", "cancel")).is_ok());
    }
}
