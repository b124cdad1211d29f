//! Notifications held for servers that cannot be reached: once one bounced because its server's link gave up, it and what follows for that server wait here in the order they were made, bounded, and go out again when the server is back — when its link comes up, or when a probe (the first held one, sent now and then) did not come back by the next round.

use crate::element::Element;
use std::collections::{BTreeMap, HashMap};

/// A flood past the bound logs a few lines, not one each.
static FULL: crate::lograte::LogRate =
    crate::lograte::LogRate::new(5, std::time::Duration::from_secs(10));

/// By unreachable domain: notifications by their order of making.
pub struct Held {
    domains: HashMap<String, BTreeMap<u64, Element>>,
    /// The probe out to each domain (its number), since the last round.
    probing: HashMap<String, u64>,
    count: usize,
    max: usize,
    /// Notifications dropped at the bound so far.
    pub dropped: u64,
}

impl Held {
    pub fn new(max: usize) -> Held {
        Held {
            domains: HashMap::new(),
            probing: HashMap::new(),
            count: 0,
            max,
            dropped: 0,
        }
    }

    pub fn is_down(&self, domain: &str) -> bool {
        self.domains.contains_key(domain)
    }

    /// Holds notification number `n` for `domain` (marking it down);
    /// false when the bound dropped it.
    pub fn hold(&mut self, domain: &str, n: u64, e: Element) -> bool {
        if self.probing.get(domain) == Some(&n) {
            // The probe came back: still unreachable.
            self.probing.remove(domain);
        }
        let held = self.domains.entry(domain.to_string()).or_default();
        if held.contains_key(&n) {
            return true;
        }
        if self.count >= self.max {
            self.dropped += 1;
            if let Some(held_back) = FULL.allow() {
                tracing::warn!(%domain, held = self.count, held_back, "notifications held for unreachable servers at their bound: dropped");
            }
            return false;
        }
        held.insert(n, e);
        self.count += 1;
        true
    }

    /// `domain` is reachable again: what it missed, in order.
    pub fn back(&mut self, domain: &str) -> Vec<Element> {
        self.probing.remove(domain);
        let held = self.domains.remove(domain).unwrap_or_default();
        self.count -= held.len();
        held.into_values().collect()
    }

    /// One round: a domain whose probe did not come back is reachable (all
    /// it missed goes, in order); otherwise its first held notification
    /// goes as a probe (held again if it bounces). What to send.
    pub fn round(&mut self) -> Vec<Element> {
        let mut out = Vec::new();
        let domains: Vec<String> = self.domains.keys().cloned().collect();
        for d in domains {
            if self.probing.contains_key(&d) {
                out.extend(self.back(&d));
                continue;
            }
            let held = self.domains.get_mut(&d).expect("listed above");
            match held.pop_first() {
                Some((n, e)) => {
                    self.count -= 1;
                    self.probing.insert(d, n);
                    out.push(e);
                }
                None => {
                    self.domains.remove(&d);
                }
            }
        }
        out
    }

    /// Notifications held now.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(n: u64) -> Element {
        Element::new("message", crate::element::NS_CLIENT).attr("id", n.to_string())
    }

    fn ids(v: &[Element]) -> Vec<&str> {
        v.iter().map(|e| e.get_attr("id").unwrap()).collect()
    }

    #[test]
    fn what_bounced_goes_out_again_in_the_order_it_was_made() {
        let mut h = Held::new(10);
        assert!(!h.is_down("b.test"));
        // Bounces come back in any order, and one twice.
        for n in [3, 1, 2, 1] {
            assert!(h.hold("b.test", n, note(n)));
        }
        assert!(h.is_down("b.test"));
        assert_eq!(h.len(), 3);
        assert_eq!(ids(&h.back("b.test")), vec!["1", "2", "3"]);
        assert!(!h.is_down("b.test"));
        assert!(h.is_empty());
    }

    #[test]
    fn a_probe_that_comes_back_keeps_the_domain_down_and_one_that_does_not_releases_it() {
        let mut h = Held::new(10);
        for n in [5, 6, 7] {
            h.hold("c.test", n, note(n));
        }
        assert_eq!(ids(&h.round()), vec!["5"]);
        // It bounced: held again, and the next round probes again.
        h.hold("c.test", 5, note(5));
        assert_eq!(ids(&h.round()), vec!["5"]);
        assert!(h.is_down("c.test"));
        // This time it did not come back: the rest goes, in order.
        assert_eq!(ids(&h.round()), vec!["6", "7"]);
        assert!(!h.is_down("c.test"));
        assert!(h.round().is_empty());
    }

    #[test]
    fn the_bound_drops_and_counts() {
        let mut h = Held::new(2);
        assert!(h.hold("d.test", 1, note(1)));
        assert!(h.hold("e.test", 1, note(1)));
        assert!(!h.hold("d.test", 2, note(2)));
        assert_eq!((h.len(), h.dropped), (2, 1));
    }
}
