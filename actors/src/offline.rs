//! XEP-0160 offline messages: which messages are kept, and how they are stamped on delivery (XEP-0203).

use crate::element::{escape, Element};
use crate::stanza::NS_DELAY;

/// Whether a message with no available recipient resource is kept (RFC 6121 §8.5.2.2, XEP-0160 §3).
pub fn keeps(message: &Element) -> bool {
    matches!(
        message.get_attr("type").unwrap_or("normal"),
        "normal" | "chat"
    ) && (message.get_child("body", &message.ns).is_some()
        || message.elements().any(|e| e.ns != message.ns))
}

/// Adds the XEP-0203 delay stamp to a stored message, in the serialised form
/// the store keeps (always our own serialisation of a message with children,
/// so it ends in `</message>`).
pub fn stamp_serialized(xml: &str, domain: &str, stamp: &str) -> String {
    let delay = format!(
        "<delay xmlns='{NS_DELAY}' from='{}' stamp='{}'>Offline Storage</delay>",
        escape(domain),
        escape(stamp)
    );
    match xml.rfind("</") {
        Some(i) if xml.ends_with("</message>") => format!("{}{}{}", &xml[..i], delay, &xml[i..]),
        _ => xml.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::NS_CLIENT;

    #[test]
    fn keeps_and_stamps() {
        let m = Element::new("message", NS_CLIENT)
            .attr("type", "chat")
            .child(Element::new("body", NS_CLIENT).text("hi"));
        assert!(keeps(&m));
        assert!(!keeps(&m.clone().attr("type", "headline")));
        assert!(!keeps(&Element::new("message", NS_CLIENT)));
        let s = stamp_serialized(&m.to_xml_in(NS_CLIENT), "x", "2026-01-01T00:00:00Z");
        assert_eq!(s, "<message type='chat'><body>hi</body><delay xmlns='urn:xmpp:delay' from='x' stamp='2026-01-01T00:00:00Z'>Offline Storage</delay></message>");
    }
}
