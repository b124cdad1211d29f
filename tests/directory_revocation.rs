//! Governance through the directory: a root revokes a cloud; the revocation replicates, lands in the audit trail, and s2s SASL EXTERNAL refuses the revoked certificate.

mod common;

use common::{Ca, Node};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

use common::wait_for;

fn cli(args: &[&str]) -> String {
    tokio::task::block_in_place(|| common::cli(args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_cloud_is_refused_by_sasl_external() {
    let ca = Ca::new("rev");
    let mut root = Node::init("rev-root", "root.test", &[]);
    root.make_root();
    let root_addr = root.p2p_addr();
    let root_key = cli(&["directory", "key", "--config", &root.config()])
        .trim()
        .to_string();
    let mut c1 = Node::init("rev-c1", "cloud1.test", &[]);
    let mut c2 = Node::init("rev-c2", "cloud2.test", &[]);
    for n in [&root, &c1, &c2] {
        n.use_ca(&ca);
        n.edit(
            "auth = [\"external\", \"dialback\"]",
            "auth = [\"external\"]",
        );
        n.edit("root_keys = []", &format!("root_keys = [\"{root_key}\"]"));
    }
    c1.bootstrap(std::slice::from_ref(&root_addr));
    c2.bootstrap(std::slice::from_ref(&root_addr));
    c1.add_user("alice", "pw");
    c2.add_user("bob", "pw");
    root.start();
    c1.start();
    c2.start();
    let list = |n: &Node| cli(&["directory", "list", "--config", &n.config()]);
    wait_for("3 records on the root", || list(&root).lines().count() == 3);

    let mut bob = c2.login("bob", "pw", None).await;
    common::online(&mut bob).await;
    let mut alice = c1.login("alice", "pw", None).await;
    alice
        .send(&common::chat("bob@cloud2.test", "before"))
        .await
        .unwrap();
    bob.wait_for(T, |e| e.name == "message").await.unwrap();

    // The trust authority revokes cloud1.
    let out = cli(&[
        "directory",
        "revoke",
        "--config",
        &root.config(),
        "cloud1.test",
        "--reason",
        "key compromised",
    ]);
    assert!(out.contains("revoked_key"), "{out}");
    wait_for("the revocation in the zone", || {
        list(&root).contains("\"kind\":\"revocation\"")
    });
    let audit = cli(&["directory", "audit", "--config", &root.config()]);
    assert!(
        audit.contains("key compromised") && audit.contains("1 entries, chain intact"),
        "{audit}"
    );
    // The name no longer resolves to the revoked key.
    let r = tokio::task::block_in_place(|| {
        std::process::Command::new(common::BIN)
            .args([
                "directory",
                "resolve",
                "--config",
                &c2.config(),
                "cloud1.test",
            ])
            .output()
            .unwrap()
    });
    assert!(!r.status.success(), "revoked record still resolves");

    // A new link from cloud1 is refused: its certificate is revoked.
    drop(alice);
    c1.kill9();
    c1.start();
    let mut alice = c1.login("alice", "pw", None).await;
    alice
        .send(&common::chat("bob@cloud2.test", "after"))
        .await
        .unwrap();
    let e = alice
        .wait_for(T, |e| e.get_attr("type") == Some("error"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c2.log()));
    assert!(
        e.to_xml().contains("<remote-server-not-found"),
        "{}",
        e.to_xml()
    );
    assert!(
        c2.log()
            .contains("certificate revoked by the trust authority"),
        "{}",
        c2.log()
    );
}
