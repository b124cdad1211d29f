//! The link actor against a scripted dialer: no sockets; each dial takes
//! the next outcome from the script and hands the test its ends.
use super::*;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::{Cloud, Settings};
use std::sync::Mutex;

/// One established link as the test sees it: what the link writes, and
/// the notice the test gives when it ends.
struct Far {
    rx: mpsc::Receiver<Element>,
    closed: oneshot::Sender<Vec<Element>>,
}

#[derive(Clone, Default)]
struct Script {
    /// true: the dial succeeds; false: it fails (not found).
    outcomes: Arc<Mutex<VecDeque<bool>>>,
    dials: Arc<Mutex<u32>>,
    links: Arc<Mutex<Option<mpsc::UnboundedSender<Far>>>>,
}

impl Dialer for Script {
    fn dial(&self, _local: &str, remote: &str) -> DialFuture {
        *self.dials.lock().unwrap() += 1;
        let ok = self.outcomes.lock().unwrap().pop_front().unwrap_or(false);
        let links = self.links.lock().unwrap().clone();
        let remote = remote.to_string();
        Box::pin(async move {
            if !ok {
                return Err(DialError::NotFound(remote));
            }
            let (tx, rx) = mpsc::channel(16);
            let (closed_tx, closed) = oneshot::channel();
            if let Some(l) = links {
                let _ = l.send(Far {
                    rx,
                    closed: closed_tx,
                });
            }
            Ok(LinkSink {
                tx,
                closed,
                inflight: Default::default(),
            })
        })
    }
}

fn msg(i: u32) -> Element {
    Element::new("message", crate::element::NS_CLIENT)
        .attr("from", "a@local.test/r")
        .attr("to", "b@remote.test/r")
        .attr("id", format!("m{i}"))
}

fn start(
    script: &Script,
    window: Duration,
) -> (Addr<Link>, Arc<Metrics>, mpsc::UnboundedReceiver<Far>) {
    let (tx, rx) = mpsc::unbounded_channel();
    *script.links.lock().unwrap() = Some(tx);
    let cloud = Cloud::start(
        Settings {
            domain: "local.test".into(),
            ..Settings::default()
        },
        Arc::new(Store::in_memory().unwrap()),
    );
    let metrics = cloud.metrics.clone();
    let link = Link::new(
        "local.test".into(),
        "remote.test".into(),
        Arc::new(script.clone()),
        LinkEvents::of(&cloud.router),
        LinkSettings {
            queue: 100,
            queue_bytes: 1 << 20,
            max_domains: 10,
            max_pending: 10,
            max_pending_per_sender: 10,
            redial_window: window,
            idle: Duration::from_secs(600),
            metrics: metrics.clone(),
        },
    )
    .start();
    (link, metrics, rx)
}

const T: Duration = Duration::from_secs(10);

async fn next_link(links: &mut mpsc::UnboundedReceiver<Far>) -> Far {
    tokio::time::timeout(T, links.recv())
        .await
        .expect("no dial")
        .expect("dialer gone")
}

async fn ids(far: &mut Far, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = tokio::time::timeout(T, far.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {out:?} arrived"))
            .expect("link closed");
        out.push(e.get_attr("id").unwrap_or("").to_string());
    }
    out
}

/// A write finds the link closed and dials again before the old link's
/// notice (with what the peer never acknowledged) arrives: those
/// stanzas must go out on the new link, not be dropped as stale.
#[actix_rt::test]
async fn unacknowledged_stanzas_of_a_replaced_link_are_resent() {
    let script = Script::default();
    script.outcomes.lock().unwrap().extend([true, true]);
    let (link, metrics, mut links) = start(&script, Duration::from_secs(30));
    for i in 0..3 {
        link.do_send(Outgoing(msg(i)));
    }
    let mut first = next_link(&mut links).await;
    assert_eq!(ids(&mut first, 3).await, ["m0", "m1", "m2"]);
    // The writer ends: its queue closes, its notice comes later.
    let Far { rx, closed } = first;
    drop(rx);
    link.do_send(Outgoing(msg(3)));
    let mut second = next_link(&mut links).await;
    assert_eq!(ids(&mut second, 1).await, ["m3"]);
    closed.send(vec![msg(0), msg(1), msg(2)]).unwrap();
    assert_eq!(ids(&mut second, 3).await, ["m0", "m1", "m2"]);
    assert_eq!(metrics.bounce_total(), 0);
}

/// A domain reached before: failed dials are retried with backoff, and
/// what was queued is delivered, not bounced.
#[actix_rt::test]
async fn a_domain_reached_before_is_redialed_before_anything_bounces() {
    let script = Script::default();
    script
        .outcomes
        .lock()
        .unwrap()
        .extend([true, false, false, false, true]);
    let (link, metrics, mut links) = start(&script, Duration::from_secs(30));
    link.do_send(Outgoing(msg(0)));
    let first = next_link(&mut links).await;
    // It breaks with m0 unacknowledged; three dials fail, the fourth holds.
    drop(first.rx);
    first.closed.send(vec![msg(0)]).unwrap();
    link.do_send(Outgoing(msg(1)));
    let mut up = next_link(&mut links).await;
    assert_eq!(ids(&mut up, 2).await, ["m0", "m1"]);
    assert_eq!(*script.dials.lock().unwrap(), 5);
    assert_eq!(metrics.bounce_total(), 0);
}

async fn bounced(metrics: &Metrics, n: u64) {
    let deadline = Instant::now() + T;
    while metrics.bounce_total() < n {
        assert!(Instant::now() < deadline, "not bounced");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A domain never reached bounces at its first failed dial; one reached
/// before bounces once its redial window has passed.
#[actix_rt::test]
async fn unreachable_domains_bounce() {
    let script = Script::default();
    let (link, metrics, _links) = start(&script, Duration::from_secs(30));
    link.do_send(Outgoing(msg(0)));
    link.do_send(Outgoing(msg(1)));
    bounced(&metrics, 2).await;
    assert_eq!(*script.dials.lock().unwrap(), 1);

    let script = Script::default();
    script.outcomes.lock().unwrap().push_back(true);
    let (link, metrics, mut links) = start(&script, Duration::from_millis(700));
    link.do_send(Outgoing(msg(0)));
    let first = next_link(&mut links).await;
    drop(first.rx);
    first.closed.send(vec![msg(0)]).unwrap();
    bounced(&metrics, 1).await;
    let dials = *script.dials.lock().unwrap();
    assert!(dials >= 3, "bounced after {dials} dials");
}
