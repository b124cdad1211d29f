//! Publish-subscribe (XEP-0060) on a real node: a stock client (slixmpp's xep_0060) through the whole of it, items surviving `kill -9`, and a subscriber on another node over s2s.

mod common;

use common::Node;
use intercloud_actors::element::{Element, NS_CLIENT};
use std::time::Duration;

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const T: Duration = Duration::from_secs(20);

#[test]
fn slixmpp_creates_subscribes_publishes_retracts_purges_and_deletes() {
    let mut node = Node::init("pubsub-slix", "ps.test", &[]);
    node.add_user("alice", "alice-pw");
    node.add_user("bob", "bob-pw");
    node.start();
    let stdout = common::slixmpp(
        "pubsub_flow.py",
        &[
            ("port", node.port.to_string()),
            ("domain", node.domain.clone()),
        ],
        &|| node.log(),
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(r["create_again"], "conflict", "{r}");
    assert_eq!(r["title"], "Cloud news", "{r}");
    assert_eq!(r["items"], serde_json::json!(["i0", "i1", "i2"]), "{r}");
    assert_eq!(r["latest"], serde_json::json!(["i2"]), "{r}");
    assert_eq!(r["by_id"], serde_json::json!(["item 1"]), "{r}");
    assert_eq!(r["bob_publishes"], "forbidden", "{r}");
    assert_eq!(r["no_such_node"], "item-not-found", "{r}");
    assert_eq!(r["after_purge"], 0, "{r}");
    assert_eq!(
        r["events"],
        serde_json::json!(["publish", "publish", "publish", "retract", "purge", "delete"]),
        "{r}"
    );
    assert!(node.stop().success(), "node did not exit cleanly");
}

fn iq(id: &str, ty: &str, to: &str, payload: Element) -> Element {
    Element::new("iq", NS_CLIENT)
        .attr("type", ty)
        .attr("id", id)
        .attr("to", to)
        .child(payload)
}

fn pubsub(child: Element) -> Element {
    Element::new("pubsub", NS_PUBSUB).child(child)
}

fn publish(node: &str, id: &str, text: &str) -> Element {
    pubsub(
        Element::new("publish", NS_PUBSUB).attr("node", node).child(
            Element::new("item", NS_PUBSUB)
                .attr("id", id)
                .child(Element::new("entry", "urn:test").text(text)),
        ),
    )
}

/// Sends an iq set and waits for its answer.
async fn iq_set(
    c: &mut intercloud::xmpp::client::Client,
    id: &str,
    to: &str,
    payload: Element,
) -> Element {
    c.send(&iq(id, "set", to, payload)).await.unwrap();
    c.wait_for(T, |e| e.get_attr("id") == Some(id))
        .await
        .unwrap()
}

/// The ids of the items an items request answers.
fn item_ids(r: &Element) -> Vec<String> {
    r.get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .map(|i| {
            i.elements()
                .filter_map(|e| e.get_attr("id").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_and_subscriptions_survive_kill_9() {
    let mut node = Node::init("pubsub-kill", "ps.test", &[]);
    node.add_user("alice", "pw");
    node.add_user("bob", "pw");
    node.start();
    let svc = "pubsub.ps.test";
    let mut alice = node.login("alice", "pw", Some("a")).await;
    let mut bob = node.login("bob", "pw", Some("b")).await;
    let r = iq_set(
        &mut alice,
        "c1",
        svc,
        pubsub(Element::new("create", NS_PUBSUB).attr("node", "n")),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{}", r.to_xml());
    let sub = Element::new("subscribe", NS_PUBSUB)
        .attr("node", "n")
        .attr("jid", "bob@ps.test");
    let r = iq_set(&mut bob, "s1", svc, pubsub(sub)).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{}", r.to_xml());
    for i in 0..3 {
        let r = iq_set(
            &mut alice,
            &format!("p{i}"),
            svc,
            publish("n", &format!("i{i}"), "x"),
        )
        .await;
        assert_eq!(r.get_attr("type"), Some("result"), "{}", r.to_xml());
    }
    // Acknowledged: now the process dies without a chance to flush anything.
    node.kill9();
    node.start();
    let mut alice = node.login("alice", "pw", Some("a")).await;
    let mut bob = node.login("bob", "pw", Some("b")).await;
    // Notifications go to available resources (headlines to a bare JID are not stored).
    bob.send(&Element::new("presence", NS_CLIENT))
        .await
        .unwrap();
    let r = common::iq_get(
        &mut bob,
        "g1",
        Some(svc),
        pubsub(Element::new("items", NS_PUBSUB).attr("node", "n")),
    )
    .await;
    assert_eq!(item_ids(&r), ["i0", "i1", "i2"], "{}", r.to_xml());
    // Bob's subscription survived too: the next item reaches him.
    let r = iq_set(&mut alice, "p9", svc, publish("n", "i9", "after")).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{}", r.to_xml());
    let note = bob
        .wait_for(T, |e| {
            e.name == "message" && e.get_child("event", NS_EVENT).is_some()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
    assert!(note.to_xml().contains("id='i9'"), "{}", note.to_xml());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_another_node_is_notified_over_s2s() {
    let ca = common::Ca::new("pubsub-s2s");
    let mut a = Node::init("pubsub-s2s1", "cloud1.test", &[]);
    let mut b = Node::init("pubsub-s2s2", "cloud2.test", &[]);
    a.federate(&b, Some(&ca), Some("external"));
    a.add_user("alice", "pw");
    b.add_user("bob", "pw");
    a.start();
    b.start();
    let svc = "pubsub.cloud1.test";
    let mut alice = a.login("alice", "pw", Some("a")).await;
    let mut bob = b.login("bob", "pw", Some("b")).await;
    bob.send(&Element::new("presence", NS_CLIENT))
        .await
        .unwrap();
    let r = iq_set(
        &mut alice,
        "c1",
        svc,
        pubsub(Element::new("create", NS_PUBSUB).attr("node", "feed")),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{}", r.to_xml());
    // Bob, on cloud2, subscribes across the federation.
    let sub = Element::new("subscribe", NS_PUBSUB)
        .attr("node", "feed")
        .attr("jid", "bob@cloud2.test");
    let r = iq_set(&mut bob, "s1", svc, pubsub(sub)).await;
    assert_eq!(
        r.get_attr("type"),
        Some("result"),
        "{}\n{}\n{}",
        r.to_xml(),
        a.log(),
        b.log()
    );
    for i in 0..3 {
        let r = iq_set(
            &mut alice,
            &format!("p{i}"),
            svc,
            publish("feed", &format!("i{i}"), &format!("text {i}")),
        )
        .await;
        assert_eq!(r.get_attr("type"), Some("result"), "{}", r.to_xml());
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let note = bob
            .wait_for(T, |e| {
                e.name == "message" && e.get_child("event", NS_EVENT).is_some()
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}\n{}", a.log(), b.log()));
        assert_eq!(note.get_attr("from"), Some(svc));
        let item = note
            .get_child("event", NS_EVENT)
            .and_then(|e| e.get_child("items", NS_EVENT))
            .and_then(|i| i.get_child("item", NS_EVENT))
            .expect("an item");
        got.push((
            item.get_attr("id").unwrap_or("").to_string(),
            item.child_text("entry", "urn:test").unwrap_or_default(),
        ));
    }
    assert_eq!(
        got,
        [("i0", "text 0"), ("i1", "text 1"), ("i2", "text 2")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // And reads the items from cloud2.
    let r = common::iq_get(
        &mut bob,
        "g1",
        Some(svc),
        pubsub(Element::new("items", NS_PUBSUB).attr("node", "feed")),
    )
    .await;
    assert_eq!(item_ids(&r), ["i0", "i1", "i2"], "{}", r.to_xml());
}
