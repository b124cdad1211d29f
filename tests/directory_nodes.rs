//! The directory with real node processes on TCP: roots replicate and persist the zone, and clouds find each other's s2s endpoints through it alone.

mod common;

use common::Node;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn list(n: &Node) -> Vec<String> {
    common::cli(&["directory", "list", "--config", &n.config()])
        .lines()
        .filter(|l| l.contains("\"kind\":\"cloud\""))
        .map(String::from)
        .collect()
}

use common::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clouds_federate_through_the_directory_alone() {
    let mut root1 = Node::init("dir-root1", "root1.test", &[]);
    let mut root2 = Node::init("dir-root2", "root2.test", &[]);
    root1.make_root();
    root2.make_root();
    let roots = vec![root1.p2p_addr(), root2.p2p_addr()];
    root1.bootstrap(&roots[1..]);
    root2.bootstrap(&roots[..1]);
    let keys: Vec<String> = [&root1, &root2]
        .iter()
        .map(|r| {
            format!(
                "\"{}\"",
                common::cli(&["directory", "key", "--config", &r.config()]).trim()
            )
        })
        .collect();
    let mut c1 = Node::init("dir-c1", "cloud1.test", &[]);
    let mut c2 = Node::init("dir-c2", "cloud2.test", &[]);
    let mut c3 = Node::init("dir-c3", "cloud3.test", &[]);
    for c in [&c1, &c2] {
        c.bootstrap(&roots);
    }
    // cloud3 knows the roots by host name (/dns4/…), as pods know Services.
    let by_name: Vec<String> = roots
        .iter()
        .map(|a| a.replacen("/ip4/127.0.0.1/", "/dns4/localhost/", 1))
        .collect();
    assert!(
        by_name
            .iter()
            .all(|a| a.starts_with("/dns4/localhost/tcp/")),
        "{by_name:?}"
    );
    c3.bootstrap(&by_name);
    for n in [&root1, &root2, &c1, &c2, &c3] {
        n.edit(
            "root_keys = []",
            &format!("root_keys = [{}]", keys.join(", ")),
        );
    }
    c1.add_user("alice", "pw");
    c2.add_user("bob", "pw");
    for n in [&mut root1, &mut root2, &mut c1, &mut c2, &mut c3] {
        n.start();
    }
    // Both roots hold all five records (each node registers itself).
    wait_for("both roots to hold 5 records", || {
        tokio::task::block_in_place(|| list(&root1).len() == 5 && list(&root2).len() == 5)
    });
    // A cloud resolves another through the roots.
    let out = tokio::task::block_in_place(|| {
        common::cli(&[
            "directory",
            "resolve",
            "--config",
            &c3.config(),
            "cloud2.test",
        ])
    });
    assert!(out.contains(&format!("127.0.0.1:{}", c2.s2s_port)), "{out}");

    // No static routes: cloud1 finds cloud2's s2s endpoint in the directory.
    let mut bob = c2.login("bob", "pw", None).await;
    common::online(&mut bob).await;
    let mut alice = c1.login("alice", "pw", None).await;
    alice
        .send(&common::chat("bob@cloud2.test", "found through the root"))
        .await
        .unwrap();
    let m = bob
        .wait_for(T, |e| e.name == "message")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", c1.log(), c2.log()));
    assert_eq!(
        m.child_text("body", intercloud_actors::element::NS_CLIENT)
            .as_deref(),
        Some("found through the root")
    );

    // A root killed with -9 comes back with its zone; the other root kept serving meanwhile.
    root1.kill9();
    let out = tokio::task::block_in_place(|| {
        common::cli(&[
            "directory",
            "resolve",
            "--config",
            &c1.config(),
            "cloud3.test",
        ])
    });
    assert!(out.contains("cloud3.test"), "{out}");
    assert_eq!(list(&root1).len(), 5, "zone lost by kill -9");
    root1.start();
    wait_for("root1 back with 5 records", || {
        tokio::task::block_in_place(|| list(&root1).len() == 5)
    });
}
