//! The negotiation actor's timers on an injected clock, without sleeping: an unanswered step is sent again once per retransmission interval and cancelled at its deadline; a provider holds at most `max_open` negotiations, and a reservation nobody confirms expires and frees its slot.

mod common;

use common::*;
use intercloud_actors::clock::Clock;
use intercloud_actors::gateway::{Gateway, InboundMessage, MessageType};
use intercloud_actors::jid::Jid;
use intercloud_actors::negotiation::protocol::{Payload, Step};
use intercloud_actors::negotiation::{Negotiation, NegotiationSettings, Propose, Tick, Verdict};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A clock that moves only when told.
#[derive(Debug)]
struct ManualClock(Mutex<Instant>);

impl ManualClock {
    fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(Instant::now())))
    }
    fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

const RETRANSMIT: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(10);

fn timed(capacity: u64, clock: &Arc<ManualClock>, max_open: usize) -> NegotiationSettings {
    NegotiationSettings {
        retransmit: RETRANSMIT,
        timeout: TIMEOUT,
        max_open,
        clock: clock.clone(),
        ..settings(capacity)
    }
}

/// The negotiation payloads `rx` received up to the marker `id` (sent after
/// what is asked about, on the same path, so all of it came before).
async fn until_marker(rx: &mut mpsc::UnboundedReceiver<InboundMessage>, id: &str) -> Vec<Payload> {
    let mut out = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no marker {id}; saw {out:?}"))
            .unwrap();
        if m.message_type == MessageType::Error {
            continue;
        }
        let Ok(p) = Payload::parse(&m.stanza) else {
            continue;
        };
        if p.id == id {
            return out;
        }
        out.push(p);
    }
}

/// Sends a marker from `gw` to `to`.
fn marker(gw: &Gateway, to: &Jid, id: &str) {
    raw(
        gw,
        to,
        &Payload {
            id: id.into(),
            step: Step::Cancel,
            terms: None,
            reason: Some("marker".into()),
        },
    );
}

#[actix_rt::test]
async fn an_unanswered_proposal_is_sent_again_each_interval_then_cancelled() {
    let net = MemDialer::default();
    let clock = ManualClock::new();
    let c = cloud(&net, "consumer.test");
    let cgw = gateway(&c);
    let consumer = Negotiation::start(timed(0, &clock, 10), c.store.clone(), cgw.clone());
    // The peer is a gateway that records and never answers.
    let s = cloud(&net, "silent.test");
    let sgw = gateway(&s);
    let (tx, mut seen) = mpsc::unbounded_channel();
    sgw.set_handler(Box::new(Recorder(tx)));
    logged_in(&[&c, &s], 1).await;
    let silent: Jid = "gateway@silent.test".parse().unwrap();

    let outcome = consumer
        .send(Propose {
            peer: silent.clone(),
            terms: terms(5),
            min_amount: 5,
            offline: false,
        })
        .await
        .unwrap();
    consumer.send(Tick).await.unwrap();
    marker(&cgw, &silent, "m1");
    let got = until_marker(&mut seen, "m1").await;
    assert_eq!(got.len(), 1, "no retransmission before its time: {got:?}");
    assert_eq!(got[0].step, Step::Propose);
    let id = got[0].id.clone();

    // Each interval: the same proposal once more.
    for round in 2..=4 {
        clock.advance(RETRANSMIT);
        consumer.send(Tick).await.unwrap();
        consumer.send(Tick).await.unwrap();
        let m = format!("m{round}");
        marker(&cgw, &silent, &m);
        let got = until_marker(&mut seen, &m).await;
        let steps: Vec<(Step, &str)> = got.iter().map(|p| (p.step, p.id.as_str())).collect();
        assert_eq!(steps, [(Step::Propose, id.as_str())], "round {round}");
    }

    // At the deadline: a cancel, and the proposer hears it timed out.
    clock.advance(TIMEOUT);
    consumer.send(Tick).await.unwrap();
    marker(&cgw, &silent, "m5");
    let got = until_marker(&mut seen, "m5").await;
    let steps: Vec<(Step, &str)> = got.iter().map(|p| (p.step, p.id.as_str())).collect();
    assert_eq!(steps, [(Step::Cancel, id.as_str())]);
    let o = tokio::time::timeout(Duration::from_secs(20), outcome)
        .await
        .expect("an outcome")
        .unwrap();
    assert_eq!(o.result, Verdict::TimedOut);
}

#[actix_rt::test]
async fn max_open_bounds_a_provider_until_reservations_expire() {
    let net = MemDialer::default();
    let clock = ManualClock::new();
    let p = cloud(&net, "provider.test");
    let provider = Negotiation::start(timed(100, &clock, 2), p.store.clone(), gateway(&p));
    // Proposals come from a plain gateway that never confirms.
    let s = cloud(&net, "asker.test");
    let sgw = gateway(&s);
    let (tx, mut seen) = mpsc::unbounded_channel();
    sgw.set_handler(Box::new(Recorder(tx)));
    logged_in(&[&p, &s], 1).await;
    let propose = |id: &str| Payload {
        id: id.into(),
        step: Step::Propose,
        terms: Some(terms(1)),
        reason: None,
    };
    for id in ["p1", "p2", "p3"] {
        raw(&sgw, &provider_jid(), &propose(id));
    }
    answer_for(&mut seen, "p1", Some(Step::Accept)).await;
    answer_for(&mut seen, "p2", Some(Step::Accept)).await;
    let r = answer_for(&mut seen, "p3", Some(Step::Reject)).await;
    let reason = Payload::parse(&r.stanza).unwrap().reason;
    assert_eq!(
        reason.as_deref(),
        Some("too many open negotiations; try later")
    );

    // No confirm comes: at the deadline both reservations end (rejected as
    // expired) and a new proposal is taken again.
    clock.advance(TIMEOUT);
    provider.send(Tick).await.unwrap();
    // Both expire in one tick, in no set order.
    let mut expired = std::collections::BTreeMap::new();
    while expired.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(20), seen.recv())
            .await
            .unwrap_or_else(|_| panic!("expired so far: {expired:?}"))
            .unwrap();
        if let Ok(p) = Payload::parse(&m.stanza) {
            if p.step == Step::Reject {
                expired.insert(p.id, p.reason.unwrap_or_default());
            }
        }
    }
    let why = "expired: no confirmation in time".to_string();
    assert_eq!(
        expired.into_iter().collect::<Vec<_>>(),
        [("p1".to_string(), why.clone()), ("p2".to_string(), why)]
    );
    raw(&sgw, &provider_jid(), &propose("p4"));
    answer_for(&mut seen, "p4", Some(Step::Accept)).await;
}
