//! Duplicate suppression on s2s receipt: a bounded window of the stanzas (with an id) received from peers, so that what a link resends after a cut (XEP-0198 at-least-once) is delivered once.
//!
//! A sending server resends every stanza its broken link did not see
//! acknowledged; some of those had arrived and were handled, their
//! acknowledgement lost with the link. Each stanza that carries an `id` is
//! remembered by a keyed hash of the whole stanza (name, namespace,
//! attributes, children — so two different stanzas that happen to share an
//! id are both delivered), for the last `capacity` such stanzas; a stanza
//! seen again inside that window is dropped. Stanzas without an id are
//! never dropped: nothing tells a resend from a new one.

use crate::element::{Element, Node};
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};

/// The window of stanzas seen.
pub struct Dedup {
    capacity: usize,
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    keys: std::collections::hash_map::RandomState,
    /// Duplicates dropped so far.
    pub dropped: u64,
}

fn feed(e: &Element, h: &mut impl Hasher) {
    e.name.hash(h);
    e.ns.hash(h);
    for a in &e.attrs {
        a.ns.hash(h);
        a.name.hash(h);
        a.value.hash(h);
    }
    for c in &e.children {
        match c {
            Node::Element(c) => {
                0u8.hash(h);
                feed(c, h);
            }
            Node::Text(t) => {
                1u8.hash(h);
                t.hash(h);
            }
        }
    }
    2u8.hash(h);
}

impl Dedup {
    /// Remembers up to `capacity` stanzas (0: suppression off).
    pub fn new(capacity: usize) -> Dedup {
        Dedup {
            capacity,
            seen: HashSet::new(),
            order: VecDeque::new(),
            keys: Default::default(),
            dropped: 0,
        }
    }

    /// True when `e` is new (deliver it), false when it is a copy of a
    /// stanza inside the window (drop it).
    pub fn first(&mut self, e: &Element) -> bool {
        if self.capacity == 0 || e.get_attr("id").is_none() {
            return true;
        }
        let mut h = self.keys.build_hasher();
        feed(e, &mut h);
        let k = h.finish();
        if !self.seen.insert(k) {
            self.dropped += 1;
            return false;
        }
        self.order.push_back(k);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// Stanzas remembered now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::NS_CLIENT;

    fn msg(id: Option<&str>, body: &str) -> Element {
        let mut e = Element::new("message", NS_CLIENT)
            .attr("from", "a@x.test/r")
            .attr("to", "b@y.test");
        if let Some(id) = id {
            e.set_attr("id", id);
        }
        e.child(Element::new("body", NS_CLIENT).text(body))
    }

    #[test]
    fn a_resent_stanza_is_dropped_once_seen() {
        let mut d = Dedup::new(8);
        assert!(d.first(&msg(Some("1"), "hi")));
        assert!(!d.first(&msg(Some("1"), "hi")));
        assert!(!d.first(&msg(Some("1"), "hi")));
        assert_eq!(d.dropped, 2);
        // Same id, other content: a different stanza.
        assert!(d.first(&msg(Some("1"), "other")));
        // Same content, other sender: different.
        assert!(d.first(&msg(Some("1"), "hi").attr("from", "c@x.test/r")));
    }

    #[test]
    fn stanzas_without_an_id_are_never_dropped() {
        let mut d = Dedup::new(8);
        assert!(d.first(&msg(None, "ok")));
        assert!(d.first(&msg(None, "ok")));
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn the_window_is_bounded() {
        let mut d = Dedup::new(3);
        for i in 0..10 {
            assert!(d.first(&msg(Some(&i.to_string()), "x")));
        }
        assert_eq!(d.len(), 3);
        // The oldest fell out of the window; the newest are still known.
        assert!(d.first(&msg(Some("0"), "x")));
        assert!(!d.first(&msg(Some("9"), "x")));
        assert!(Dedup::new(0).first(&msg(Some("1"), "x")));
    }
}
