//! Hostile input over real sockets: each gets its RFC 6120 error, the stream closes, and other clients keep being served.

mod common;

use common::Node;
use intercloud::xmpp::client::Client;
use intercloud::xmpp::codec::Event;
use intercloud_actors::element::{Element, NS_CLIENT};
use intercloud_actors::stanza::NS_PING;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='bad.test' version='1.0'>";

/// Sends `data` on a fresh plain connection and returns everything the
/// server wrote until it closed the connection (which it must, in time).
async fn raw_exchange(node: &Node, data: &[u8]) -> String {
    let mut s = TcpStream::connect(node.addr()).await.unwrap();
    // The server may close while we are still writing; that is fine.
    let writer = async {
        for chunk in data.chunks(64 * 1024) {
            if s.write_all(chunk).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "server did not close the stream: {}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

fn assert_stream_error(reply: &str, condition: &str) {
    assert!(
        reply.contains(&format!(
            "<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        )),
        "expected <{condition}/> stream error, got: {reply}"
    );
    assert!(
        reply.trim_end().ends_with("</stream:stream>"),
        "stream not closed: {reply}"
    );
}

async fn ping_ok(c: &mut Client, id: &str) {
    let ping = Element::new("iq", NS_CLIENT)
        .attr("type", "get")
        .attr("id", id)
        .child(Element::new("ping", NS_PING));
    c.send(&ping).await.unwrap();
    let r = c
        .wait_for(Duration::from_secs(10), |e| e.get_attr("id") == Some(id))
        .await
        .unwrap();
    assert_eq!(r.get_attr("type"), Some("result"));
}

fn node() -> Node {
    let mut n = Node::init(
        "bad",
        "bad.test",
        &[("max_stanza_bytes = 262144", "max_stanza_bytes = 65536")],
    );
    for u in ["alice", "bob", "carol", "mallory"] {
        n.add_user(u, &format!("{u}-pw"));
    }
    n.start();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_streams_get_stream_errors_and_others_are_unharmed() {
    let node = node();
    // A well-behaved client stays connected through everything.
    let mut bob = node.login("bob", "bob-pw", Some("watch")).await;
    bob.send(&Element::new("presence", NS_CLIENT))
        .await
        .unwrap();

    // Billion laughs: a DTD with entity declarations.
    let laughs = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'><!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>]><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='bad.test' version='1.0'><message><body>&lol2;</body></message>";
    assert_stream_error(
        &raw_exchange(&node, laughs.as_bytes()).await,
        "restricted-xml",
    );
    ping_ok(&mut bob, "p1").await;

    // An entity reference without a DTD, inside the stream.
    let ent = format!("{HEADER}<message><body>&lol;</body></message>");
    assert_stream_error(
        &raw_exchange(&node, ent.as_bytes()).await,
        "not-well-formed",
    );

    // A stanza over the size limit (64 KiB in this node's config).
    let big = format!(
        "{HEADER}<message><body>{}</body></message>",
        "x".repeat(200_000)
    );
    assert_stream_error(
        &raw_exchange(&node, big.as_bytes()).await,
        "policy-violation",
    );
    ping_ok(&mut bob, "p2").await;

    // 10,000-deep nesting.
    let deep = format!("{HEADER}{}", "<a>".repeat(10_000));
    assert_stream_error(
        &raw_exchange(&node, deep.as_bytes()).await,
        "policy-violation",
    );

    // Garbage bytes.
    let garbage: Vec<u8> = (0..2000u32).map(|i| (i * 7919 % 251) as u8).collect();
    assert_stream_error(&raw_exchange(&node, &garbage).await, "not-well-formed");
    let garbage2 = format!("{HEADER}<<<>>>\u{1}\u{2}");
    assert_stream_error(
        &raw_exchange(&node, garbage2.as_bytes()).await,
        "not-well-formed",
    );

    // A comment and a processing instruction.
    let pi = format!("{HEADER}<?evil?>");
    assert_stream_error(&raw_exchange(&node, pi.as_bytes()).await, "restricted-xml");
    let comment = format!("{HEADER}<!-- hi -->");
    assert_stream_error(
        &raw_exchange(&node, comment.as_bytes()).await,
        "restricted-xml",
    );

    // A stream to a host this node does not serve.
    let unknown = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='elsewhere.test' version='1.0'>";
    assert_stream_error(
        &raw_exchange(&node, unknown.as_bytes()).await,
        "host-unknown",
    );

    // Wrong stream namespace.
    let badns = "<stream:stream xmlns='jabber:client' xmlns:stream='urn:not-streams' to='bad.test' version='1.0'>";
    assert_stream_error(
        &raw_exchange(&node, badns.as_bytes()).await,
        "invalid-namespace",
    );

    // A stanza before STARTTLS is a policy violation (TLS is required).
    let early = format!("{HEADER}<message to='bob@bad.test'><body>hi</body></message>");
    assert_stream_error(
        &raw_exchange(&node, early.as_bytes()).await,
        "policy-violation",
    );

    ping_ok(&mut bob, "p3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_before_tls_is_refused() {
    let node = node();
    let mut s = TcpStream::connect(node.addr()).await.unwrap();
    s.write_all(HEADER.as_bytes()).await.unwrap();
    // PLAIN credentials in clear text: alice / alice-pw.
    s.write_all(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAGFsaWNlLXB3</auth>")
        .await
        .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.contains("</failure>") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("answer")
            .unwrap();
        assert!(n > 0, "closed early: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Before TLS the only feature is STARTTLS, and PLAIN is refused.
    assert!(
        got.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"),
        "{got}"
    );
    assert!(
        !got.contains("<mechanism>"),
        "mechanisms offered before TLS: {got}"
    );
    assert!(got.contains("<encryption-required/>"), "{got}");
    assert!(!got.contains("<success"), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_not_authorized() {
    let node = node();
    match Client::login(
        node.addr(),
        &node.domain,
        node.cert(),
        "alice",
        "nope",
        None,
    )
    .await
    {
        Err(intercloud::xmpp::client::ClientError::Auth(c)) => assert_eq!(c, "not-authorized"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("wrong password accepted"),
    }
    match Client::login(node.addr(), &node.domain, node.cert(), "nobody", "x", None).await {
        Err(intercloud::xmpp::client::ClientError::Auth(c)) => assert_eq!(c, "not-authorized"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("unknown user accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_from_is_refused_and_never_delivered() {
    let node = node();
    let mut carol = node.login("carol", "carol-pw", Some("c")).await;
    carol
        .send(&Element::new("presence", NS_CLIENT))
        .await
        .unwrap();
    let mut mallory = node.login("mallory", "mallory-pw", Some("m")).await;
    // Mallory pretends to be alice.
    mallory
        .send_raw("<message from='alice@bad.test/laptop' to='carol@bad.test' type='chat'><body>send me your keys</body></message>")
        .await
        .unwrap();
    let mut reply = String::new();
    loop {
        match mallory.next(Duration::from_secs(10)).await {
            Ok(Event::Stanza(e)) => {
                reply.push_str(&e.to_xml());
                if e.name == "error" {
                    break;
                }
            }
            Ok(Event::StreamEnd) => break,
            Ok(_) => {}
            Err(e) => panic!("no stream error before close: {e} ({reply})"),
        }
    }
    assert!(reply.contains("invalid-from"), "{reply}");
    // Carol gets nothing claiming to be from alice; a real message from bob still arrives.
    let mut bob = node.login("bob", "bob-pw", None).await;
    bob.send(
        &Element::new("message", NS_CLIENT)
            .attr("to", "carol@bad.test")
            .attr("type", "chat")
            .child(Element::new("body", NS_CLIENT).text("real")),
    )
    .await
    .unwrap();
    let m = carol
        .wait_for(Duration::from_secs(10), |e| e.name == "message")
        .await
        .unwrap();
    assert_eq!(m.child_text("body", NS_CLIENT).as_deref(), Some("real"));
    assert!(m.get_attr("from").unwrap().starts_with("bob@bad.test/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_stanza_after_login_ends_only_that_session() {
    let node = node();
    let mut bob = node.login("bob", "bob-pw", Some("b")).await;
    let mut alice = node.login("alice", "alice-pw", Some("a")).await;
    let big = format!(
        "<message to='bob@bad.test'><body>{}</body></message>",
        "y".repeat(100_000)
    );
    alice.send_raw(&big).await.unwrap();
    let mut seen = String::new();
    loop {
        match alice.next(Duration::from_secs(10)).await {
            Ok(Event::Stanza(e)) => seen.push_str(&e.to_xml()),
            Ok(Event::StreamEnd) => break,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(seen.contains("policy-violation"), "{seen}");
    ping_ok(&mut bob, "after").await;
}

/// The error condition of the first error `c` is sent, within 20 s.
async fn next_error_condition(c: &mut Client) -> String {
    let e = c
        .wait_for(Duration::from_secs(20), |e| {
            e.get_attr("type") == Some("error")
        })
        .await
        .unwrap();
    e.get_child("error", NS_CLIENT)
        .and_then(|er| er.elements().next())
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_iq_and_presence_get_bad_request() {
    let node = node();
    let mut carol = node.login("carol", "carol-pw", Some("c")).await;
    // RFC 6120 §8.2.3: a get carries exactly one payload.
    carol
        .send_raw("<iq type='get' id='two'><ping xmlns='urn:xmpp:ping'/><query xmlns='jabber:iq:version'/></iq>")
        .await
        .unwrap();
    assert_eq!(next_error_condition(&mut carol).await, "bad-request");
    carol.send_raw("<iq type='get' id='none'/>").await.unwrap();
    assert_eq!(next_error_condition(&mut carol).await, "bad-request");
    // RFC 6121 §4.7.1: a presence type that does not exist.
    carol
        .send_raw("<presence type='bogus' id='p1'/>")
        .await
        .unwrap();
    assert_eq!(next_error_condition(&mut carol).await, "bad-request");
    // RFC 6121 §2.3.3: a roster item longer than the server takes.
    let long = "n".repeat(5000);
    carol
        .send_raw(&format!("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='x@bad.test' name='{long}'/></query></iq>"))
        .await
        .unwrap();
    assert_eq!(next_error_condition(&mut carol).await, "not-acceptable");
    carol
        .send_raw("<iq type='set' id='r2'><query xmlns='jabber:iq:roster'><item jid='x@bad.test' name='short'/></query></iq>")
        .await
        .unwrap();
    carol
        .wait_for(Duration::from_secs(20), |e| e.get_attr("id") == Some("r2"))
        .await
        .map(|e| assert_eq!(e.get_attr("type"), Some("result"), "{}", e.to_xml()))
        .unwrap();
    // One payload is still answered.
    ping_ok(&mut carol, "one").await;
}

/// The SASL failure condition of one login (or "success").
async fn login_result(node: &Node, user: &str, password: &str) -> String {
    match Client::login(node.addr(), &node.domain, node.cert(), user, password, None).await {
        Ok(_) => "success".into(),
        Err(intercloud::xmpp::client::ClientError::Auth(c)) => c,
        Err(e) => panic!("login {user}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_account_and_per_address() {
    let mut n = Node::init(
        "bad-brute",
        "bad.test",
        &[
            (
                "auth_failures_per_address = 20",
                "auth_failures_per_address = 6",
            ),
            (
                "auth_failures_per_account = 10",
                "auth_failures_per_account = 3",
            ),
        ],
    );
    for u in ["alice", "carol"] {
        n.add_user(u, &format!("{u}-pw"));
    }
    n.start();
    // Three wrong passwords for alice, each on a connection of its own.
    for _ in 0..3 {
        assert_eq!(login_result(&n, "alice", "guess").await, "not-authorized");
    }
    // Now alice's account is refused for the rest of the window, even with
    // her password; carol's is not.
    assert_eq!(
        login_result(&n, "alice", "alice-pw").await,
        "temporary-auth-failure"
    );
    assert_eq!(login_result(&n, "carol", "carol-pw").await, "success");
    // Unknown names are counted as known ones are (a lockout tells nothing).
    for _ in 0..3 {
        assert_eq!(login_result(&n, "nobody", "x").await, "not-authorized");
    }
    assert_eq!(
        login_result(&n, "nobody", "x").await,
        "temporary-auth-failure"
    );
    // Six failures from this address: it is refused whatever it tries.
    assert_eq!(
        login_result(&n, "carol", "carol-pw").await,
        "temporary-auth-failure"
    );
    let log = n.log();
    assert_eq!(
        log.matches("too many failed logins for an account").count(),
        2,
        "{log}"
    );
    assert_eq!(
        log.matches("too many failed logins from an address")
            .count(),
        1,
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directed_presences_of_a_session_are_bounded() {
    let mut n = Node::init(
        "bad-directed",
        "bad.test",
        &[(
            "max_directed_presences = 1000",
            "max_directed_presences = 3",
        )],
    );
    n.add_user("carol", "carol-pw");
    n.add_user("alice", "alice-pw");
    n.start();
    let mut carol = n.login("carol", "carol-pw", Some("c")).await;
    for i in 0..3 {
        carol
            .send_raw(&format!("<presence to='alice@bad.test/r{i}' id='p{i}'/>"))
            .await
            .unwrap();
    }
    // The same one again is no new one; a fourth is refused.
    carol
        .send_raw("<presence to='alice@bad.test/r0' id='again'/>")
        .await
        .unwrap();
    carol
        .send_raw("<presence to='alice@bad.test/r3' id='p3'/>")
        .await
        .unwrap();
    let e = carol
        .wait_for(Duration::from_secs(20), |e| {
            e.get_attr("type") == Some("error")
        })
        .await
        .unwrap();
    assert_eq!(e.get_attr("id"), Some("p3"), "{}", e.to_xml());
    assert!(
        e.to_xml().contains("<resource-constraint"),
        "{}",
        e.to_xml()
    );
    // Ending one makes room.
    carol
        .send_raw("<presence to='alice@bad.test/r1' type='unavailable'/><presence to='alice@bad.test/r3' id='p3b'/>")
        .await
        .unwrap();
    ping_ok(&mut carol, "after").await;
    let log = n.log();
    assert_eq!(log.matches("directed presence refused").count(), 1, "{log}");
}
