//! The queue from a session actor to the task that writes its socket, bounded by stanzas and by bytes.
//!
//! A client that stops reading must not make the node hold what it is sent
//! without end: the queue holds at most `stanzas` items and `bytes` bytes
//! (counted when queued, released when written), and the session ends the
//! client as too slow when either is full.

use crate::element::Element;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a session hands to the wire layer.
#[derive(Debug)]
pub enum Outbound {
    /// Boxed: a session's queue holds many of these, most of them small.
    Stanza(Box<Element>),
    /// Already serialised stanza (e.g. from offline storage).
    Raw(String),
    /// Send this stream error, then close.
    Error {
        condition: &'static str,
        text: Option<String>,
    },
    /// Close the stream normally.
    Close,
}

impl Outbound {
    pub fn stanza(e: Element) -> Outbound {
        Outbound::Stanza(Box::new(e))
    }

    /// About the bytes this takes once written (what the byte bound counts).
    pub fn weight(&self) -> usize {
        match self {
            Outbound::Stanza(e) => e.weight(),
            Outbound::Raw(s) => s.len(),
            Outbound::Error { text, .. } => 64 + text.as_ref().map_or(0, String::len),
            Outbound::Close => 16,
        }
    }
}

/// Why an item was not queued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0} stanzas are queued to the client")]
    Stanzas(usize),
    #[error("{0} bytes are queued to the client")]
    Bytes(usize),
    #[error("the connection is gone")]
    Closed,
}

/// The session's end: queues what the writer is to send.
#[derive(Clone, Debug)]
pub struct Outbox {
    /// Each item with its weight, computed once when it is queued.
    tx: mpsc::Sender<(Outbound, usize)>,
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The writer's end.
#[derive(Debug)]
pub struct OutboxReader {
    rx: mpsc::Receiver<(Outbound, usize)>,
    queued: Arc<AtomicUsize>,
}

/// A queue of at most `stanzas` items and `max_bytes` bytes.
pub fn outbox(stanzas: usize, max_bytes: usize) -> (Outbox, OutboxReader) {
    let (tx, rx) = mpsc::channel(stanzas.max(1));
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            queued: queued.clone(),
            max_bytes,
        },
        OutboxReader { rx, queued },
    )
}

impl Outbox {
    /// Queues `o` unless a bound is reached. A stream error or close is
    /// always let through the byte bound: it is small and it ends the queue.
    pub fn try_send(&self, o: Outbound) -> Result<(), Refused> {
        let w = o.weight();
        let ending = matches!(o, Outbound::Error { .. } | Outbound::Close);
        let before = self.queued.fetch_add(w, Ordering::Relaxed);
        if !ending && before > 0 && before + w > self.max_bytes {
            self.queued.fetch_sub(w, Ordering::Relaxed);
            return Err(Refused::Bytes(before));
        }
        self.tx.try_send((o, w)).map_err(|e| {
            self.queued.fetch_sub(w, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => Refused::Stanzas(self.tx.max_capacity()),
                mpsc::error::TrySendError::Closed(_) => Refused::Closed,
            }
        })
    }

    /// Queues `o`, waiting for room among the stanzas (the reading task's
    /// own replies: bounded by what it reads).
    pub async fn send(&self, o: Outbound) -> Result<(), Refused> {
        let w = o.weight();
        self.queued.fetch_add(w, Ordering::Relaxed);
        self.tx.send((o, w)).await.map_err(|_| {
            self.queued.fetch_sub(w, Ordering::Relaxed);
            Refused::Closed
        })
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

impl OutboxReader {
    /// The next item and its weight; its bytes stay counted until
    /// [`OutboxReader::written`].
    pub async fn recv(&mut self) -> Option<(Outbound, usize)> {
        self.rx.recv().await
    }

    pub fn try_recv(&mut self) -> Option<(Outbound, usize)> {
        self.rx.try_recv().ok()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Items taken out weighing `bytes` were written (or dropped).
    pub fn written(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// No more items are taken; what is queued is dropped with the reader.
    pub fn close(&mut self) {
        self.rx.close();
    }
}

impl Drop for OutboxReader {
    fn drop(&mut self) {
        self.rx.close();
        let mut left = 0;
        while let Ok((_, w)) = self.rx.try_recv() {
            left += w;
        }
        self.written(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::NS_CLIENT;

    fn body(n: usize) -> Outbound {
        Outbound::stanza(
            Element::new("message", NS_CLIENT)
                .child(Element::new("body", NS_CLIENT).text("x".repeat(n))),
        )
    }

    #[test]
    fn bounded_by_bytes_then_released_as_written() {
        let (tx, mut rx) = outbox(100, 10_000);
        tx.try_send(body(4_000)).unwrap();
        tx.try_send(body(4_000)).unwrap();
        assert!(matches!(tx.try_send(body(4_000)), Err(Refused::Bytes(_))));
        // A stream error still goes through.
        tx.try_send(Outbound::Error {
            condition: "policy-violation",
            text: None,
        })
        .unwrap();
        let (_, w) = rx.try_recv().unwrap();
        rx.written(w);
        tx.try_send(body(4_000)).unwrap();
        drop(rx);
        assert_eq!(tx.queued_bytes(), 0);
        assert_eq!(tx.try_send(body(1)), Err(Refused::Closed));
    }

    #[test]
    fn one_stanza_larger_than_the_bound_passes_an_empty_queue() {
        let (tx, _rx) = outbox(100, 1_000);
        tx.try_send(body(5_000)).unwrap();
        assert!(matches!(tx.try_send(body(1)), Err(Refused::Bytes(_))));
    }

    #[test]
    fn bounded_by_stanzas() {
        let (tx, _rx) = outbox(2, usize::MAX);
        tx.try_send(body(1)).unwrap();
        tx.try_send(body(1)).unwrap();
        assert_eq!(tx.try_send(body(1)), Err(Refused::Stanzas(2)));
    }
}
