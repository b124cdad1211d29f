//! Stanza helpers: kinds, addressing, and RFC 6120 §8.3 stanza errors.

use crate::element::{Element, Node, NS_CLIENT};
use crate::jid::Jid;

pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const NS_STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const NS_ROSTER: &str = "jabber:iq:roster";
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
pub const NS_PING: &str = "urn:xmpp:ping";
pub const NS_VERSION: &str = "jabber:iq:version";
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
pub const NS_DELAY: &str = "urn:xmpp:delay";
pub const NS_MSGOFFLINE: &str = "msgoffline";

/// The three stanza kinds of RFC 6120 §8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Message,
    Presence,
    Iq,
}

/// The kind of a top-level element in a client or server stream, if it is a stanza.
pub fn kind(e: &Element) -> Option<Kind> {
    if e.ns != NS_CLIENT && e.ns != crate::element::NS_SERVER {
        return None;
    }
    match e.name.as_str() {
        "message" => Some(Kind::Message),
        "presence" => Some(Kind::Presence),
        "iq" => Some(Kind::Iq),
        _ => None,
    }
}

/// The stanza's `type` attribute ("" when absent).
pub fn stype(e: &Element) -> &str {
    e.get_attr("type").unwrap_or("")
}

/// Parses the `to` attribute; `Ok(None)` when absent.
pub fn to(e: &Element) -> Result<Option<Jid>, crate::jid::JidError> {
    e.get_attr("to").map(|s| s.parse()).transpose()
}

/// Parses the `from` attribute; `Ok(None)` when absent.
pub fn from(e: &Element) -> Result<Option<Jid>, crate::jid::JidError> {
    e.get_attr("from").map(|s| s.parse()).transpose()
}

/// The error `type` RFC 6120 §8.3.3 gives each defined condition.
pub fn error_type(condition: &str) -> &'static str {
    match condition {
        "bad-request" | "jid-malformed" | "not-acceptable" | "policy-violation"
        | "unexpected-request" => "modify",
        "forbidden" | "not-authorized" | "registration-required" | "subscription-required" => {
            "auth"
        }
        "internal-server-error" | "remote-server-timeout" | "resource-constraint" => "wait",
        _ => "cancel",
    }
}

/// Builds the error reply to `stanza`: addresses swapped, same id, the
/// original payload kept (RFC 6120 §8.3.1), and `<error>` with `condition`.
pub fn error_reply(stanza: &Element, condition: &str, text: Option<&str>) -> Element {
    let mut reply = Element::new(&stanza.name, &stanza.ns);
    if let Some(id) = stanza.get_attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(f) = stanza.get_attr("from") {
        reply.set_attr("to", f);
    }
    if let Some(t) = stanza.get_attr("to") {
        reply.set_attr("from", t);
    }
    reply.set_attr("type", "error");
    if stanza.name != "iq" {
        for c in &stanza.children {
            if let Node::Element(e) = c {
                if e.name != "error" {
                    reply.children.push(c.clone());
                }
            }
        }
    }
    let mut err = Element::new("error", &stanza.ns)
        .attr("type", error_type(condition))
        .child(Element::new(condition, NS_STANZAS));
    if let Some(t) = text {
        err = err.child(Element::new("text", NS_STANZAS).text(t));
    }
    reply.child(err)
}

/// An empty `type='result'` reply to an iq.
pub fn iq_result(iq: &Element) -> Element {
    let mut r = Element::new("iq", &iq.ns).attr("type", "result");
    if let Some(id) = iq.get_attr("id") {
        r.set_attr("id", id);
    }
    if let Some(f) = iq.get_attr("from") {
        r.set_attr("to", f);
    }
    if let Some(t) = iq.get_attr("to") {
        r.set_attr("from", t);
    }
    r
}

/// Whether an error reply may be sent for this stanza (never for errors, RFC 6120 §8.3.1).
pub fn may_bounce(e: &Element) -> bool {
    stype(e) != "error" && !(e.name == "iq" && stype(e) == "result")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_swaps_and_typifies() {
        let iq = Element::new("iq", NS_CLIENT)
            .attr("id", "1")
            .attr("from", "a@x/r")
            .attr("to", "b@x")
            .attr("type", "get");
        let r = error_reply(&iq, "service-unavailable", None);
        assert_eq!(
            r.to_xml_in(NS_CLIENT),
            "<iq id='1' to='a@x/r' from='b@x' type='error'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        );
    }
}
