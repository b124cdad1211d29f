//! XEP-0198 Stream Management: stanza counters, the queue of unacknowledged stanzas, and the nonzas that carry them.

use crate::element::Element;
use std::collections::VecDeque;

pub const NS_SM: &str = "urn:xmpp:sm:3";

/// A stanza sent but not yet acknowledged.
#[derive(Debug)]
pub enum Unacked {
    Stanza(Element),
    /// One of the copies of a message sent to several resources.
    Copy(Element, crate::copies::Copy),
    /// An offline message: as written (with its delay stamp) and as stored.
    Offline {
        xml: String,
        stored: String,
    },
}

impl Unacked {
    /// About the bytes it holds (what the byte bound counts).
    pub fn weight(&self) -> usize {
        match self {
            Unacked::Stanza(e) | Unacked::Copy(e, _) => e.weight(),
            Unacked::Offline { xml, stored } => xml.len() + stored.len(),
        }
    }
}

/// Why an acknowledgement was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("peer acknowledged {h} stanzas but only {sent} were sent")]
pub struct AckError {
    pub h: u32,
    pub sent: u32,
}

/// The state of one managed stream (either direction of counting).
#[derive(Debug)]
pub struct StreamManagement {
    pub id: String,
    pub resumable: bool,
    /// Stanzas received from the peer and handled.
    pub h_in: u32,
    /// Stanzas sent to the peer.
    h_out: u32,
    unacked: VecDeque<Unacked>,
    /// The weight of what is unacknowledged.
    unacked_bytes: usize,
    since_request: u32,
}

impl StreamManagement {
    pub fn new(resumable: bool) -> StreamManagement {
        StreamManagement {
            id: format!("{:032x}", rand::random::<u128>()),
            resumable,
            h_in: 0,
            h_out: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            since_request: 0,
        }
    }

    /// Records a stanza sent; true when it is time to ask for an ack.
    pub fn sent(&mut self, item: Unacked, every: u32) -> bool {
        self.h_out = self.h_out.wrapping_add(1);
        self.unacked_bytes += item.weight();
        self.unacked.push_back(item);
        self.since_request += 1;
        if self.since_request >= every.max(1) {
            self.since_request = 0;
            true
        } else {
            false
        }
    }

    /// Whether stanzas were sent since the last ack request.
    pub fn wants_request(&mut self) -> bool {
        if self.since_request > 0 && !self.unacked.is_empty() {
            self.since_request = 0;
            true
        } else {
            false
        }
    }

    /// Applies the peer's count `h` (modulo 2^32): drops what it acknowledged.
    pub fn ack(&mut self, h: u32) -> Result<(), AckError> {
        let acked_before = self.h_out.wrapping_sub(self.unacked.len() as u32);
        let newly = h.wrapping_sub(acked_before);
        if newly as usize > self.unacked.len() {
            return Err(AckError {
                h,
                sent: self.h_out,
            });
        }
        for _ in 0..newly {
            let Some(u) = self.unacked.pop_front() else {
                break;
            };
            self.unacked_bytes -= u.weight();
            if let Unacked::Copy(_, c) = u {
                c.delivered();
            }
        }
        Ok(())
    }

    pub fn unacked(&self) -> impl Iterator<Item = &Unacked> {
        self.unacked.iter()
    }

    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// The bytes held for the peer until it acknowledges them.
    pub fn unacked_bytes(&self) -> usize {
        self.unacked_bytes
    }

    pub fn take_unacked(&mut self) -> Vec<Unacked> {
        self.unacked_bytes = 0;
        self.unacked.drain(..).collect()
    }

    /// Counts a stanza received.
    pub fn received(&mut self) {
        self.h_in = self.h_in.wrapping_add(1);
    }
}

/// `<enabled/>`.
pub fn enabled(sm: &StreamManagement, max: u64) -> Element {
    let mut e = Element::new("enabled", NS_SM);
    if sm.resumable {
        e = e
            .attr("id", sm.id.clone())
            .attr("resume", "true")
            .attr("max", max.to_string());
    }
    e
}

/// `<a h='…'/>`.
pub fn answer(h: u32) -> Element {
    Element::new("a", NS_SM).attr("h", h.to_string())
}

/// `<r/>`.
pub fn request() -> Element {
    Element::new("r", NS_SM)
}

/// `<failed/>` with a stanza error condition.
pub fn failed(condition: &str) -> Element {
    Element::new("failed", NS_SM).child(Element::new(condition, crate::stanza::NS_STANZAS))
}

/// The `h` attribute of an `<a/>` or `<resume/>`.
pub fn h_of(e: &Element) -> Option<u32> {
    e.get_attr("h")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(i: u32) -> Unacked {
        Unacked::Stanza(Element::new("message", "jabber:client").attr("id", i.to_string()))
    }

    #[test]
    fn counts_and_acks_with_wraparound() {
        let mut sm = StreamManagement::new(true);
        sm.h_out = u32::MAX - 1;
        for i in 0..4 {
            sm.sent(st(i), 100);
        }
        assert_eq!(sm.unacked_len(), 4);
        let one = st(0).weight();
        assert_eq!(sm.unacked_bytes(), 4 * one);
        // h counts modulo 2^32: two acknowledged means h = MAX + 1 = 0... minus offsets.
        sm.ack(u32::MAX).unwrap();
        assert_eq!(sm.unacked_len(), 3);
        sm.ack(1).unwrap();
        assert_eq!(sm.unacked_len(), 1);
        assert!(sm.ack(5).is_err());
        sm.ack(2).unwrap();
        assert_eq!(sm.unacked_len(), 0);
        assert_eq!(sm.unacked_bytes(), 0);
        // Acking the same count again changes nothing.
        sm.ack(2).unwrap();
    }
}
