//! XEP-0092 Software Version of the server.

use crate::element::Element;
use crate::stanza::{iq_result, NS_VERSION};

/// The reply to a version query, or None when `iq` is not one.
pub fn answer(iq: &Element) -> Option<Element> {
    if iq.get_attr("type") != Some("get") || iq.get_child("query", NS_VERSION).is_none() {
        return None;
    }
    Some(
        iq_result(iq).child(
            Element::new("query", NS_VERSION)
                .child(Element::new("name", NS_VERSION).text("intercloud"))
                .child(Element::new("version", NS_VERSION).text(env!("CARGO_PKG_VERSION")))
                .child(Element::new("os", NS_VERSION).text(std::env::consts::OS)),
        ),
    )
}
