//! Message streams of a scenario: a sender with XEP-0198 acknowledgements and a receiver, both real XMPP clients of their clouds; what was acknowledged, delivered, bounced and lost.

use crate::federation::Member;
use crate::net::Net;
use crate::xmpp::client::Client;
use crate::xmpp::codec::Event;
use intercloud_actors::element::Element;
use intercloud_actors::sm::NS_SM;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The outcome of one stream.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: u64,
    /// Acknowledged by the sender's server (XEP-0198 `h`).
    pub acked: u64,
    /// Sequence numbers that reached the receiver.
    pub delivered: BTreeSet<u64>,
    /// Sequence numbers that came back to the sender as errors.
    pub bounced: BTreeSet<u64>,
    /// Deliveries whose `from` was not the sender.
    pub bad_from: Vec<String>,
    /// Deliveries of a sequence number seen before (at-least-once).
    pub duplicates: u64,
}

impl Tally {
    /// Whether every acknowledged message arrived or came back.
    pub fn accounted(&self) -> bool {
        (0..self.acked).all(|i| self.delivered.contains(&i) || self.bounced.contains(&i))
    }

    /// Acknowledged messages that neither arrived nor came back.
    pub fn lost(&self) -> Vec<u64> {
        (0..self.acked)
            .filter(|i| !self.delivered.contains(i) && !self.bounced.contains(i))
            .collect()
    }

    /// What breaks the delivery promise: acknowledged messages lost, a
    /// delivery with another `from`, a message delivered more than once.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let lost = self.lost();
        if !lost.is_empty() {
            out.push(format!(
                "{} of {} acknowledged messages neither delivered nor bounced, e.g. sequence numbers {:?}",
                lost.len(),
                self.acked,
                &lost[..lost.len().min(10)]
            ));
        }
        if !self.bad_from.is_empty() {
            out.push(format!(
                "delivered with a from other than the sender: {:?}",
                &self.bad_from[..self.bad_from.len().min(10)]
            ));
        }
        if self.duplicates > 0 {
            out.push(format!(
                "{} deliveries of a message already delivered",
                self.duplicates
            ));
        }
        out
    }

    /// One line for the report.
    pub fn summary(&self) -> String {
        format!(
            "{} sent, {} acknowledged, {} delivered, {} bounced, {} duplicates",
            self.sent,
            self.acked,
            self.delivered.len(),
            self.bounced.len(),
            self.duplicates
        )
    }
}

pub(crate) fn addr(m: &Member) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], m.c2s_port))
}

pub(crate) fn pinned(m: &Member) -> Result<rustls::pki_types::CertificateDer<'static>, String> {
    crate::tls::load_certs(&m.dir.join("tls/cert.pem"))
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{}: no certificate", m.domain))
}

/// Logs in `m`'s demo user as `resource`.
pub(crate) async fn demo_login(net: &Net, m: &Member, resource: &str) -> Result<Client, String> {
    Client::login_on(
        net,
        addr(m),
        &m.domain,
        pinned(m)?,
        &m.demo_user,
        &m.demo_password,
        Some(resource),
    )
    .await
    .map_err(|e| format!("{} login: {e}", m.domain))
}

fn seq_of(e: &Element, tag: &str) -> Option<u64> {
    e.get_attr("id")?.strip_prefix(tag)?.parse().ok()
}

/// Streams `count` messages at `rate`/s from `from`'s demo user to `to`'s.
pub async fn stream(
    net: &Net,
    from: &Member,
    to: &Member,
    count: u64,
    rate: f64,
    within: Duration,
) -> Result<Tally, String> {
    let tag = format!("s{:x}-", rand::random::<u32>());
    let mut rx = Client::login_on(
        net,
        addr(to),
        &to.domain,
        pinned(to)?,
        &to.demo_user,
        &to.demo_password,
        Some("sink"),
    )
    .await
    .map_err(|e| format!("receiver login: {e}"))?;
    rx.send_raw("<presence/>")
        .await
        .map_err(|e| e.to_string())?;
    let mut tx = Client::login_on(
        net,
        addr(from),
        &from.domain,
        pinned(from)?,
        &from.demo_user,
        &from.demo_password,
        Some("source"),
    )
    .await
    .map_err(|e| format!("sender login: {e}"))?;
    tx.enable_sm()
        .await
        .map_err(|e| format!("sender XEP-0198: {e}"))?;
    let sender_jid = tx.jid.to_string();
    let dest = format!("{}@{}/sink", to.demo_user, to.domain);
    let done_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    // Set when the sender stops waiting for acknowledgements: until then an
    // acknowledgement may still arrive for a message the receiver has not
    // seen yet, so "every acknowledged one arrived" is not final.
    let settled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));

    let receiver = {
        let (done_at, tally, tag, sender_jid, settled) = (
            done_at.clone(),
            tally.clone(),
            tag.clone(),
            sender_jid.clone(),
            settled.clone(),
        );
        async move {
            loop {
                let done = done_at.lock().ok().and_then(|d| *d);
                let (all, accounted) = tally
                    .lock()
                    .map(|t| (t.delivered.len() as u64 >= count, t.accounted()))
                    .unwrap_or((true, true));
                let settled = settled.load(std::sync::atomic::Ordering::SeqCst);
                if all || (settled && accounted) {
                    break;
                }
                if done.map(|d| d.elapsed() >= within).unwrap_or(false) {
                    break;
                }
                match rx.next(Duration::from_millis(300)).await {
                    Ok(Event::Stanza(e)) if e.name == "message" => {
                        if let Some(i) = seq_of(&e, &tag) {
                            let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                            if e.get_attr("from") != Some(sender_jid.as_str()) {
                                t.bad_from
                                    .push(format!("{} claims {:?}", i, e.get_attr("from")));
                            }
                            if !t.delivered.insert(i) {
                                t.duplicates += 1;
                            }
                        }
                    }
                    Ok(Event::Stanza(_)) => {}
                    Ok(_) => break,
                    Err(crate::xmpp::client::ClientError::Wire(
                        crate::xmpp::stream::WireError::Timeout,
                    )) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "message stream receiver ended");
                        break;
                    }
                }
            }
        }
    };

    let sender = {
        let (done_at, tally, tag, settled) =
            (done_at.clone(), tally.clone(), tag.clone(), settled.clone());
        async move {
            let gap = Duration::from_secs_f64(1.0 / rate);
            let mut tick = tokio::time::interval(gap);
            let mut sent = 0u64;
            for i in 0..count {
                tick.tick().await;
                let mut xml = format!(
                    "<message to='{dest}' type='chat' id='{tag}{i}'><body>message {i} of {count}</body></message>"
                );
                if i % 20 == 19 || i + 1 == count {
                    xml.push_str("<r xmlns='urn:xmpp:sm:3'/>");
                }
                if tx.send_raw(&xml).await.is_err() {
                    break;
                }
                sent += 1;
                tally.lock().unwrap_or_else(|p| p.into_inner()).sent = sent;
            }
            let _ = tx.send_raw("<r xmlns='urn:xmpp:sm:3'/>").await;
            *done_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            // Acknowledgements and bounces, until every message sent is
            // acknowledged and every acknowledged one delivered or bounced.
            let deadline = Instant::now() + within;
            let mut handled_by_us = 0u32;
            while Instant::now() < deadline {
                if tally
                    .lock()
                    .map(|t| t.accounted() && t.acked >= sent)
                    .unwrap_or(true)
                {
                    break;
                }
                match tx.next(Duration::from_millis(300)).await {
                    Ok(Event::Stanza(e)) if e.ns == NS_SM && e.name == "a" => {
                        let h: u64 = e.get_attr("h").and_then(|h| h.parse().ok()).unwrap_or(0);
                        let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                        t.acked = t.acked.max(h.min(sent));
                    }
                    Ok(Event::Stanza(e)) if e.ns == NS_SM && e.name == "r" => {
                        let _ = tx
                            .send_raw(&format!("<a xmlns='{NS_SM}' h='{handled_by_us}'/>"))
                            .await;
                    }
                    Ok(Event::Stanza(e)) => {
                        handled_by_us = handled_by_us.wrapping_add(1);
                        if e.name == "message" && e.get_attr("type") == Some("error") {
                            if let Some(i) = seq_of(&e, &tag) {
                                tally
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .bounced
                                    .insert(i);
                            }
                        }
                    }
                    Ok(_) => break,
                    Err(crate::xmpp::client::ClientError::Wire(
                        crate::xmpp::stream::WireError::Timeout,
                    )) => {
                        let _ = tx.send_raw("<r xmlns='urn:xmpp:sm:3'/>").await;
                    }
                    Err(_) => break,
                }
            }
            settled.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    };
    tokio::join!(sender, receiver);
    let t = tally.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(acked: u64, delivered: &[u64], bounced: &[u64]) -> Tally {
        Tally {
            sent: acked,
            acked,
            delivered: delivered.iter().copied().collect(),
            bounced: bounced.iter().copied().collect(),
            ..Tally::default()
        }
    }

    #[test]
    fn every_acknowledged_message_delivered_or_bounced_once_is_fine() {
        assert_eq!(tally(4, &[0, 1, 3], &[2]).problems(), Vec::<String>::new());
    }

    #[test]
    fn a_lost_message_a_forged_from_and_a_duplicate_each_break_the_promise() {
        let t = tally(4, &[0, 3], &[2]);
        assert_eq!(t.lost(), vec![1]);
        assert_eq!(
            t.problems(),
            vec!["1 of 4 acknowledged messages neither delivered nor bounced, e.g. sequence numbers [1]"]
        );
        let mut t = tally(2, &[0, 1], &[]);
        t.bad_from.push("1 claims Some(\"x@y/z\")".into());
        assert_eq!(t.problems().len(), 1);
        let mut t = tally(2, &[0, 1], &[]);
        t.duplicates = 1;
        assert_eq!(
            t.problems(),
            vec!["1 deliveries of a message already delivered"]
        );
    }
}
