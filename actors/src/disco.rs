//! XEP-0030 Service Discovery for the server JID and for accounts.

use crate::element::Element;
use crate::stanza::{error_reply, iq_result, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_VERSION};

/// Features the server JID announces.
pub const SERVER_FEATURES: &[&str] = &[
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_PING,
    NS_VERSION,
    crate::stanza::NS_ROSTER,
    crate::stanza::NS_MSGOFFLINE,
    crate::stanza::NS_DELAY,
];

/// Answers disco#info / disco#items addressed to the server (the items are
/// the `services` it hosts); None when not disco.
pub fn answer_server(iq: &Element, services: &[String]) -> Option<Element> {
    if iq.get_attr("type") != Some("get") {
        return None;
    }
    if let Some(q) = iq.get_child("query", NS_DISCO_INFO) {
        if q.get_attr("node").is_some() {
            return Some(error_reply(iq, "item-not-found", None));
        }
        let mut query = Element::new("query", NS_DISCO_INFO).child(
            Element::new("identity", NS_DISCO_INFO)
                .attr("category", "server")
                .attr("type", "im")
                .attr("name", "intercloud"),
        );
        for f in SERVER_FEATURES {
            query = query.child(Element::new("feature", NS_DISCO_INFO).attr("var", *f));
        }
        return Some(iq_result(iq).child(query));
    }
    if let Some(q) = iq.get_child("query", NS_DISCO_ITEMS) {
        if q.get_attr("node").is_some() {
            return Some(error_reply(iq, "item-not-found", None));
        }
        let mut q = Element::new("query", NS_DISCO_ITEMS);
        for s in services {
            q = q.child(Element::new("item", NS_DISCO_ITEMS).attr("jid", s.clone()));
        }
        return Some(iq_result(iq).child(q));
    }
    None
}

/// Answers disco#info on an account's bare JID (RFC 6121 / XEP-0030 §3.1: the server answers for it).
pub fn answer_account(iq: &Element) -> Option<Element> {
    if iq.get_attr("type") != Some("get") {
        return None;
    }
    if iq.get_child("query", NS_DISCO_INFO).is_some() {
        return Some(
            iq_result(iq).child(
                Element::new("query", NS_DISCO_INFO).child(
                    Element::new("identity", NS_DISCO_INFO)
                        .attr("category", "account")
                        .attr("type", "registered"),
                ),
            ),
        );
    }
    if iq.get_child("query", NS_DISCO_ITEMS).is_some() {
        return Some(iq_result(iq).child(Element::new("query", NS_DISCO_ITEMS)));
    }
    None
}
