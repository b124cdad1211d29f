//! The server's own answers to iqs addressed to its domain (XEP-0199 ping, XEP-0092 version, disco), for sessions and the router alike.

use crate::element::Element;
use crate::stanza::{self, error_reply};
use crate::{disco, ping, version};

/// The server's own answer to an iq addressed to its domain; `services`
/// are the subdomain services disco#items lists.
pub fn answer_server_iq(iq: &Element, services: &[String]) -> Option<Element> {
    match stanza::stype(iq) {
        "get" | "set" => Some(
            ping::answer(iq)
                .or_else(|| version::answer(iq))
                .or_else(|| disco::answer_server(iq, services))
                .unwrap_or_else(|| error_reply(iq, "service-unavailable", None)),
        ),
        _ => None,
    }
}
