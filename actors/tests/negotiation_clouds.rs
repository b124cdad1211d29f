//! Negotiation between many clouds in one process (each a full actor system with its own store, linked by an in-memory s2s dialer): 50 proposals at once to a cloud with capacity for 10, a counter-offer, and messages with an unknown id, a replayed accept, or a sender that is not the negotiating gateway.

mod common;

use common::*;
use intercloud_actors::gateway::{
    Gateway, GatewayHandler, MessageBuilder, MessageType, SubscriptionKind,
};
use intercloud_actors::jid::Jid;
use intercloud_actors::negotiation::protocol::{Payload, Step};
use intercloud_actors::negotiation::{Agreements, Free, Negotiation, Propose, Verdict};
use std::time::Duration;
use tokio::sync::mpsc;

#[actix_rt::test]
async fn fifty_proposals_for_ten_slots_make_exactly_ten_agreements() {
    let net = MemDialer::default();
    let p = cloud(&net, "provider.test");
    let pgw = gateway(&p);
    let provider = Negotiation::start(settings(10), p.store.clone(), pgw);
    let mut consumers = Vec::new();
    let mut clouds = vec![p.clone()];
    for i in 0..50 {
        let c = cloud(&net, &format!("c{i}.test"));
        let gw = gateway(&c);
        consumers.push(Negotiation::start(settings(0), c.store.clone(), gw));
        clouds.push(c);
    }
    logged_in(&clouds.iter().collect::<Vec<_>>(), 1).await;
    let mut waits = Vec::new();
    for n in &consumers {
        let rx = n
            .send(Propose {
                peer: provider_jid(),
                terms: terms(1),
                min_amount: 1,
                offline: false,
            })
            .await
            .unwrap();
        waits.push(rx);
    }
    let mut agreed = 0;
    let mut reasons = Vec::new();
    for rx in waits {
        let o = tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .expect("every proposal ends")
            .unwrap();
        match o.result {
            Verdict::Agreed(a) => {
                assert_eq!(a.role, "consumer");
                agreed += 1
            }
            Verdict::Rejected(why) => reasons.push(why),
            other => panic!("unexpected outcome {other:?}: {:?}", o.lines),
        }
    }
    assert_eq!(agreed, 10);
    assert_eq!(reasons.len(), 40);
    assert!(
        reasons.iter().all(|r| r.contains("no capacity")),
        "{reasons:?}"
    );
    // The provider confirms after the consumer: wait for the last confirms.
    until("the provider's ten confirms", || async {
        provider.send(Agreements).await.unwrap().len() >= 10
    })
    .await;
    let held = provider.send(Agreements).await.unwrap();
    assert_eq!(held.len(), 10, "{held:?}");
    assert!(held.iter().all(|a| a.role == "provider" && a.amount == 1));
    assert_eq!(held.iter().map(|a| a.amount).sum::<u64>(), 10);
    assert_eq!(
        provider
            .send(Free("storage-replication".into()))
            .await
            .unwrap(),
        0
    );
    // Both sides hold the same agreements.
    let mut consumer_ids = Vec::new();
    for n in &consumers {
        consumer_ids.extend(n.send(Agreements).await.unwrap().into_iter().map(|a| a.id));
    }
    let mut provider_ids: Vec<String> = held.into_iter().map(|a| a.id).collect();
    consumer_ids.sort();
    provider_ids.sort();
    assert_eq!(consumer_ids, provider_ids);
}

#[actix_rt::test]
async fn a_counter_offer_fills_what_is_left() {
    let net = MemDialer::default();
    let p = cloud(&net, "provider.test");
    let provider = Negotiation::start(settings(10), p.store.clone(), gateway(&p));
    let a = cloud(&net, "a.test");
    let na = Negotiation::start(settings(0), a.store.clone(), gateway(&a));
    let b = cloud(&net, "b.test");
    let nb = Negotiation::start(settings(0), b.store.clone(), gateway(&b));
    logged_in(&[&p, &a, &b], 1).await;
    let first = na
        .send(Propose {
            peer: provider_jid(),
            terms: terms(7),
            min_amount: 7,
            offline: false,
        })
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(matches!(first.result, Verdict::Agreed(_)), "{first:?}");
    // 5 asked, 3 left: the provider counters with 3, b takes it (its minimum is 2).
    let second = nb
        .send(Propose {
            peer: provider_jid(),
            terms: terms(5),
            min_amount: 2,
            offline: false,
        })
        .await
        .unwrap()
        .await
        .unwrap();
    match &second.result {
        Verdict::Agreed(ag) => assert_eq!(ag.amount, 3),
        other => panic!("{other:?} {:?}", second.lines),
    }
    assert!(
        second
            .lines
            .iter()
            .any(|l| l.contains(" counter ") && l.contains("I can offer 3 GB")),
        "{:?}",
        second.lines
    );
    until("the provider's two confirms", || async {
        provider.send(Agreements).await.unwrap().len() >= 2
    })
    .await;
    let held = provider.send(Agreements).await.unwrap();
    assert_eq!(held.iter().map(|a| a.amount).sum::<u64>(), 10, "{held:?}");
}

/// A gateway with no cloud logic but a recorder: what an attacker or a test probe sees.
/// A gateway handler that approves nothing and reports subscription stanzas.
struct Subscriptions(mpsc::UnboundedSender<(Jid, SubscriptionKind)>);

impl GatewayHandler for Subscriptions {
    fn on_subscription(&mut self, _gw: &Gateway, from: &Jid, kind: SubscriptionKind) -> bool {
        let _ = self.0.send((from.clone(), kind));
        false
    }
}

#[actix_rt::test]
async fn unknown_ids_replays_and_strangers_change_nothing() {
    let net = MemDialer::default();
    let p = cloud(&net, "provider.test");
    let provider = Negotiation::start(settings(10), p.store.clone(), gateway(&p));
    let c = cloud(&net, "consumer.test");
    let consumer = Negotiation::start(settings(0), c.store.clone(), gateway(&c));
    // The stranger is a plain gateway whose every message we see.
    let s = cloud(&net, "stranger.test");
    let sgw = gateway(&s);
    let (tx, mut seen) = mpsc::unbounded_channel();
    sgw.set_handler(Box::new(Recorder(tx)));
    logged_in(&[&p, &c, &s], 1).await;
    let o = consumer
        .send(Propose {
            peer: provider_jid(),
            terms: terms(4),
            min_amount: 4,
            offline: false,
        })
        .await
        .unwrap()
        .await
        .unwrap();
    let Verdict::Agreed(agreement) = o.result else {
        panic!("{o:?}")
    };
    until("the provider's confirm", || async {
        provider.send(Agreements).await.unwrap().len() == 1
    })
    .await;
    let before_p = provider.send(Agreements).await.unwrap();
    let before_c = consumer.send(Agreements).await.unwrap();
    assert_eq!(before_p.len(), 1);
    let consumer_jid: Jid = "gateway@consumer.test".parse().unwrap();

    // 1. An id nobody opened: refused with item-not-found.
    let unknown = Payload {
        id: "no-such-negotiation".into(),
        step: Step::Confirm,
        terms: Some(terms(4)),
        reason: None,
    };
    raw(&sgw, &provider_jid(), &unknown);
    let e = error_for(&mut seen, "no-such-negotiation").await;
    assert_eq!(e.error_condition().as_deref(), Some("item-not-found"));

    // 2. The stranger replays the provider's accept of the real negotiation to
    //    the consumer, and confirms it to the provider: not its negotiation.
    let accept = Payload {
        id: agreement.id.clone(),
        step: Step::Accept,
        terms: Some(terms(4)),
        reason: None,
    };
    raw(&sgw, &consumer_jid, &accept);
    let e = error_for(&mut seen, &agreement.id).await;
    assert_eq!(e.error_condition().as_deref(), Some("item-not-found"));
    let confirm = Payload {
        step: Step::Confirm,
        ..accept.clone()
    };
    raw(&sgw, &provider_jid(), &confirm);
    let e = error_for(&mut seen, &agreement.id).await;
    assert_eq!(e.error_condition().as_deref(), Some("item-not-found"));
    // A propose reusing the id from another peer is its own negotiation, not a takeover.
    let propose = Payload {
        step: Step::Propose,
        ..accept.clone()
    };
    raw(&sgw, &provider_jid(), &propose);
    // The provider answers it (to the stranger) like any proposal.
    answer_for(&mut seen, &agreement.id, None).await;

    // 3. The real provider's accept, replayed: the consumer confirms again, nothing new.
    let pgw_probe = gateway_as(&p, "probe");
    let (ptx, mut probe_seen) = mpsc::unbounded_channel();
    pgw_probe.set_handler(Box::new(Recorder(ptx)));
    logged_in(&[&p], 2).await;
    raw(&pgw_probe, &consumer_jid, &accept);
    let again = answer_for(&mut probe_seen, &agreement.id, Some(Step::Confirm)).await;
    assert_eq!(again.from.to_bare(), consumer_jid);

    let after_c = consumer.send(Agreements).await.unwrap();
    assert_eq!(after_c, before_c, "the consumer's agreements changed");
    let after_p = provider.send(Agreements).await.unwrap();
    // The provider holds the original agreement, plus at most the stranger's own
    // (separate) proposal under the reused id — never a second one with the consumer.
    assert_eq!(
        after_p
            .iter()
            .filter(|a| a.peer == "gateway@consumer.test")
            .count(),
        1
    );
    assert!(after_p
        .iter()
        .all(|a| a.peer != "gateway@consumer.test" || before_p.contains(a)));
}

#[actix_rt::test]
async fn the_app_engine_like_api_reports_per_recipient_and_sees_presence() {
    let net = MemDialer::default();
    let a = cloud(&net, "a.test");
    let b = cloud(&net, "b.test");
    let ga = gateway(&a);
    let gb = gateway(&b);
    let (tx, mut seen) = mpsc::unbounded_channel();
    gb.set_handler(Box::new(Recorder(tx)));
    logged_in(&[&a, &b], 1).await;
    let jb = gb.jid().clone();
    assert!(!ga.get_presence(&jb).await.is_available());
    let msg = MessageBuilder::new()
        .with_recipient_jids([jb.to_string(), "not@a@jid".to_string()])
        .with_body("Cloud 2, I would like to use your resources")
        .build();
    let r = ga.send_message(msg).await;
    assert_eq!(
        r.status_of(&jb.to_string()),
        Some(intercloud_actors::gateway::SendStatus::Success)
    );
    assert_eq!(
        r.status_of("not@a@jid"),
        Some(intercloud_actors::gateway::SendStatus::InvalidId)
    );
    let m = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.from.to_bare(), *ga.jid());
    assert_eq!(m.message_type, MessageType::Chat);
    assert_eq!(
        m.body.as_deref(),
        Some("Cloud 2, I would like to use your resources")
    );
    // Sending as someone else is refused for every recipient.
    let forged = MessageBuilder::new()
        .with_recipient_jids([jb.to_string()])
        .with_from_jid("boss@a.test")
        .build();
    assert_eq!(
        ga.send_message(forged).await.status_of(&jb.to_string()),
        Some(intercloud_actors::gateway::SendStatus::OtherError)
    );
    // A subscription the other gateway does not approve (no handler says yes): still unavailable.
    // b declines (it has no handler that approves): once a has the answer,
    // a still sees b unavailable.
    let (stx, mut subs) = mpsc::unbounded_channel();
    ga.set_handler(Box::new(Subscriptions(stx)));
    ga.send_invite(&jb);
    loop {
        let (from, kind) = tokio::time::timeout(Duration::from_secs(20), subs.recv())
            .await
            .expect("b's answer to the invitation")
            .unwrap();
        if from.to_bare() == jb && kind == SubscriptionKind::Unsubscribed {
            break;
        }
    }
    assert!(!ga.get_presence(&jb).await.is_available());
    // With a negotiation actor (it approves partners), presence flows both ways.
    let c = cloud(&net, "c.test");
    let gc = gateway(&c);
    Negotiation::start(settings(5), c.store.clone(), gc.clone());
    logged_in(&[&c], 1).await;
    ga.send_invite(gc.jid());
    until("c's presence at a", || async {
        ga.get_presence(gc.jid()).await.is_available()
    })
    .await;
    let p = ga.get_presence(gc.jid()).await;
    let cap = p.capacity.expect("capacity in the presence");
    assert!(cap.to_xml().contains("free='5'"), "{}", cap.to_xml());
    // The node stops (its gateway logs out): unavailable.
    gc.stop();
    until("c's gateway to become unavailable at a", || async {
        !ga.get_presence(gc.jid()).await.is_available()
    })
    .await;
}
