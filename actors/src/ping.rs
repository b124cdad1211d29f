//! XEP-0199 XMPP Ping: the server answers pings addressed to it.

use crate::element::Element;
use crate::stanza::{iq_result, NS_PING};

/// The reply to a ping iq, or None when `iq` is not a ping.
pub fn answer(iq: &Element) -> Option<Element> {
    if iq.get_attr("type") == Some("get") && iq.get_child("ping", NS_PING).is_some() {
        Some(iq_result(iq))
    } else {
        None
    }
}
