//! RFC 6121 §2 roster management: items on the wire, and roster get/set/push.

use crate::element::{Element, NS_CLIENT};
use crate::jid::Jid;
use crate::stanza::{error_reply, iq_result, NS_ROSTER};
use crate::store::{RosterItem, Store};

/// The `<item/>` for a roster item.
pub fn item_element(item: &RosterItem) -> Element {
    let mut e = Element::new("item", NS_ROSTER)
        .attr("jid", item.contact.clone())
        .attr("subscription", item.subscription.as_str());
    if let Some(n) = &item.name {
        e.set_attr("name", n.clone());
    }
    if item.ask {
        e.set_attr("ask", "subscribe");
    }
    for g in &item.groups {
        e = e.child(Element::new("group", NS_ROSTER).text(g.clone()));
    }
    e
}

/// A roster push (RFC 6121 §2.1.6) of one item, `to` filled in by the router.
pub fn push(item_el: Element) -> Element {
    Element::new("iq", NS_CLIENT)
        .attr("type", "set")
        .attr("id", format!("push{}", rand::random::<u32>()))
        .child(Element::new("query", NS_ROSTER).child(item_el))
}

/// The item removed by a roster set with `subscription='remove'`.
pub fn removed_element(contact: &str) -> Element {
    Element::new("item", NS_ROSTER)
        .attr("jid", contact)
        .attr("subscription", "remove")
}

/// What a roster set asked for.
pub enum RosterSet {
    Update {
        contact: Jid,
        name: Option<String>,
        groups: Vec<String>,
    },
    Remove {
        contact: Jid,
    },
}

/// Validates a roster set (RFC 6121 §2.3.3): exactly one item, a valid JID,
/// no duplicate or empty groups. On failure, the error reply to send.
/// Parses a roster set; an item whose name and groups take more than
/// `max_item_bytes` is refused with `<not-acceptable/>` (RFC 6121 §2.3.3).
pub fn parse_set(iq: &Element, max_item_bytes: usize) -> Result<RosterSet, Element> {
    let q = iq
        .get_child("query", NS_ROSTER)
        .ok_or_else(|| error_reply(iq, "bad-request", None))?;
    let items: Vec<&Element> = q.elements().filter(|e| e.is("item", NS_ROSTER)).collect();
    if items.len() != 1 {
        return Err(error_reply(iq, "bad-request", Some("exactly one item")));
    }
    let it = items[0];
    let contact: Jid = it
        .get_attr("jid")
        .ok_or_else(|| error_reply(iq, "bad-request", None))?
        .parse::<Jid>()
        .map_err(|_| error_reply(iq, "jid-malformed", None))?
        .to_bare();
    if it.get_attr("subscription") == Some("remove") {
        return Ok(RosterSet::Remove { contact });
    }
    let mut groups = Vec::new();
    for g in it.elements().filter(|e| e.is("group", NS_ROSTER)) {
        let t = g.text_content();
        if t.is_empty() || groups.contains(&t) || t.contains('\n') {
            return Err(error_reply(iq, "bad-request", Some("bad group")));
        }
        groups.push(t);
    }
    let name = it.get_attr("name").map(String::from);
    let size = name.as_ref().map_or(0, String::len) + groups.iter().map(String::len).sum::<usize>();
    if size > max_item_bytes {
        return Err(error_reply(
            iq,
            "not-acceptable",
            Some("roster item name and groups too long"),
        ));
    }
    Ok(RosterSet::Update {
        contact,
        name,
        groups,
    })
}

/// The result of a roster get: every visible item.
pub fn get_result(iq: &Element, store: &Store, owner: &str) -> Element {
    match store.roster(owner) {
        Ok(items) => {
            let mut q = Element::new("query", NS_ROSTER);
            for it in items.iter().filter(|i| i.visible) {
                q = q.child(item_element(it));
            }
            iq_result(iq).child(q)
        }
        Err(e) => {
            tracing::error!(%owner, error = %e, "roster read failed");
            error_reply(iq, "internal-server-error", None)
        }
    }
}
