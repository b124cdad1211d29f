//! Interop: a stock XMPP client (slixmpp, Debian's python3-slixmpp) against a real node process.

mod common;

use common::Node;

#[test]
fn slixmpp_scram_presence_roster_messages_ping_disco() {
    let mut node = Node::init("slix", "c2s.test", &[]);
    node.add_user("alice", "alice-pw");
    node.add_user("bob", "bob-pw");
    node.start();
    let stdout = common::slixmpp(
        "c2s_flow.py",
        &[
            ("port", node.port.to_string()),
            ("domain", node.domain.clone()),
        ],
        &|| node.log(),
    );
    println!("slixmpp results: {stdout}");
    assert!(stdout.contains("\"messages\": 2000"), "{stdout}");
    assert!(node.stop().success(), "node did not exit cleanly");
}
