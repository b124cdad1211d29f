//! The copies of one message delivered to several resources of an account (RFC 6121 §8.5.2.1.1): which copy, if any, goes back to the router when sessions end without acknowledging theirs.
//!
//! A message to a bare JID reaches every resource of top priority. When a
//! session ends with its copy unacknowledged (XEP-0198), the copy used to be
//! routed again — to the account's other resources, which already hold one:
//! with N detached sessions one message became 2^(N-1). Now each copy is a
//! [`Copy`] of one group: a copy acknowledged (or written to a session
//! without acknowledgements) marks the message delivered, and a copy given up
//! is routed again only when no other copy was delivered or is still held by
//! a session — the last one standing, so the message is routed once.

use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Group {
    /// Copies held by sessions, neither delivered nor given up.
    outstanding: usize,
    delivered: bool,
}

/// One copy of a message delivered to several sessions.
#[derive(Debug)]
pub struct Copy {
    group: Arc<Mutex<Group>>,
    done: bool,
}

/// `n` copies of one message.
pub fn copies(n: usize) -> Vec<Copy> {
    let group = Arc::new(Mutex::new(Group {
        outstanding: n,
        delivered: false,
    }));
    (0..n)
        .map(|_| Copy {
            group: group.clone(),
            done: false,
        })
        .collect()
}

impl Copy {
    fn settle(&mut self, delivered: bool) -> Group {
        let mut g = self.group.lock().unwrap_or_else(|p| p.into_inner());
        if !self.done {
            self.done = true;
            g.outstanding = g.outstanding.saturating_sub(1);
        }
        g.delivered |= delivered;
        Group {
            outstanding: g.outstanding,
            delivered: g.delivered,
        }
    }

    /// This copy reached its client.
    pub fn delivered(mut self) {
        self.settle(true);
    }

    /// This copy will not reach its client: true when it must be routed
    /// again (no other copy was delivered, none is still held).
    pub fn given_up(mut self) -> bool {
        let g = self.settle(false);
        !g.delivered && g.outstanding == 0
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        self.settle(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_copy_given_up_is_routed_again() {
        let mut c = copies(3);
        let (a, b, d) = (c.remove(0), c.remove(0), c.remove(0));
        assert!(!a.given_up());
        assert!(!b.given_up());
        assert!(d.given_up());
    }

    #[test]
    fn a_delivered_copy_means_no_other_is_routed_again() {
        let mut c = copies(3);
        let (a, b, d) = (c.remove(0), c.remove(0), c.remove(0));
        assert!(!a.given_up());
        b.delivered();
        assert!(!d.given_up());
    }

    #[test]
    fn a_copy_lost_with_its_session_counts_as_given_up() {
        let mut c = copies(2);
        let (a, b) = (c.remove(0), c.remove(0));
        drop(a);
        assert!(b.given_up());
        assert!(copies(1).pop().unwrap().given_up());
    }
}
