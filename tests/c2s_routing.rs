//! RFC 6120/6121 routing rules against a real node: priorities, conflicts, iq errors, anonymous login, close and shutdown.

mod common;

use common::Node;
use intercloud::xmpp::client::Client;
use intercloud::xmpp::codec::Event;
use intercloud_actors::element::{Element, NS_CLIENT};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(400);

fn presence(priority: i8) -> Element {
    Element::new("presence", NS_CLIENT)
        .child(Element::new("priority", NS_CLIENT).text(priority.to_string()))
}

fn msg(to: &str, ty: &str, body: &str) -> Element {
    Element::new("message", NS_CLIENT)
        .attr("to", to)
        .attr("type", ty)
        .child(Element::new("body", NS_CLIENT).text(body))
}

fn is_msg(body: &'static str) -> impl Fn(&Element) -> bool {
    move |e| e.name == "message" && e.child_text("body", NS_CLIENT).as_deref() == Some(body)
}

/// Asserts no stanza matching `pred` arrives within QUIET.
async fn nothing(c: &mut Client, pred: impl Fn(&Element) -> bool) {
    if let Ok(e) = c.wait_for(QUIET, pred).await {
        panic!("unexpected {}", e.to_xml());
    }
}

use common::sync;

fn node(tag: &str, edits: &[(&str, &str)]) -> Node {
    let mut n = Node::init(tag, "route.test", edits);
    n.add_user("alice", "pw");
    n.add_user("bob", "pw");
    n.start();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_jid_messages_follow_priority() {
    let node = node("prio", &[]);
    let mut hi = node.login("bob", "pw", Some("hi")).await;
    let mut hi2 = node.login("bob", "pw", Some("hi2")).await;
    let mut lo = node.login("bob", "pw", Some("lo")).await;
    let mut neg = node.login("bob", "pw", Some("neg")).await;
    hi.send(&presence(10)).await.unwrap();
    hi2.send(&presence(10)).await.unwrap();
    lo.send(&presence(1)).await.unwrap();
    neg.send(&presence(-1)).await.unwrap();
    for c in [&mut hi, &mut hi2, &mut lo, &mut neg] {
        sync(c, "s").await;
    }
    let mut alice = node.login("alice", "pw", None).await;
    // chat to the bare JID: every resource of the top priority.
    alice
        .send(&msg("bob@route.test", "chat", "chat-all"))
        .await
        .unwrap();
    hi.wait_for(T, is_msg("chat-all")).await.unwrap();
    hi2.wait_for(T, is_msg("chat-all")).await.unwrap();
    nothing(&mut lo, is_msg("chat-all")).await;
    nothing(&mut neg, is_msg("chat-all")).await;
    // normal to the bare JID: exactly one resource of the top priority.
    alice
        .send(&msg("bob@route.test", "normal", "one"))
        .await
        .unwrap();
    let a = hi.wait_for(QUIET, is_msg("one")).await.is_ok();
    let b = hi2.wait_for(QUIET, is_msg("one")).await.is_ok();
    assert!(
        a ^ b,
        "normal message must reach exactly one top resource ({a}, {b})"
    );
    // To a full JID: that resource, even with negative priority.
    alice
        .send(&msg("bob@route.test/neg", "chat", "direct"))
        .await
        .unwrap();
    neg.wait_for(T, is_msg("direct")).await.unwrap();
    // To a full JID that is not bound: treated as the bare JID.
    alice
        .send(&msg("bob@route.test/gone", "chat", "fallback"))
        .await
        .unwrap();
    hi.wait_for(T, is_msg("fallback")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iq_errors_and_unknown_accounts() {
    let node = node("iq", &[]);
    let mut alice = node.login("alice", "pw", Some("a")).await;
    // iq to a resource that is not there: service-unavailable.
    let r = common::iq_get(
        &mut alice,
        "q1",
        Some("bob@route.test/nowhere"),
        Element::new("query", "urn:example:x"),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("error"));
    assert!(
        r.to_xml().contains("<service-unavailable"),
        "{}",
        r.to_xml()
    );
    // An unknown namespace on the server: service-unavailable too.
    let r = common::iq_get(
        &mut alice,
        "q2",
        Some("route.test"),
        Element::new("query", "urn:example:unknown"),
    )
    .await;
    assert!(
        r.to_xml().contains("<service-unavailable"),
        "{}",
        r.to_xml()
    );
    // XEP-0092 version.
    let r = common::iq_get(
        &mut alice,
        "v",
        Some("route.test"),
        Element::new("query", "jabber:iq:version"),
    )
    .await;
    assert!(
        r.to_xml().contains("<name>intercloud</name>"),
        "{}",
        r.to_xml()
    );
    // A message to an account that does not exist bounces.
    alice
        .send(&msg("nobody@route.test", "chat", "hello?"))
        .await
        .unwrap();
    let e = alice
        .wait_for(T, |e| e.get_attr("type") == Some("error"))
        .await
        .unwrap();
    assert_eq!(e.get_attr("from"), Some("nobody@route.test"));
    assert!(e.to_xml().contains("<service-unavailable"));
    // A message to another domain has nowhere to go yet: remote-server-not-found.
    alice
        .send(&msg("x@elsewhere.test", "chat", "far"))
        .await
        .unwrap();
    let e = alice
        .wait_for(T, |e| e.get_attr("from") == Some("x@elsewhere.test"))
        .await
        .unwrap();
    assert!(
        e.to_xml().contains("<remote-server-not-found"),
        "{}",
        e.to_xml()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_conflict_replaces_the_old_session() {
    let node = node("conflict", &[]);
    let mut first = node.login("alice", "pw", Some("same")).await;
    let mut second = node.login("alice", "pw", Some("same")).await;
    assert_eq!(first.jid, second.jid);
    let mut seen = String::new();
    loop {
        match first.next(T).await {
            Ok(Event::Stanza(e)) => seen.push_str(&e.to_xml()),
            Ok(Event::StreamEnd) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert!(seen.contains("<conflict"), "{seen}");
    // The newcomer keeps working and receives what is sent to that resource.
    second.send(&presence(0)).await.unwrap();
    sync(&mut second, "s").await;
    let mut bob = node.login("bob", "pw", None).await;
    bob.send(&msg("alice@route.test/same", "chat", "to-new"))
        .await
        .unwrap();
    second.wait_for(T, is_msg("to-new")).await.unwrap();
    // A server-generated resource when none is asked.
    let c = node.login("alice", "pw", None).await;
    assert!(c.jid.resource().is_some_and(|r| !r.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_login_only_when_enabled() {
    let off = node("anon-off", &[]);
    assert!(
        Client::login_anonymous(off.addr(), &off.domain, off.cert())
            .await
            .is_err(),
        "ANONYMOUS accepted while disabled"
    );
    let on = node(
        "anon-on",
        &[("allow_anonymous = false", "allow_anonymous = true")],
    );
    let mut anon = Client::login_anonymous(on.addr(), &on.domain, on.cert())
        .await
        .unwrap();
    assert_eq!(anon.jid.domain(), "route.test");
    let mut bob = on.login("bob", "pw", Some("b")).await;
    bob.send(&presence(0)).await.unwrap();
    sync(&mut bob, "s").await;
    anon.send(&msg("bob@route.test", "chat", "from a stranger"))
        .await
        .unwrap();
    let m = bob.wait_for(T, is_msg("from a stranger")).await.unwrap();
    assert_eq!(m.get_attr("from"), Some(anon.jid.to_string().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_close_and_unavailable_broadcast() {
    let node = node("close", &[]);
    let mut a1 = node.login("alice", "pw", Some("one")).await;
    let mut a2 = node.login("alice", "pw", Some("two")).await;
    a1.send(&presence(0)).await.unwrap();
    a2.send(&presence(0)).await.unwrap();
    // Each resource sees the other's presence.
    a1.wait_for(T, |e| {
        e.name == "presence" && e.get_attr("from") == Some("alice@route.test/two")
    })
    .await
    .unwrap();
    a2.send_raw("</stream:stream>").await.unwrap();
    // The server answers with its own stream close (stanzas already queued may come first).
    loop {
        match a2.next(T).await {
            Ok(Event::StreamEnd) => break,
            Ok(Event::Stanza(_)) => {}
            other => panic!("expected the server to close the stream, got {other:?}"),
        }
    }
    let p = a1
        .wait_for(T, |e| {
            e.name == "presence" && e.get_attr("type") == Some("unavailable")
        })
        .await
        .unwrap();
    assert_eq!(p.get_attr("from"), Some("alice@route.test/two"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_is_limited_per_address() {
    let node = node(
        "flood",
        &[(
            "max_connections_per_ip = 1000",
            "max_connections_per_ip = 4",
        )],
    );
    // Four connections that the node has admitted: each got its stream features.
    // (A slot of the harness's readiness probe may not be free yet: retry then.)
    let mut held = Vec::new();
    while held.len() < 4 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(node.addr()).await.unwrap();
        s.write_all(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='route.test' version='1.0'>").await.unwrap();
        let mut got = String::new();
        let mut buf = [0u8; 2048];
        while !got.contains("</stream:features>") && !got.contains("</stream:stream>") {
            let n = tokio::time::timeout(T, s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            if n == 0 {
                break;
            }
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        if got.contains("</stream:features>") {
            held.push(s);
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut extra = tokio::net::TcpStream::connect(node.addr()).await.unwrap();
    let mut got = String::new();
    let _ = tokio::time::timeout(T, async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1024];
        while let Ok(n) = extra.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(got.contains("<policy-violation"), "{got}\n{}", node.log());
    drop(held);
    // Slots are given back when connections close: a new connection is
    // offered stream features again (the node notices the closes soon).
    let t0 = std::time::Instant::now();
    loop {
        let mut c = tokio::net::TcpStream::connect(node.addr()).await.unwrap();
        let mut got = String::new();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        c.write_all(b"<?xml version='1.0'?><stream:stream to='route.test' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>").await.unwrap();
        let mut buf = [0u8; 1024];
        while !got.contains("</stream:features>") && !got.contains("policy-violation") {
            match tokio::time::timeout(T, c.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => break,
            }
        }
        if got.contains("</stream:features>") {
            break;
        }
        assert!(t0.elapsed() < T, "no slot came back: {got}\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.login("alice", "pw", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_clients_system_shutdown() {
    let mut node = node("shutdown", &[]);
    let mut a = node.login("alice", "pw", None).await;
    a.send(&presence(0)).await.unwrap();
    sync(&mut a, "s").await;
    let st = tokio::task::block_in_place(|| node.stop());
    assert!(st.success(), "node exit status {st}");
    let mut seen = String::new();
    loop {
        match a.next(T).await {
            Ok(Event::Stanza(e)) => seen.push_str(&e.to_xml()),
            Ok(Event::StreamEnd) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert!(seen.contains("<system-shutdown"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_storage_is_bounded_per_account() {
    let node = node(
        "offline",
        &[("max_offline_per_user = 1000", "max_offline_per_user = 2")],
    );
    let mut alice = node.login("alice", "pw", None).await;
    for i in 0..3 {
        alice
            .send(&msg("bob@route.test", "chat", &format!("o{i}")))
            .await
            .unwrap();
    }
    // The third does not fit: it bounces instead of vanishing.
    let e = alice
        .wait_for(T, |e| e.get_attr("type") == Some("error"))
        .await
        .unwrap();
    assert_eq!(e.child_text("body", NS_CLIENT).as_deref(), Some("o2"));
    let mut bob = node.login("bob", "pw", None).await;
    bob.send(&presence(0)).await.unwrap();
    bob.wait_for(T, is_msg("o0")).await.unwrap();
    bob.wait_for(T, is_msg("o1")).await.unwrap();
    nothing(&mut bob, is_msg("o2")).await;
}
