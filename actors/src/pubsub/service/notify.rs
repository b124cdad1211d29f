//! XEP-0060 notifications (and XEP-0163's by interest): who gets an event, the last items for a contact coming online, and the envelope whose id orders them so that one that bounced can be sent again as it was.

use super::*;

impl PubSub {
    /// `event` to every subscriber of `n` that takes deliveries (one message
    /// per JID), and in a personal service to every resource whose
    /// capabilities ask for the node and that the access model lets read it.
    pub(super) fn notify(&self, n: &Node, event: Element, env: &dyn Env) -> Vec<Element> {
        let mut seen = std::collections::HashSet::new();
        let mut to: Vec<String> = n
            .subscriptions
            .iter()
            .filter(|s| s.state == SubState::Subscribed && s.deliver)
            .filter(|s| seen.insert(s.jid.clone()))
            .map(|s| s.jid.clone())
            .collect();
        if self.pep {
            to.extend(
                self.interested_readers(n, env)
                    .filter(|j| seen.insert(j.clone())),
            );
        }
        to.into_iter()
            .map(|j| self.notification(n, &j, event.clone()))
            .collect()
    }

    /// The full JIDs interested in `n` (XEP-0163 `+notify`) that may read it,
    /// leaving out those whose account holds an explicit subscription.
    fn interested_readers<'a>(
        &'a self,
        n: &'a Node,
        env: &'a dyn Env,
    ) -> impl Iterator<Item = String> + 'a {
        env.interested(&n.name).into_iter().filter(move |full| {
            let Ok(j) = full.parse::<Jid>() else {
                return false;
            };
            let bare = j.to_bare().to_string();
            !n.subscriptions.iter().any(|s| s.jid == bare)
                && (bare == self.jid || self.may_retrieve(n, &bare, env).is_ok())
        })
    }

    /// XEP-0163 §4.3.2: when `full` becomes available with interest in some
    /// of this person's nodes, the last item of each it may read.
    pub fn last_items_for(&self, full: &str, nodes: &[String], env: &dyn Env) -> Vec<Element> {
        let Ok(j) = full.parse::<Jid>() else {
            return vec![];
        };
        let bare = j.to_bare().to_string();
        nodes
            .iter()
            .filter_map(|name| self.nodes.get(name))
            .filter(|n| n.config.send_last_published_item == "on_sub_and_presence")
            .filter(|n| bare == self.jid || self.may_retrieve(n, &bare, env).is_ok())
            .filter_map(|n| {
                n.last()
                    .map(|last| self.notification(n, full, items_event(n, &[last])))
            })
            .collect()
    }

    /// The names of the nodes of this service.
    pub fn node_names(&self) -> impl Iterator<Item = &String> {
        self.nodes.keys()
    }

    pub(super) fn notification(&self, n: &Node, to: &str, event: Element) -> Element {
        let n_ = self.notes.get() + 1;
        self.notes.set(n_);
        let headline = n.config.notification_type == "headline";
        let id = format!(
            "ps-{:x}-{n_:x}-{}",
            self.nonce,
            if headline { "h" } else { "n" }
        );
        notification_element(&self.jid, to, &id, headline).child(event)
    }

    /// A notification of ours that came back as an error: its order among
    /// our notifications and the notification as it was sent (the same
    /// bytes, so that a server that did get it drops the copy); None for
    /// anything else.
    pub fn returned(&self, bounce: &Element) -> Option<(u64, Element)> {
        if bounce.name != "message" || stanza::stype(bounce) != "error" {
            return None;
        }
        if bounce.get_attr("to") != Some(self.jid.as_str()) {
            return None;
        }
        let id = bounce.get_attr("id")?;
        let (n, headline) = self.order(id)?;
        let mut m = notification_element(&self.jid, bounce.get_attr("from")?, id, headline);
        for c in &bounce.children {
            if let crate::element::Node::Element(e) = c {
                if e.name != "error" {
                    m.children.push(c.clone());
                }
            }
        }
        Some((n, m))
    }
}

impl PubSub {
    /// The place among our notifications of the one with this id, and
    /// whether it is a headline; None for an id we did not make.
    fn order(&self, id: &str) -> Option<(u64, bool)> {
        let mut parts = id.strip_prefix("ps-")?.split('-');
        let nonce = u32::from_str_radix(parts.next()?, 16).ok()?;
        let n = u64::from_str_radix(parts.next()?, 16).ok()?;
        let headline = match parts.next()? {
            "h" => true,
            "n" => false,
            _ => return None,
        };
        (nonce == self.nonce).then_some((n, headline))
    }

    /// The place among our notifications of `note`, one this service made.
    pub fn note_order(&self, note: &Element) -> Option<u64> {
        self.order(note.get_attr("id")?).map(|(n, _)| n)
    }
}

/// A notification's envelope (attributes always in this order).
fn notification_element(from: &str, to: &str, id: &str, headline: bool) -> Element {
    let m = Element::new("message", NS_CLIENT)
        .attr("from", from)
        .attr("to", to)
        .attr("id", id);
    if headline {
        m.attr("type", "headline")
    } else {
        m
    }
}

/// `<items node>` in an event with these items (payloads as the node's configuration says).
pub(super) fn items_event(n: &Node, items: &[&Item]) -> Element {
    let mut el = Element::new("items", NS_EVENT).attr("node", n.name.clone());
    for i in items {
        el = el.child(item_element(NS_EVENT, i, n.config.deliver_payloads));
    }
    Element::new("event", NS_EVENT).child(el)
}

pub(super) fn item_element(ns: &str, i: &Item, payload: bool) -> Element {
    let mut e = Element::new("item", ns)
        .attr("id", i.id.clone())
        .attr("publisher", i.publisher.clone());
    if payload {
        if let Some(p) = &i.payload {
            e = e.child(p.clone());
        }
    }
    e
}
