//! What the many-to-many benchmarks share: reading whole stanzas from a load connection with a bound on the wait, writing raw XML, and a request that waits for its answer.

use super::conn::{Reader, Writer};
use crate::xmpp::codec::{Decoder, Event};
use intercloud_actors::element::Element;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The stanzas of one connection, as they come.
pub struct Stanzas {
    r: Reader,
    d: Decoder,
    buf: Vec<u8>,
    queue: VecDeque<Element>,
}

impl Stanzas {
    pub fn new(r: Reader, d: Decoder) -> Stanzas {
        Stanzas {
            r,
            d,
            buf: vec![0u8; 64 * 1024],
            queue: VecDeque::new(),
        }
    }

    /// The next stanza; None when nothing came within `wait`; an error when
    /// the stream ended or broke.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<Element>, String> {
        let until = Instant::now() + wait;
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Ok(Some(e));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let n = match tokio::time::timeout(left, self.r.read(&mut self.buf)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => return Err("connection closed by the server".into()),
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(n)) => n,
            };
            self.d.feed(&self.buf[..n]);
            loop {
                match self.d.next_event() {
                    Ok(Some(Event::Stanza(e))) if e.name == "error" => {
                        return Err(format!("stream error: {}", e.to_xml()))
                    }
                    Ok(Some(Event::Stanza(e))) => self.queue.push_back(e),
                    Ok(Some(Event::StreamEnd)) => return Err("stream ended".into()),
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
    }

    /// Waits up to `wait` for a stanza `pred` accepts; those before it are dropped.
    pub async fn until(
        &mut self,
        wait: Duration,
        pred: impl Fn(&Element) -> bool,
    ) -> Result<Element, String> {
        let end = Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next(left).await? {
                Some(e) if pred(&e) => return Ok(e),
                Some(_) => {}
                None => return Err(format!("nothing awaited came within {wait:?}")),
            }
        }
    }
}

/// Writes raw XML.
pub async fn send(w: &mut Writer, xml: &str) -> Result<(), String> {
    w.write_all(xml.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    w.flush().await.map_err(|e| e.to_string())
}

/// Sends an iq and waits for its answer; Err with the error condition (or why not).
pub async fn request(
    w: &mut Writer,
    s: &mut Stanzas,
    id: &str,
    iq: &str,
    wait: Duration,
) -> Result<Element, String> {
    send(w, iq).await?;
    let r = s
        .until(wait, |e| e.name == "iq" && e.get_attr("id") == Some(id))
        .await?;
    if r.get_attr("type") == Some("error") {
        let condition = r
            .get_child("error", intercloud_actors::element::NS_CLIENT)
            .and_then(|x| x.first_element())
            .map(|c| c.name.clone())
            .unwrap_or_else(|| r.to_xml());
        return Err(condition);
    }
    Ok(r)
}
