//! Federation between two real nodes: mutual TLS with certificates from a test CA and SASL EXTERNAL.

mod common;

use common::{Ca, Node};
use intercloud_actors::element::{Element, NS_CLIENT};
use std::time::Duration;

const T: Duration = Duration::from_secs(15);

use common::chat as msg;

/// Two nodes that trust the same CA and allow only SASL EXTERNAL.
fn pair(tag: &str) -> (Ca, Node, Node) {
    let ca = Ca::new(tag);
    let mut a = Node::init(&format!("{tag}1"), "cloud1.test", &[]);
    let mut b = Node::init(&format!("{tag}2"), "cloud2.test", &[]);
    a.federate(&b, Some(&ca), Some("external"));
    a.add_user("alice", "pw");
    b.add_user("bob", "pw");
    a.start();
    b.start();
    (ca, a, b)
}

use common::sync;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_iq_and_presence_cross_domains() {
    let (_ca, a, b) = pair("fed");
    let mut alice = a.login("alice", "pw", Some("a")).await;
    let mut bob = b.login("bob", "pw", Some("b")).await;
    alice
        .send(&Element::new("presence", NS_CLIENT))
        .await
        .unwrap();
    bob.send(&Element::new("presence", NS_CLIENT))
        .await
        .unwrap();
    sync(&mut alice, "s1").await;
    sync(&mut bob, "s2").await;

    alice
        .send(&msg("bob@cloud2.test", "hello cloud2"))
        .await
        .unwrap();
    let m = bob
        .wait_for(T, |e| e.name == "message")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", a.log(), b.log()));
    assert_eq!(m.get_attr("from"), Some("alice@cloud1.test/a"));
    assert_eq!(
        m.child_text("body", NS_CLIENT).as_deref(),
        Some("hello cloud2")
    );
    bob.send(&msg("alice@cloud1.test", "hello cloud1"))
        .await
        .unwrap();
    let m = alice.wait_for(T, |e| e.name == "message").await.unwrap();
    assert_eq!(m.get_attr("from"), Some("bob@cloud2.test/b"));

    // disco#info of the remote server, answered over the federation.
    let iq = Element::new("iq", NS_CLIENT)
        .attr("type", "get")
        .attr("id", "d1")
        .attr("to", "cloud2.test")
        .child(Element::new(
            "query",
            "http://jabber.org/protocol/disco#info",
        ));
    alice.send(&iq).await.unwrap();
    let r = alice
        .wait_for(T, |e| e.get_attr("id") == Some("d1"))
        .await
        .unwrap();
    assert_eq!(r.get_attr("type"), Some("result"), "{}", r.to_xml());
    assert_eq!(r.get_attr("from"), Some("cloud2.test"));

    // Subscription across domains, then presence.
    let sub = Element::new("presence", NS_CLIENT)
        .attr("to", "bob@cloud2.test")
        .attr("type", "subscribe");
    alice.send(&sub).await.unwrap();
    let req = bob
        .wait_for(T, |e| {
            e.name == "presence" && e.get_attr("type") == Some("subscribe")
        })
        .await
        .unwrap();
    assert_eq!(req.get_attr("from"), Some("alice@cloud1.test"));
    let ok = Element::new("presence", NS_CLIENT)
        .attr("to", "alice@cloud1.test")
        .attr("type", "subscribed");
    bob.send(&ok).await.unwrap();
    let p = alice
        .wait_for(T, |e| {
            e.name == "presence"
                && e.get_attr("type").is_none()
                && e.get_attr("from") == Some("bob@cloud2.test/b")
        })
        .await
        .unwrap();
    assert_eq!(
        p.get_attr("to").map(|t| t.starts_with("alice@cloud1.test")),
        Some(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_domain_bounces_remote_server_not_found() {
    let (_ca, a, _b) = pair("unreach");
    let mut alice = a.login("alice", "pw", Some("a")).await;
    alice
        .send(&msg("x@nowhere.invalid", "anyone?"))
        .await
        .unwrap();
    // A domain with no address bounces at once (no redials): the wait is bounded by bounced().
    common::bounced(&mut alice, "remote-server-not-found").await;
    assert!(!a
        .log()
        .contains("s2s dial failed remote=nowhere.invalid error=connection broke"));
}

#[test]
fn slixmpp_users_on_two_nodes_subscribe_and_exchange_1000_messages() {
    let (_ca, a, b) = pair("slix2");
    let out = common::s2s_flow(
        &[
            ("port1", a.port.to_string()),
            ("domain1", a.domain.clone()),
            ("user1", "alice".into()),
            ("password1", "pw".into()),
            ("port2", b.port.to_string()),
            ("domain2", b.domain.clone()),
            ("user2", "bob".into()),
            ("password2", "pw".into()),
        ],
        &|| format!("{}\n{}", a.log(), b.log()),
    );
    println!("federation results: {out}");
    // Time to a first link (connect + TLS + SASL EXTERNAL), from the nodes' logs.
    for n in [&a, &b] {
        for l in n.log().lines().filter(|l| l.contains("s2s link up")) {
            println!(
                "{}",
                l.split("intercloud_actors::link: ").last().unwrap_or(l)
            );
        }
    }
    assert!(out.contains("\"messages\": 2000"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_link_closes_and_the_next_stanza_redials() {
    let ca = Ca::new("idle");
    let mut a = Node::init(
        "idle1",
        "cloud1.test",
        &[("s2s_idle_timeout_secs = 600", "s2s_idle_timeout_secs = 1")],
    );
    let mut b = Node::init("idle2", "cloud2.test", &[]);
    a.federate(&b, Some(&ca), None);
    a.add_user("alice", "pw");
    b.add_user("bob", "pw");
    a.start();
    b.start();
    let mut bob = b.login("bob", "pw", None).await;
    common::online(&mut bob).await;
    let mut alice = a.login("alice", "pw", None).await;
    alice.send(&msg("bob@cloud2.test", "one")).await.unwrap();
    bob.wait_for(T, |e| e.name == "message").await.unwrap();
    let t0 = std::time::Instant::now();
    while !a.log().contains("s2s link idle: closing") {
        assert!(
            t0.elapsed() < T,
            "the idle link was not closed: {}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    alice.send(&msg("bob@cloud2.test", "two")).await.unwrap();
    let m = bob.wait_for(T, |e| e.name == "message").await.unwrap();
    assert_eq!(m.child_text("body", NS_CLIENT).as_deref(), Some("two"));
    assert_eq!(a.log().matches("s2s link up").count(), 2, "{}", a.log());
}
