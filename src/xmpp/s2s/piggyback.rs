//! XEP-0220 §2.5 multiplexing on an outgoing stream, as a sans-IO state machine: stanzas from a service of ours at a subdomain (`conference.<domain>`, `pubsub.<domain>`) wait until dialback authorizes that domain on the stream — stock servers take from a stream only the domains it authenticated.

use super::dialback::{self, NS_DIALBACK};
use intercloud_actors::element::Element;
use std::collections::{BTreeMap, HashSet};

/// What to do with a stanza about to be written.
#[derive(Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// A `<db:result/>` to send first (the first stanza of a new domain).
    pub request: Option<String>,
    /// The stanza, when it may go now.
    pub write: Option<Element>,
}

/// The domains one outgoing stream may send from.
pub struct Piggyback {
    local: String,
    remote: String,
    /// The peer's id for the stream (dialback keys are made over it); None
    /// when the peer does not do dialback: stanzas then go as they are.
    stream_id: Option<String>,
    secret: String,
    authorized: HashSet<String>,
    held: BTreeMap<String, Vec<Element>>,
}

impl Piggyback {
    pub fn new(local: &str, remote: &str, stream_id: Option<String>, secret: &str) -> Piggyback {
        Piggyback {
            local: local.to_string(),
            remote: remote.to_string(),
            stream_id,
            secret: secret.to_string(),
            authorized: HashSet::from([local.to_string()]),
            held: BTreeMap::new(),
        }
    }

    /// The domain a stanza is from.
    fn from_domain(e: &Element) -> String {
        let from = e.get_attr("from").unwrap_or("");
        let host = from.split('/').next().unwrap_or(from);
        host.rsplit('@').next().unwrap_or(host).to_ascii_lowercase()
    }

    pub fn outgoing(&mut self, e: Element) -> Outgoing {
        let from = Self::from_domain(&e);
        let Some(id) = &self.stream_id else {
            return Outgoing {
                request: None,
                write: Some(e),
            };
        };
        if self.authorized.contains(&from) || intercloud_actors::jid::server_of(&from) != self.local
        {
            return Outgoing {
                request: None,
                write: Some(e),
            };
        }
        let first = !self.held.contains_key(&from);
        self.held.entry(from.clone()).or_default().push(e);
        let request = first.then(|| {
            let key = dialback::key(&self.secret, &self.remote, &from, id);
            dialback::wire(
                &Element::new("result", NS_DIALBACK)
                    .attr("from", from)
                    .attr("to", self.remote.clone())
                    .text(key),
            )
        });
        Outgoing {
            request,
            write: None,
        }
    }

    /// The peer's answer to a request: whether it was valid, and the stanzas
    /// held for that domain (to write, or to bounce). None for anything else.
    pub fn answer(&mut self, e: &Element) -> Option<(bool, Vec<Element>)> {
        if e.ns != NS_DIALBACK || e.name != "result" {
            return None;
        }
        let domain = e.get_attr("to")?.to_ascii_lowercase();
        let held = self.held.remove(&domain)?;
        let valid = e.get_attr("type") == Some("valid");
        if valid {
            self.authorized.insert(domain);
        }
        Some((valid, held))
    }

    /// What is still held (handed back when the link ends).
    pub fn take_held(&mut self) -> Vec<Element> {
        std::mem::take(&mut self.held)
            .into_values()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(from: &str, body: &str) -> Element {
        Element::new("message", "jabber:client")
            .attr("from", from)
            .attr("to", "bob@prosody.test/x")
            .text(body)
    }

    #[test]
    fn a_service_waits_for_dialback_and_the_domain_goes_as_it_is() {
        let mut p = Piggyback::new("a.test", "prosody.test", Some("S1".into()), "s3");
        // The stream's own domain goes at once.
        let o = p.outgoing(msg("alice@a.test/r", "1"));
        assert_eq!((o.request, o.write.is_some()), (None, true));
        // The room's first stanza asks, the second only waits.
        let o = p.outgoing(msg("r@conference.a.test/alice", "2"));
        let req = o.request.expect("a db:result");
        assert!(
            req.starts_with("<db:result from='conference.a.test' to='prosody.test'>"),
            "{req}"
        );
        assert!(req.contains(&dialback::key(
            "s3",
            "prosody.test",
            "conference.a.test",
            "S1"
        )));
        assert_eq!(o.write, None);
        let o = p.outgoing(msg("r@conference.a.test/bob", "3"));
        assert_eq!((o.request, o.write), (None, None));
        // Something not ours is not held (the router would not send it).
        assert!(p.outgoing(msg("x@other.test", "4")).write.is_some());
        let valid = Element::new("result", NS_DIALBACK)
            .attr("from", "prosody.test")
            .attr("to", "conference.a.test")
            .attr("type", "valid");
        let (ok, held) = p.answer(&valid).unwrap();
        assert!(ok);
        assert_eq!(
            held.iter().map(|e| e.text_content()).collect::<Vec<_>>(),
            ["2", "3"]
        );
        // From now on it goes at once.
        assert!(p
            .outgoing(msg("r@conference.a.test/alice", "5"))
            .write
            .is_some());
    }

    #[test]
    fn a_refusal_gives_the_stanzas_back_and_without_dialback_nothing_waits() {
        let mut p = Piggyback::new("a.test", "prosody.test", Some("S1".into()), "s3");
        p.outgoing(msg("pubsub.a.test", "1"));
        let invalid = Element::new("result", NS_DIALBACK)
            .attr("from", "prosody.test")
            .attr("to", "pubsub.a.test")
            .attr("type", "invalid");
        let (ok, held) = p.answer(&invalid).unwrap();
        assert!(!ok);
        assert_eq!(held.len(), 1);
        // An answer for nothing asked is not ours.
        assert_eq!(p.answer(&invalid), None);
        let mut p = Piggyback::new("a.test", "b.test", None, "s3");
        assert!(p
            .outgoing(msg("r@conference.a.test/x", "1"))
            .write
            .is_some());
        p.outgoing(msg("r@conference.a.test/x", "1"));
        assert!(p.take_held().is_empty());
    }
}
