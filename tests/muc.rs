//! Multi-user chat (XEP-0045) on a real node: a stock client (slixmpp's xep_0045) through rooms, talk, moderation and passwords; a persistent room surviving `kill -9`; an occupant from another node over s2s.

mod common;

use common::Node;
use intercloud::xmpp::client::Client;
use intercloud_actors::element::{Element, NS_CLIENT};
use std::time::Duration;

const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_USER: &str = "http://jabber.org/protocol/muc#user";
const NS_OWNER: &str = "http://jabber.org/protocol/muc#owner";
const T: Duration = Duration::from_secs(20);

#[test]
fn slixmpp_creates_talks_moderates_and_destroys() {
    let mut node = Node::init("muc-slix", "muc.test", &[]);
    for u in ["alice", "bob", "carol", "dave"] {
        node.add_user(u, &format!("{u}-pw"));
    }
    node.start();
    let stdout = common::slixmpp(
        "muc_flow.py",
        &[
            ("port", node.port.to_string()),
            ("domain", node.domain.clone()),
        ],
        &|| node.log(),
    );
    // The JSON line comes last (slixmpp prints on its own while joining rooms).
    let last = stdout.lines().last().unwrap_or("");
    let r: serde_json::Value = serde_json::from_str(last).expect("a JSON line");
    assert_eq!(
        r["identities"],
        serde_json::json!([["conference", "text"]]),
        "{r}"
    );
    assert_eq!(r["created"], serde_json::json!([110, 201]), "{r}");
    assert_eq!(r["subject"], "Intercloud", "{r}");
    // slixmpp counts its own presence among the occupants it saw online.
    assert_eq!(r["bob_sees"], serde_json::json!(["alice", "bob"]), "{r}");
    assert_eq!(r["bob_role"], "participant", "{r}");
    assert_eq!(r["in_order"], true, "{r}");
    assert_eq!(
        r["history"],
        serde_json::json!(["m45", "m46", "m47", "m48", "m49"]),
        "{r}"
    );
    assert_eq!(
        r["private"],
        serde_json::json!(["lounge@conference.muc.test/bob", "psst"]),
        "{r}"
    );
    assert_eq!(r["conflict"], "conflict", "{r}");
    assert_eq!(r["banned"], "forbidden", "{r}");
    assert_eq!(r["no_password"], "not-authorized", "{r}");
    assert_eq!(r["kicked_codes"], serde_json::json!([[110, 307]]), "{r}");
    assert!(node.stop().success(), "node did not exit cleanly");
}

fn join(room: &str, nick: &str) -> Element {
    Element::new("presence", NS_CLIENT)
        .attr("to", format!("{room}/{nick}"))
        .child(Element::new("x", NS_MUC))
}

fn groupchat(room: &str, text: &str) -> Element {
    Element::new("message", NS_CLIENT)
        .attr("to", room)
        .attr("type", "groupchat")
        .child(Element::new("body", NS_CLIENT).text(text))
}

/// Waits for the end of a join: the subject message.
async fn joined(c: &mut Client, room: &str, logs: &dyn Fn() -> String) {
    c.wait_for(T, |e| {
        e.name == "message"
            && e.get_child("subject", NS_CLIENT).is_some()
            && e.get_attr("from").is_some_and(|f| f.starts_with(room))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
}

/// Configures `room` with these fields (an owner's submit form).
fn configure(room: &str, fields: &[(&str, &str)]) -> Element {
    let mut x = Element::new("x", "jabber:x:data").attr("type", "submit");
    for (k, v) in fields {
        x = x.child(
            Element::new("field", "jabber:x:data")
                .attr("var", *k)
                .child(Element::new("value", "jabber:x:data").text(*v)),
        );
    }
    Element::new("iq", NS_CLIENT)
        .attr("type", "set")
        .attr("id", "cfg")
        .attr("to", room)
        .child(Element::new("query", NS_OWNER).child(x))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_room_survives_kill_9() {
    let mut node = Node::init("muc-kill", "muc.test", &[]);
    node.add_user("alice", "pw");
    node.add_user("bob", "pw");
    node.start();
    let room = "keep@conference.muc.test";
    let mut alice = node.login("alice", "pw", Some("a")).await;
    alice.send(&join(room, "alice")).await.unwrap();
    joined(&mut alice, room, &|| node.log()).await;
    alice
        .send(&configure(
            room,
            &[
                ("muc#roomconfig_persistentroom", "1"),
                ("muc#roomconfig_membersonly", "1"),
                ("muc#roomconfig_roomname", "Kept"),
            ],
        ))
        .await
        .unwrap();
    let r = alice
        .wait_for(T, |e| e.get_attr("id") == Some("cfg"))
        .await
        .unwrap();
    assert_eq!(r.get_attr("type"), Some("result"), "{}", r.to_xml());
    node.kill9();
    node.start();
    // Members only survived: bob, no member, is refused; alice, the owner, enters.
    let mut bob = node.login("bob", "pw", Some("b")).await;
    bob.send(&join(room, "bob")).await.unwrap();
    let refused = bob
        .wait_for(T, |e| {
            e.name == "presence" && e.get_attr("type") == Some("error")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
    assert!(
        refused.to_xml().contains("<registration-required"),
        "{}",
        refused.to_xml()
    );
    let mut alice = node.login("alice", "pw", Some("a")).await;
    alice.send(&join(room, "alice")).await.unwrap();
    let me = alice
        .wait_for(T, |e| {
            e.name == "presence" && e.get_attr("from") == Some("keep@conference.muc.test/alice")
        })
        .await
        .unwrap();
    let item = me
        .get_child("x", NS_USER)
        .and_then(|x| x.get_child("item", NS_USER))
        .unwrap();
    assert_eq!(
        item.get_attr("affiliation"),
        Some("owner"),
        "{}",
        me.to_xml()
    );
}

/// Alice on cloud1 and bob on cloud2 (federated), both in meet@conference.cloud1.test.
async fn meeting(tag: &str) -> (common::Ca, Node, Node, Client, Client) {
    let ca = common::Ca::new(tag);
    let mut a = Node::init(&format!("{tag}1"), "cloud1.test", &[]);
    let mut b = Node::init(&format!("{tag}2"), "cloud2.test", &[]);
    a.federate(&b, Some(&ca), Some("external"));
    a.add_user("alice", "pw");
    b.add_user("bob", "pw");
    a.start();
    b.start();
    let room = "meet@conference.cloud1.test";
    let logs = || format!("{}\n{}", a.log(), b.log());
    let mut alice = a.login("alice", "pw", Some("a")).await;
    let mut bob = b.login("bob", "pw", Some("b")).await;
    alice.send(&join(room, "alice")).await.unwrap();
    joined(&mut alice, room, &logs).await;
    alice.send(&configure(room, &[])).await.unwrap();
    alice
        .wait_for(T, |e| e.get_attr("id") == Some("cfg"))
        .await
        .unwrap();
    bob.send(&join(room, "bob")).await.unwrap();
    joined(&mut bob, room, &logs).await;
    (ca, a, b, alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_occupant_from_another_node_talks_over_s2s() {
    let (_ca, a, b, mut alice, mut bob) = meeting("muc-s2s").await;
    let room = "meet@conference.cloud1.test";
    let logs = || format!("{}\n{}", a.log(), b.log());
    for i in 0..5 {
        alice
            .send(&groupchat(room, &format!("a{i}")))
            .await
            .unwrap();
        bob.send(&groupchat(room, &format!("b{i}"))).await.unwrap();
    }
    // Each hears both, in order per sender.
    for c in [&mut alice, &mut bob] {
        let mut from_alice = Vec::new();
        let mut from_bob = Vec::new();
        while from_alice.len() < 5 || from_bob.len() < 5 {
            let m = c
                .wait_for(T, |e| {
                    e.name == "message"
                        && e.get_attr("type") == Some("groupchat")
                        && e.get_child("body", NS_CLIENT).is_some()
                })
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
            let body = m.child_text("body", NS_CLIENT).unwrap();
            match m.get_attr("from") {
                Some("meet@conference.cloud1.test/alice") => from_alice.push(body),
                Some("meet@conference.cloud1.test/bob") => from_bob.push(body),
                other => panic!("from {other:?}"),
            }
        }
        assert_eq!(from_alice, ["a0", "a1", "a2", "a3", "a4"]);
        assert_eq!(from_bob, ["b0", "b1", "b2", "b3", "b4"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupants_leave_when_their_server_dies() {
    let (_ca, a, mut b, mut alice, _bob) = meeting("muc-gone").await;
    // Cloud2 dies without closing its streams: bob is gone from the room.
    b.kill9();
    let left = alice
        .wait_for(T, |e| {
            e.name == "presence"
                && e.get_attr("type") == Some("unavailable")
                && e.get_attr("from") == Some("meet@conference.cloud1.test/bob")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log()));
    let codes: Vec<&str> = left
        .get_child("x", NS_USER)
        .map(|x| x.elements().filter_map(|s| s.get_attr("code")).collect())
        .unwrap_or_default();
    assert_eq!(codes, ["333"], "{}", left.to_xml());
}
