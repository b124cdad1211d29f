//! The trust authority through real node processes: clouds enroll (token, or an administrator's approval), federate over SASL EXTERNAL with its certificates and no static route, renew before expiry; a revocation replicates, lands in the audit trail, and SASL EXTERNAL refuses the revoked certificate.

mod common;

use common::Node;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

use common::wait_for;

fn cli(args: &[&str]) -> String {
    tokio::task::block_in_place(|| common::cli(args))
}

fn enrolled(n: &Node) -> Option<String> {
    std::fs::read_to_string(n.dir.join("data/tls/enrolled-cert.pem")).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clouds_enroll_federate_renew_and_get_revoked() {
    let mut root = Node::init("ta-root", "root.test", &[]);
    root.make_root();
    root.edit(
        "enrollment_tokens = []",
        "enrollment_tokens = [\"cloud1.test:tok1\"]",
    );
    root.edit("cert_validity_secs = 7776000", "cert_validity_secs = 20");
    let root_addr = root.p2p_addr();
    let root_key = cli(&["directory", "key", "--config", &root.config()])
        .trim()
        .to_string();
    let mut c1 = Node::init("ta-c1", "cloud1.test", &[]);
    let mut c2 = Node::init("ta-c2", "cloud2.test", &[]);
    let mut c3 = Node::init("ta-c3", "cloud3.test", &[]);
    for n in [&root, &c1, &c2, &c3] {
        // Only certificates count: no dialback, no trust anchor files, no routes.
        n.only_s2s_auth("external");
        n.edit("root_keys = []", &format!("root_keys = [\"{root_key}\"]"));
        n.edit("renew_percent = 33", "renew_percent = 50");
    }
    c1.edit("enrollment_token = \"\"", "enrollment_token = \"tok1\"");
    c3.edit("enrollment_token = \"\"", "enrollment_token = \"nope\"");
    for c in [&c1, &c2, &c3] {
        c.bootstrap(std::slice::from_ref(&root_addr));
    }
    c1.add_user("alice", "pw");
    c2.add_user("bob", "pw");
    for n in [&mut root, &mut c1, &mut c2, &mut c3] {
        n.start();
    }
    // cloud1 enrolls with its token; cloud3's token is wrong; cloud2 waits for approval.
    wait_for("cloud1 enrolled", || enrolled(&c1).is_some());
    wait_for("cloud3 refused", || {
        c3.log()
            .contains("enrollment refused: bad enrollment token")
    });
    assert!(enrolled(&c3).is_none());
    wait_for("cloud2 waiting", || {
        cli(&["directory", "pending", "--config", &root.config()]).contains("cloud2.test")
    });
    assert!(enrolled(&c2).is_none());
    let out = cli(&[
        "directory",
        "approve",
        "--config",
        &root.config(),
        "cloud2.test",
    ]);
    assert!(out.contains("\"approval\""), "{out}");
    wait_for("cloud2 enrolled after approval", || enrolled(&c2).is_some());
    // The certificate names exactly the domain and chains to the root's CA.
    let ca = cli(&["directory", "ca", "--config", &root.config()]);
    let chain = enrolled(&c2).unwrap();
    assert!(chain.ends_with(&ca), "chain does not end with the CA");

    let list = |n: &Node| cli(&["directory", "list", "--config", &n.config()]);
    let mut bob = c2.login("bob", "pw", None).await;
    common::online(&mut bob).await;
    let mut alice = c1.login("alice", "pw", None).await;
    alice
        .send(&common::chat("bob@cloud2.test", "before"))
        .await
        .unwrap();
    bob.wait_for(T, |e| e.name == "message")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", c1.log(), c2.log()));

    // Renewal: with 20 s certificates renewed at half-life, cloud1 gets a new one.
    let first = enrolled(&c1).unwrap();
    wait_for("cloud1 renewed", || {
        enrolled(&c1).map(|c| c != first).unwrap_or(false)
    });
    wait_for("the renewal in the audit trail", || {
        cli(&["directory", "audit", "--config", &root.config()]).contains("\"renew\"")
    });
    // A fresh link authenticates with the renewed certificate.
    drop(bob);
    c2.kill9();
    c2.start();
    let mut bob = c2.login("bob", "pw", None).await;
    common::online(&mut bob).await;
    alice
        .send(&common::chat("bob@cloud2.test", "after renewal"))
        .await
        .unwrap();
    bob.wait_for(T, |e| e.name == "message")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", c1.log(), c2.log()));

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
    for needle in [
        "\"authority\"",
        "\"enroll\",\"domain\":\"cloud1.test\"",
        "\"approve\",\"domain\":\"cloud2.test\"",
        "\"enroll\",\"domain\":\"cloud2.test\"",
        "\"renew\",\"domain\":\"cloud1.test\"",
        "key compromised",
        "chain intact",
    ] {
        assert!(audit.contains(needle), "no {needle} in {audit}");
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollments_waiting_for_approval_are_bounded() {
    let mut root = Node::init("ta-wroot", "root.test", &[]);
    root.make_root();
    root.edit(
        "max_waiting_enrollments = 1000",
        "max_waiting_enrollments = 2",
    );
    let root_addr = root.p2p_addr();
    let root_key = cli(&["directory", "key", "--config", &root.config()])
        .trim()
        .to_string();
    let mut clouds: Vec<Node> = (1..=3)
        .map(|i| Node::init(&format!("ta-w{i}"), &format!("wait{i}.test"), &[]))
        .collect();
    root.edit("root_keys = []", &format!("root_keys = [\"{root_key}\"]"));
    root.start();
    // Two ask to be enrolled and wait for approval: the root holds both.
    for c in clouds.iter_mut().take(2) {
        c.edit("root_keys = []", &format!("root_keys = [\"{root_key}\"]"));
        c.bootstrap(std::slice::from_ref(&root_addr));
        c.start();
    }
    wait_for("two enrollments waiting", || {
        let p = cli(&["directory", "pending", "--config", &root.config()]);
        p.contains("wait1.test") && p.contains("wait2.test")
    });
    // A third is refused, and says why; the two waiting are kept.
    let c = &mut clouds[2];
    c.edit("root_keys = []", &format!("root_keys = [\"{root_key}\"]"));
    c.bootstrap(std::slice::from_ref(&root_addr));
    c.start();
    wait_for("the third refused", || {
        c.log().contains("2 enrollments are waiting for approval")
    });
    let p = cli(&["directory", "pending", "--config", &root.config()]);
    assert!(!p.contains("wait3.test"), "{p}");
    assert!(p.contains("wait1.test") && p.contains("wait2.test"), "{p}");
    assert!(root
        .log()
        .contains("enrollment refused: too many waiting for approval"));
}
