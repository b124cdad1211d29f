//! Interop: a stock XMPP client (slixmpp, Debian's python3-slixmpp) against a real node process.

mod common;

use common::Node;
use std::process::Command;

#[test]
fn slixmpp_scram_presence_roster_messages_ping_disco() {
    let mut node = Node::init("slix", "c2s.test", &[]);
    node.add_user("alice", "alice-pw");
    node.add_user("bob", "bob-pw");
    node.start();
    let script = common::repo().join("tests/py/c2s_flow.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .args(["--port", &node.port.to_string(), "--domain", &node.domain])
        .output()
        .expect("/usr/bin/python3 must exist (apt-get install python3-slixmpp)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "slixmpp flow failed:\n{stdout}\n{stderr}\nnode log:\n{}",
        node.log()
    );
    println!("slixmpp results: {stdout}");
    assert!(stdout.contains("\"messages\": 2000"), "{stdout}");
    assert!(node.stop().success(), "node did not exit cleanly");
}
