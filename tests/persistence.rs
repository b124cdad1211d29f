//! Accounts, rosters and offline messages survive `kill -9` of the node.

mod common;

use common::Node;
use intercloud_actors::element::{Element, NS_CLIENT};
use intercloud_actors::stanza::NS_ROSTER;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_kill_9() {
    let mut node = Node::init("persist", "persist.test", &[]);
    node.add_user("alice", "alice-pw");
    node.add_user("bob", "bob-pw");
    node.start();

    let mut alice = node.login("alice", "alice-pw", Some("a")).await;
    let set = Element::new("iq", NS_CLIENT)
        .attr("type", "set")
        .attr("id", "r1")
        .child(
            Element::new("query", NS_ROSTER).child(
                Element::new("item", NS_ROSTER)
                    .attr("jid", "bob@persist.test")
                    .attr("name", "Bob")
                    .child(Element::new("group", NS_ROSTER).text("Clouds")),
            ),
        );
    alice.send(&set).await.unwrap();
    let r = alice
        .wait_for(T, |e| e.get_attr("id") == Some("r1"))
        .await
        .unwrap();
    assert_eq!(r.get_attr("type"), Some("result"), "{}", r.to_xml());
    // Bob is offline: the message is stored.
    alice
        .send(
            &Element::new("message", NS_CLIENT)
                .attr("to", "bob@persist.test")
                .attr("type", "chat")
                .child(Element::new("body", NS_CLIENT).text("kept across crashes")),
        )
        .await
        .unwrap();
    // A ping round trip makes sure the message was handled before the crash.
    let ping = Element::new("iq", NS_CLIENT)
        .attr("type", "get")
        .attr("id", "p")
        .attr("to", "bob@persist.test")
        .child(Element::new("ping", "urn:xmpp:ping"));
    alice.send(&ping).await.unwrap();
    alice
        .wait_for(T, |e| e.get_attr("id") == Some("p"))
        .await
        .unwrap();

    node.kill9();
    node.start();

    let mut alice = node.login("alice", "alice-pw", Some("a")).await;
    let get = Element::new("iq", NS_CLIENT)
        .attr("type", "get")
        .attr("id", "r2")
        .child(Element::new("query", NS_ROSTER));
    alice.send(&get).await.unwrap();
    let r = alice
        .wait_for(T, |e| e.get_attr("id") == Some("r2"))
        .await
        .unwrap();
    let item = r
        .get_child("query", NS_ROSTER)
        .and_then(|q| q.get_child("item", NS_ROSTER))
        .unwrap_or_else(|| panic!("roster lost: {}", r.to_xml()));
    assert_eq!(item.get_attr("jid"), Some("bob@persist.test"));
    assert_eq!(item.get_attr("name"), Some("Bob"));
    assert_eq!(
        item.child_text("group", NS_ROSTER).as_deref(),
        Some("Clouds")
    );

    let mut bob = node.login("bob", "bob-pw", None).await;
    bob.send(&Element::new("presence", NS_CLIENT))
        .await
        .unwrap();
    let m = bob.wait_for(T, |e| e.name == "message").await.unwrap();
    assert_eq!(
        m.child_text("body", NS_CLIENT).as_deref(),
        Some("kept across crashes")
    );
    assert!(m.get_child("delay", "urn:xmpp:delay").is_some());

    // The CLI sees the accounts too (and the gateway's, which the node created).
    let list = common::cli(&["user", "list", "--config", &node.config()]);
    assert_eq!(
        list,
        "alice@persist.test\nbob@persist.test\ngateway@persist.test\n"
    );
}

#[test]
fn cli_manages_accounts_and_stores_no_passwords() {
    let node = Node::init("cli", "cli.test", &[]);
    node.add_user("carol", "very-secret-password");
    let out = std::process::Command::new(common::BIN)
        .args([
            "user",
            "add",
            "--config",
            &node.config(),
            "carol@cli.test",
            "--password",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "duplicate account accepted");
    let out = std::process::Command::new(common::BIN)
        .args([
            "user",
            "add",
            "--config",
            &node.config(),
            "dave@other.test",
            "--password",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "foreign-domain account accepted");
    let db = std::fs::read(node.dir.join("data/intercloud.db")).unwrap();
    let wal = std::fs::read(node.dir.join("data/intercloud.db-wal")).unwrap_or_default();
    let needle = b"very-secret-password";
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "plaintext password stored"
        );
    }
    common::cli(&["user", "remove", "--config", &node.config(), "carol"]);
    assert_eq!(
        common::cli(&["user", "list", "--config", &node.config()]),
        ""
    );
}
