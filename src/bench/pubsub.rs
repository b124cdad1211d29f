//! `bench pubsub`: one publisher and N subscribers (on the same server, or on another over s2s) of a fresh XEP-0060 node; items published with a window in flight, each carrying its sequence number and send time; items acknowledged per second, notifications delivered per second, fan-out latency, losses and duplicates. Standard XEP-0060 only, so it runs unchanged against Prosody and ejabberd.

use super::conn::{Conn, Target, Writer};
use super::load::login_range;
use super::wire::{request, send, Stanzas};
use super::{percentiles, Latency};
use intercloud_actors::element::Element;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const NS_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const NS_BENCH: &str = "urn:intercloud:bench";
const WAIT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Clone)]
pub struct PubsubArgs {
    /// The publisher's server (it hosts the service).
    pub server: Target,
    /// The subscribers' server when it is another (s2s); None: the same.
    pub peer: Option<Target>,
    /// The pubsub service's JID (e.g. `pubsub.<domain>`).
    pub service: String,
    pub subscribers: usize,
    pub items: u64,
    /// Publishes in flight (sent, not yet acknowledged).
    pub window: u64,
    pub password: String,
    pub register: bool,
    pub concurrency: usize,
    /// How long to wait for the last notifications.
    pub drain: Duration,
}

#[derive(Debug, Serialize)]
pub struct PubsubReport {
    pub mode: String,
    pub server: String,
    pub subscriber_server: Option<String>,
    pub service: String,
    pub node: String,
    /// Subscribers that logged in and subscribed.
    pub subscribers: usize,
    pub login_errors: usize,
    pub items: u64,
    pub published: u64,
    pub publish_errors: u64,
    pub publish_secs: f64,
    pub published_per_sec: f64,
    /// published × subscribers.
    pub expected: u64,
    pub notified: u64,
    pub duplicates: u64,
    pub lost: u64,
    pub notify_secs: f64,
    pub notifications_per_sec: f64,
    pub latency: Latency,
    pub first_error: Option<String>,
}

struct Shared {
    t0: Instant,
    /// Publishing is over (acknowledged or failed, every one).
    stop: AtomicBool,
    acked: AtomicU64,
    failed: AtomicU64,
    wake: Notify,
    /// Microseconds since t0 of the last acknowledgement and the last notification.
    last_ack: AtomicU64,
    last_note: AtomicU64,
}

fn now_us(sh: &Shared) -> u64 {
    sh.t0.elapsed().as_micros() as u64
}

/// The sequence number and send time a notification carries.
fn bench_item(m: &Element) -> Option<(u64, u64)> {
    let text = m
        .get_child("event", NS_EVENT)?
        .get_child("items", NS_EVENT)?
        .get_child("item", NS_EVENT)?
        .child_text("entry", NS_BENCH)?;
    let mut it = text.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    latencies_us: Vec<u32>,
    got: u64,
    duplicates: u64,
    error: Option<String>,
}

async fn subscriber(mut s: Stanzas, items: u64, sh: Arc<Shared>, drain: Duration) -> Seen {
    let mut seen = Seen::default();
    let mut bits = super::SeqSet::new(items);
    let mut stop_at = None;
    while seen.got < items {
        if sh.stop.load(Ordering::Relaxed) {
            let at = *stop_at.get_or_insert_with(|| Instant::now() + drain);
            if Instant::now() >= at {
                break;
            }
        }
        let m = match s.next(Duration::from_millis(50)).await {
            Ok(Some(m)) if m.name == "message" => m,
            Ok(_) => continue,
            Err(e) => {
                seen.error = Some(e);
                break;
            }
        };
        let Some((seq, t)) = bench_item(&m) else {
            continue;
        };
        if seq >= items {
            continue;
        }
        if !bits.insert(seq) {
            seen.duplicates += 1;
            continue;
        }
        seen.got += 1;
        let now = now_us(&sh);
        seen.latencies_us
            .push(now.saturating_sub(t).min(u32::MAX as u64) as u32);
        sh.last_note.fetch_max(now, Ordering::Relaxed);
    }
    seen
}

/// Counts the publisher's acknowledgements; returns its stanzas and the first error.
async fn acknowledgements(
    mut s: Stanzas,
    items: u64,
    sh: Arc<Shared>,
) -> (Stanzas, Option<String>) {
    let mut first_error = None;
    while sh.acked.load(Ordering::Relaxed) + sh.failed.load(Ordering::Relaxed) < items {
        let e = match s.next(WAIT).await {
            Ok(Some(e)) => e,
            Ok(None) => {
                first_error.get_or_insert_with(|| "publishes went unanswered".to_string());
                break;
            }
            Err(e) => {
                first_error.get_or_insert(e);
                break;
            }
        };
        if e.name != "iq" || !e.get_attr("id").is_some_and(|i| i.starts_with("p-")) {
            continue;
        }
        if e.get_attr("type") == Some("result") {
            sh.acked.fetch_add(1, Ordering::Relaxed);
            sh.last_ack.fetch_max(now_us(&sh), Ordering::Relaxed);
        } else {
            sh.failed.fetch_add(1, Ordering::Relaxed);
            first_error.get_or_insert_with(|| e.to_xml());
        }
        sh.wake.notify_one();
    }
    sh.stop.store(true, Ordering::Relaxed);
    (s, first_error)
}

async fn publish_all(mut w: Writer, a: &PubsubArgs, node: &str, sh: &Shared) -> Writer {
    let mut seq = 0u64;
    let mut out = String::with_capacity(16 * 1024);
    while seq < a.items && !sh.stop.load(Ordering::Relaxed) {
        let done = sh.acked.load(Ordering::Relaxed) + sh.failed.load(Ordering::Relaxed);
        let inflight = seq - done;
        if inflight >= a.window {
            let _ = tokio::time::timeout(Duration::from_millis(20), sh.wake.notified()).await;
            continue;
        }
        let n = (a.window - inflight).min(32).min(a.items - seq);
        out.clear();
        let t = now_us(sh);
        for k in seq..seq + n {
            out.push_str(&format!(
                "<iq type='set' id='p-{k}' to='{svc}'><pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='i{k}'><entry xmlns='{NS_BENCH}'>{k} {t}</entry></item></publish></pubsub></iq>",
                svc = a.service
            ));
        }
        if send(&mut w, &out).await.is_err() {
            break;
        }
        seq += n;
    }
    w
}

fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// Runs the benchmark; `progress` gets a line at each phase.
pub async fn run(a: PubsubArgs, progress: &dyn Fn(&str)) -> Result<PubsubReport, String> {
    let n = a.subscribers.max(1);
    let subs_at = a.peer.clone().unwrap_or_else(|| a.server.clone());
    progress(&format!("logging in the publisher and {n} subscribers"));
    let (mut publisher, mut login_errors, _) =
        login_range(&a.server, 0..1, &a.password, a.register, a.concurrency).await;
    let Some(Conn {
        reader,
        decoder,
        writer: mut pw,
        ..
    }) = publisher.pop().flatten()
    else {
        return Err(format!(
            "the publisher could not log in: {}",
            login_errors.join("; ")
        ));
    };
    let mut ps = Stanzas::new(reader, decoder);
    let (subs, errors, _) =
        login_range(&subs_at, 1..n + 1, &a.password, a.register, a.concurrency).await;
    login_errors.extend(errors);
    let node = format!("bench-{:08x}", rand::random::<u32>());
    request(
        &mut pw,
        &mut ps,
        "create",
        &format!(
            "<iq type='set' id='create' to='{}'><pubsub xmlns='{NS_PUBSUB}'><create node='{node}'/></pubsub></iq>",
            a.service
        ),
        WAIT,
    )
    .await
    .map_err(|e| format!("creating node {node} at {}: {e}", a.service))?;
    progress(&format!("subscribing {n} subscribers to {node}"));
    let mut subscribing = Vec::new();
    for c in subs.into_iter().flatten() {
        let (svc, node) = (a.service.clone(), node.clone());
        subscribing.push(tokio::spawn(async move {
            let mut s = Stanzas::new(c.reader, c.decoder);
            let mut w = c.writer;
            let iq = format!(
                "<iq type='set' id='sub' to='{svc}'><pubsub xmlns='{NS_PUBSUB}'><subscribe node='{node}' jid='{}'/></pubsub></iq>",
                bare(&c.jid)
            );
            request(&mut w, &mut s, "sub", &iq, WAIT).await.map(|_| (s, w))
        }));
    }
    let mut subscribed = Vec::new();
    let mut first_error = login_errors.first().cloned();
    for t in subscribing {
        match t.await {
            Ok(Ok(sw)) => subscribed.push(sw),
            Ok(Err(e)) => {
                first_error.get_or_insert(format!("subscribe: {e}"));
            }
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let sh = Arc::new(Shared {
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        wake: Notify::new(),
        last_ack: AtomicU64::new(0),
        last_note: AtomicU64::new(0),
    });
    let mut sub_writers = Vec::new();
    let mut readers = Vec::new();
    for (s, w) in subscribed {
        readers.push(tokio::spawn(subscriber(s, a.items, sh.clone(), a.drain)));
        sub_writers.push(w);
    }
    let count = readers.len();
    progress(&format!(
        "publishing {} items to {count} subscribers",
        a.items
    ));
    let acks = tokio::spawn(acknowledgements(ps, a.items, sh.clone()));
    let mut pw = publish_all(pw, &a, &node, &sh).await;
    let (mut ps, ack_error) = acks.await.map_err(|e| e.to_string())?;
    if let Some(e) = ack_error {
        first_error.get_or_insert(e);
    }
    progress("all published; waiting for the last notifications");
    sh.stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let (mut notified, mut duplicates) = (0, 0);
    for r in readers {
        if let Ok(seen) = r.await {
            lat.extend(seen.latencies_us);
            notified += seen.got;
            duplicates += seen.duplicates;
            if let Some(e) = seen.error {
                first_error.get_or_insert(e);
            }
        }
    }
    let delete = format!(
        "<iq type='set' id='delete' to='{}'><pubsub xmlns='{NS_OWNER}'><delete node='{node}'/></pubsub></iq>",
        a.service
    );
    let _ = request(&mut pw, &mut ps, "delete", &delete, WAIT).await;
    for mut w in sub_writers.into_iter().chain([pw]) {
        let _ = send(&mut w, "</stream:stream>").await;
    }
    let published = sh.acked.load(Ordering::Relaxed);
    let publish_secs = sh.last_ack.load(Ordering::Relaxed) as f64 / 1e6;
    let notify_secs = sh.last_note.load(Ordering::Relaxed) as f64 / 1e6;
    let expected = published * count as u64;
    Ok(PubsubReport {
        mode: if a.peer.is_some() {
            "pubsub-s2s"
        } else {
            "pubsub"
        }
        .into(),
        server: a.server.addr.to_string(),
        subscriber_server: a.peer.as_ref().map(|p| p.addr.to_string()),
        service: a.service.clone(),
        node,
        subscribers: count,
        login_errors: login_errors.len(),
        items: a.items,
        published,
        publish_errors: sh.failed.load(Ordering::Relaxed),
        publish_secs,
        published_per_sec: published as f64 / publish_secs.max(1e-9),
        expected,
        notified,
        duplicates,
        lost: expected.saturating_sub(notified),
        notify_secs,
        notifications_per_sec: notified as f64 / notify_secs.max(1e-9),
        latency: percentiles(&mut lat),
        first_error,
    })
}
