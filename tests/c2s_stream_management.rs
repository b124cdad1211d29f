//! XEP-0198 on client streams: a connection cut under load loses nothing — resumed, or re-routed to offline storage.

mod common;

use common::Node;
use intercloud::xmpp::client::Client;
use intercloud::xmpp::codec::Event;
use intercloud_actors::element::{Element, NS_CLIENT};
use intercloud_actors::sm::NS_SM;
use std::collections::BTreeSet;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const N: usize = 2000;

fn msg(to: &str, i: usize) -> Element {
    Element::new("message", NS_CLIENT)
        .attr("to", to)
        .attr("type", "chat")
        .child(Element::new("body", NS_CLIENT).text(format!("m{i}")))
}

/// Reads stanzas, answering ack requests, until `stop` says so or the stream ends.
/// Returns the number of stanzas handled (XEP-0198's h) and the message numbers seen.
async fn receive(
    c: &mut Client,
    h: &mut u32,
    seen: &mut BTreeSet<usize>,
    stop: impl Fn(&BTreeSet<usize>) -> bool,
) {
    while !stop(seen) {
        match c.next(T).await {
            Ok(Event::Stanza(e)) if e.ns == NS_SM => {
                if e.name == "r" {
                    c.send_raw(&format!("<a xmlns='urn:xmpp:sm:3' h='{h}'/>"))
                        .await
                        .unwrap();
                }
            }
            Ok(Event::Stanza(e)) => {
                *h = h.wrapping_add(1);
                if e.name == "message" {
                    if let Some(b) = e.child_text("body", NS_CLIENT) {
                        if let Some(i) = b.strip_prefix('m').and_then(|n| n.parse().ok()) {
                            seen.insert(i);
                        }
                    }
                }
            }
            Ok(_) => return,
            Err(e) => {
                eprintln!("receiving: {e} after {} messages", seen.len());
                return;
            }
        }
    }
}

/// Sends N messages from alice to `to`, as fast as the socket takes them.
async fn flood(node: &Node, to: &'static str) -> tokio::task::JoinHandle<Client> {
    let mut alice = node.login("alice", "pw", Some("a")).await;
    tokio::spawn(async move {
        let mut batch = String::new();
        for i in 0..N {
            msg(to, i).write_to(&mut batch, NS_CLIENT);
            if i % 50 == 49 {
                alice.send_raw(&batch).await.unwrap();
                batch.clear();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        alice.send_raw(&batch).await.unwrap();
        alice
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connection_is_resumed_without_loss() {
    let mut node = Node::init("smres", "sm.test", &[]);
    node.add_user("alice", "pw");
    node.add_user("bob", "pw");
    node.start();
    let mut bob = node.login("bob", "pw", Some("b")).await;
    let id = bob.enable_sm().await.unwrap();
    bob.send(&Element::new("presence", NS_CLIENT))
        .await
        .unwrap();
    let sender = flood(&node, "bob@sm.test/b").await;
    let mut h = 0u32;
    let mut seen = BTreeSet::new();
    receive(&mut bob, &mut h, &mut seen, |s| s.len() >= 300).await;
    // Cut the socket under load: no </stream:stream>, no last ack.
    drop(bob);
    let (mut bob, resumed) =
        Client::resume(node.addr(), "sm.test", node.cert(), "bob", "pw", &id, h)
            .await
            .unwrap_or_else(|e| panic!("resume: {e}\n{}", node.log()));
    assert_eq!(resumed.get_attr("previd"), Some(id.as_str()));
    receive(&mut bob, &mut h, &mut seen, |s| s.len() >= N).await;
    assert_eq!(
        seen.len(),
        N,
        "missing: {:?}",
        (0..N)
            .filter(|i| !seen.contains(i))
            .take(10)
            .collect::<Vec<_>>()
    );
    sender.await.unwrap();
    assert!(node.log().contains("session resumed"), "{}", node.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_stanzas_of_a_dead_session_go_to_offline_storage() {
    let mut node = Node::init(
        "smoff",
        "sm.test",
        &[
            ("sm_resume_timeout_secs = 300", "sm_resume_timeout_secs = 1"),
            // Room for all that may wait (beyond it, senders get errors, as they should).
            ("max_offline_per_user = 1000", "max_offline_per_user = 5000"),
        ],
    );
    node.add_user("alice", "pw");
    node.add_user("bob", "pw");
    node.start();
    let mut bob = node.login("bob", "pw", Some("b")).await;
    bob.enable_sm().await.unwrap();
    bob.send(&Element::new("presence", NS_CLIENT))
        .await
        .unwrap();
    let sender = flood(&node, "bob@sm.test").await;
    let mut h = 0u32;
    let mut seen = BTreeSet::new();
    // Bob handles some, acknowledges what he handled, and then his connection dies.
    receive(&mut bob, &mut h, &mut seen, |s| s.len() >= 300).await;
    bob.send_raw(&format!("<a xmlns='urn:xmpp:sm:3' h='{h}'/>"))
        .await
        .unwrap();
    drop(bob);
    sender.await.unwrap();
    // Not resumed within the timeout: what was not acknowledged, and what
    // arrived meanwhile, waits in offline storage for the next session.
    // (The session may also end at once, when the server's write to the
    // dead socket fails first; either way it re-routes what it holds.)
    common::wait_for("bob's session to end and re-route what it held", || {
        node.log()
            .contains("re-routing unacknowledged stanzas jid=bob@sm.test/b ")
    });
    let mut bob = node.login("bob", "pw", Some("b2")).await;
    bob.send(&Element::new("presence", NS_CLIENT))
        .await
        .unwrap();
    let mut h2 = 0u32;
    receive(&mut bob, &mut h2, &mut seen, |s| s.len() >= N).await;
    assert_eq!(
        seen.len(),
        N,
        "missing: {:?}",
        (0..N)
            .filter(|i| !seen.contains(i))
            .take(10)
            .collect::<Vec<_>>()
    );
}

/// Counts log lines containing `what`.
fn lines(node: &Node, what: &str) -> usize {
    node.log().lines().filter(|l| l.contains(what)).count()
}

/// One account on several devices, every connection dropped with
/// resumption on: one message to the bare JID reaches each detached session;
/// as their resumption times out, the message must come back once — not
/// once per session, nor 2^(N-1) times as copies re-routed to each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_several_dead_sessions_is_delivered_once() {
    const DEVICES: usize = 4;
    let mut node = Node::init(
        "smonce",
        "sm.test",
        &[("sm_resume_timeout_secs = 300", "sm_resume_timeout_secs = 1")],
    );
    node.add_user("alice", "pw");
    node.add_user("bob", "pw");
    node.start();
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let mut bob = node.login("bob", "pw", Some(&format!("d{i}"))).await;
        bob.enable_sm().await.unwrap();
        bob.send_raw("<presence><priority>1</priority></presence>")
            .await
            .unwrap();
        common::sync(&mut bob, "up").await;
        devices.push(bob);
    }
    drop(devices);
    common::wait_for("every connection's loss to be noticed", || {
        lines(&node, "session kept for resumption") == DEVICES
    });
    let mut alice = node.login("alice", "pw", Some("a")).await;
    alice
        .send(&msg("bob@sm.test", 7).attr("id", "once"))
        .await
        .unwrap();
    common::sync(&mut alice, "sent").await;
    common::wait_for("every session to end unresumed", || {
        lines(&node, "not resumed in time") == DEVICES
    });
    let mut bob = node.login("bob", "pw", Some("fresh")).await;
    bob.send(&Element::new("presence", NS_CLIENT))
        .await
        .unwrap();
    // The message comes from offline storage at the initial presence, all
    // stored copies at once; a ping sent after the first one is answered
    // after any other.
    let is_m7 = |e: &Element| {
        e.name == "message" && e.child_text("body", NS_CLIENT).as_deref() == Some("m7")
    };
    bob.wait_for(T, is_m7)
        .await
        .unwrap_or_else(|e| panic!("the message never came: {e}\n{}", node.log()));
    let mut copies = 1;
    bob.send_raw("<iq type='get' id='after'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    loop {
        match bob.next(T).await {
            Ok(Event::Stanza(e)) if is_m7(&e) => copies += 1,
            Ok(Event::Stanza(e)) if e.get_attr("id") == Some("after") => break,
            Ok(Event::Stanza(_)) => {}
            other => panic!("{other:?} after {copies} copies\n{}", node.log()),
        }
    }
    assert_eq!(copies, 1, "{}", node.log());
}
