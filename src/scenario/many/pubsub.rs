//! The publish-subscribe steps of a scenario: subscribing clouds' users to a node at an exchange, and publishing to it while they read.

use super::*;
use crate::xmpp::codec::Event;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const NS_ENTRY: &str = "urn:intercloud:scenario";

/// The `subscribe` step: the exchange's user makes the node (open to all,
/// anyone may publish) if it is not there, and each cloud's user subscribes.
pub async fn subscribe(
    net: &Net,
    exchange: &Member,
    node: &str,
    clouds: &[Member],
) -> Result<String, String> {
    let svc = format!("pubsub.{}", exchange.domain);
    let mut owner = login(net, exchange, "owner").await?;
    let create = format!(
        "<iq type='set' id='create' to='{svc}'><pubsub xmlns='{NS_PUBSUB}'><create node='{node}'/><configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>open</value></field><field var='pubsub#publish_model'><value>open</value></field></x></configure></pubsub></iq>"
    );
    match request(&mut owner, "create", &create).await {
        Ok(_) => {}
        Err(c) if c == "conflict" => {}
        Err(e) => return Err(format!("creating {node} at {svc}: {e}")),
    }
    let _ = owner.send_raw("</stream:stream>").await;
    for m in clouds {
        let mut c = login(net, m, "subscribe").await?;
        let iq = format!(
            "<iq type='set' id='sub' to='{svc}'><pubsub xmlns='{NS_PUBSUB}'><subscribe node='{node}' jid='{}@{}'/></pubsub></iq>",
            m.demo_user, m.domain
        );
        request(&mut c, "sub", &iq)
            .await
            .map_err(|e| format!("{} subscribing: {e}", m.domain))?;
        let _ = c.send_raw("</stream:stream>").await;
    }
    Ok(format!("{} subscribed to {node} at {svc}", clouds.len()))
}

/// Reads `c` into the tally as `reader` until it has every acknowledged one
/// (once the senders settled) or `within` after they finished; `parse`
/// turns a stanza into (sender, sequence), and `gone` says the reader was
/// removed.
async fn read(
    mut c: Client,
    reader: String,
    tally: Arc<Mutex<ManyTally>>,
    clock: Arc<Clock>,
    within: Duration,
    parse: impl Fn(&Element) -> Option<(String, u64)>,
    gone: impl Fn(&Element) -> bool,
) -> Client {
    loop {
        let done = clock.done_at.lock().ok().and_then(|d| *d);
        let settled = clock.settled.load(Ordering::SeqCst);
        let complete = tally.lock().map(|t| t.complete(&reader)).unwrap_or(true);
        if (settled && complete) || done.is_some_and(|d| d.elapsed() >= within) {
            return c;
        }
        match c.next(Duration::from_millis(300)).await {
            Ok(Event::Stanza(e)) => {
                let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                if gone(&e) {
                    t.left.insert(reader.clone());
                } else if let Some((sender, seq)) = parse(&e) {
                    t.got
                        .entry(reader.clone())
                        .or_default()
                        .entry(sender)
                        .or_default()
                        .push(seq);
                }
            }
            Ok(_) => return c,
            Err(e) if timeout(&e) => {}
            Err(e) => {
                tracing::warn!(%reader, error = %e, "many-to-many reader ended");
                tally
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .left
                    .insert(reader.clone());
                return c;
            }
        }
    }
}

/// The `publish_item` step: the subscribed clouds' users are online while
/// `from`'s user publishes `count` items at `rate`; each acknowledged item
/// (its iq result) must reach every subscriber, once, in publish order.
#[allow(clippy::too_many_arguments)]
pub async fn publish_items(
    net: &Net,
    exchange: &Member,
    node: &str,
    from: &Member,
    subscribers: &[Member],
    count: u64,
    rate: f64,
    within: Duration,
) -> Result<ManyTally, String> {
    let svc = format!("pubsub.{}", exchange.domain);
    let tag = format!("i{:x}-", rand::random::<u32>());
    let tally = Arc::new(Mutex::new(ManyTally::default()));
    let clock = Arc::new(Clock::default());
    let publisher = from.domain.clone();
    let mut readers = Vec::new();
    for m in subscribers {
        let c = login(net, m, "feed").await?;
        tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .got
            .insert(m.domain.clone(), BTreeMap::new());
        let (svc, node, tag, publisher) = (
            svc.clone(),
            node.to_string(),
            tag.clone(),
            publisher.clone(),
        );
        readers.push(tokio::spawn(read(
            c,
            m.domain.clone(),
            tally.clone(),
            clock.clone(),
            within,
            move |e| {
                if e.name != "message" || e.get_attr("from") != Some(svc.as_str()) {
                    return None;
                }
                let items = e
                    .get_child("event", NS_EVENT)?
                    .get_child("items", NS_EVENT)?;
                if items.get_attr("node") != Some(node.as_str()) {
                    return None;
                }
                let seq = items
                    .get_child("item", NS_EVENT)?
                    .get_attr("id")?
                    .strip_prefix(tag.as_str())?
                    .parse()
                    .ok()?;
                Some((publisher.clone(), seq))
            },
            |_| false,
        )));
    }
    let mut tx = login(net, from, "publish").await?;
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut tick = tokio::time::interval(gap);
    let mut sent = 0;
    for i in 0..count {
        tick.tick().await;
        let xml = format!(
            "<iq type='set' id='{tag}{i}' to='{svc}'><pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='{tag}{i}'><entry xmlns='{NS_ENTRY}'>{i}</entry></item></publish></pubsub></iq>"
        );
        if tx.send_raw(&xml).await.is_err() {
            break;
        }
        sent += 1;
    }
    tally
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .sent
        .insert(publisher.clone(), sent);
    *clock.done_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    // The answers: a result acknowledges an item, an error refuses it.
    let deadline = Instant::now() + within;
    let mut answered = 0;
    while answered < sent && Instant::now() < deadline {
        match tx.next(Duration::from_millis(300)).await {
            Ok(Event::Stanza(e)) if e.name == "iq" => {
                let Some(seq) = e
                    .get_attr("id")
                    .and_then(|i| i.strip_prefix(tag.as_str()))
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    continue;
                };
                answered += 1;
                if e.get_attr("type") == Some("result") {
                    tally
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .acked
                        .entry(publisher.clone())
                        .or_default()
                        .insert(seq);
                }
            }
            Ok(Event::Stanza(_)) => {}
            Ok(_) => break,
            Err(e) if timeout(&e) => {}
            Err(_) => break,
        }
    }
    tally
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .acked
        .entry(publisher)
        .or_default();
    clock.settled.store(true, Ordering::SeqCst);
    let _ = tx.send_raw("</stream:stream>").await;
    for r in readers {
        if let Ok(mut c) = r.await {
            let _ = c.send_raw("</stream:stream>").await;
        }
    }
    let t = tally.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(t)
}
