//! What a many-to-many step acknowledged and what each reader got, and the promise it checks: every acknowledged item or message to every reader present throughout, once, in its sender's order.

use std::collections::{BTreeMap, BTreeSet};

/// Senders' acknowledged sequence numbers, and what each reader got.
#[derive(Debug, Default, Clone)]
pub struct ManyTally {
    /// By sender: how many it sent, and which of them were acknowledged.
    pub sent: BTreeMap<String, u64>,
    pub acked: BTreeMap<String, BTreeSet<u64>>,
    /// By reader, by sender: sequence numbers in the order they arrived.
    pub got: BTreeMap<String, BTreeMap<String, Vec<u64>>>,
    /// Readers that were not there for the whole step (removed from the
    /// room): not held to every message, still to order and uniqueness.
    pub left: BTreeSet<String>,
}

impl ManyTally {
    /// What breaks the promise: an acknowledged item or message a reader
    /// present throughout did not get, one got twice, or out of its
    /// sender's order.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (reader, by_sender) in &self.got {
            for (sender, acked) in &self.acked {
                let got = by_sender.get(sender).map(Vec::as_slice).unwrap_or(&[]);
                let have: BTreeSet<u64> = got.iter().copied().collect();
                if !self.left.contains(reader) {
                    let missing: Vec<u64> = acked.difference(&have).copied().collect();
                    if !missing.is_empty() {
                        out.push(format!(
                            "{reader} missed {} of {sender}'s {} acknowledged, e.g. {:?}",
                            missing.len(),
                            acked.len(),
                            &missing[..missing.len().min(10)]
                        ));
                    }
                }
                if have.len() < got.len() {
                    out.push(format!(
                        "{reader} got {} of {sender}'s more than once",
                        got.len() - have.len()
                    ));
                }
                let mut seen = BTreeSet::new();
                let firsts: Vec<u64> = got.iter().copied().filter(|s| seen.insert(*s)).collect();
                if let Some(w) = firsts.windows(2).find(|w| w[1] < w[0]) {
                    out.push(format!("{reader} got {sender}'s {} after {}", w[1], w[0]));
                }
            }
        }
        out
    }

    pub fn summary(&self) -> String {
        let acked: usize = self.acked.values().map(BTreeSet::len).sum();
        let got: usize = self
            .got
            .values()
            .flat_map(|m| m.values())
            .map(Vec::len)
            .sum();
        format!(
            "{} senders, {} sent, {acked} acknowledged; {} readers, {got} received{}",
            self.sent.len(),
            self.sent.values().sum::<u64>(),
            self.got.len(),
            if self.left.is_empty() {
                String::new()
            } else {
                format!(", {} removed by the room", self.left.len())
            }
        )
    }

    /// Whether every sender still there saw everything it sent acknowledged.
    pub(super) fn all_acked(&self) -> bool {
        self.sent
            .iter()
            .filter(|(sender, _)| !self.left.contains(*sender))
            .all(|(sender, n)| self.acked.get(sender).is_some_and(|a| a.len() as u64 >= *n))
    }

    /// Whether `reader` has every acknowledged one (the step may end).
    pub(super) fn complete(&self, reader: &str) -> bool {
        let by_sender = self.got.get(reader);
        self.acked.iter().all(|(sender, acked)| {
            let got = by_sender.and_then(|m| m.get(sender));
            acked.iter().all(|s| got.is_some_and(|g| g.contains(s)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(acked: &[u64], got: &[u64]) -> ManyTally {
        let mut t = ManyTally::default();
        t.sent.insert("p".into(), acked.len() as u64);
        t.acked.insert("p".into(), acked.iter().copied().collect());
        t.got
            .entry("r".into())
            .or_default()
            .insert("p".into(), got.to_vec());
        t
    }

    #[test]
    fn every_acknowledged_one_once_in_order_is_fine() {
        assert_eq!(
            tally(&[0, 1, 2], &[0, 1, 2]).problems(),
            Vec::<String>::new()
        );
        // What was not acknowledged may arrive or not.
        assert_eq!(tally(&[0, 2], &[0, 1, 2]).problems(), Vec::<String>::new());
    }

    #[test]
    fn a_missing_a_duplicate_and_a_reordering_each_break_the_promise() {
        assert_eq!(
            tally(&[0, 1, 2], &[0, 2]).problems(),
            vec!["r missed 1 of p's 3 acknowledged, e.g. [1]"]
        );
        assert_eq!(
            tally(&[0, 1], &[0, 1, 1]).problems(),
            vec!["r got 1 of p's more than once"]
        );
        assert_eq!(
            tally(&[0, 1, 2], &[0, 2, 1]).problems(),
            vec!["r got p's 1 after 2"]
        );
        // A reader that left early is held to order and uniqueness only.
        let mut t = tally(&[0, 1, 2], &[0]);
        t.left.insert("r".into());
        assert_eq!(t.problems(), Vec::<String>::new());
        let mut t = tally(&[0, 1, 2], &[1, 0]);
        t.left.insert("r".into());
        assert_eq!(t.problems(), vec!["r got p's 0 after 1"]);
    }
}
