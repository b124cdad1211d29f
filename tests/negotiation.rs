//! The paper's §7 with real node processes: root + exchange + cloud1, cloud2, cloud5 enrolled with the root's trust authority and federated over SASL EXTERNAL. cloud1 finds [cloud2, cloud5] at the exchange, sees their gateways' presence and capacity, negotiates with cloud2 (both keep the agreement); with cloud2 stopped it lands on cloud5; with cloud5 killed too the proposal waits offline and is delivered when cloud2 returns.

mod common;

use common::{wait_for, Node};
use intercloud_actors::element::{Element, NS_CLIENT};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn cli(args: &[&str]) -> String {
    tokio::task::block_in_place(|| common::cli(args))
}

/// Runs `intercloud negotiate` on `n`; its output, whether it succeeded.
fn negotiate(n: &Node, amount: u64) -> (String, bool) {
    let paper = common::repo().join("scenarios/data/paper_request.xml");
    let r = tokio::task::block_in_place(|| {
        let out = std::process::Command::new(common::BIN)
            .args([
                "negotiate",
                "--config",
                &n.config(),
                "--service",
                "storage-replication",
                "--constraints",
                paper.to_str().unwrap(),
                "--amount",
                &amount.to_string(),
                "--duration",
                "86400",
            ])
            .output()
            .unwrap();
        (
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            out.status.success(),
        )
    });
    eprintln!("--- intercloud negotiate on {}:\n{}", n.domain, r.0);
    r
}

/// Agreement ids a node holds, by role.
fn agreements(n: &Node) -> Vec<(String, String, String)> {
    let out = cli(&["agreements", "list", "--config", &n.config(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_string(),
                a["role"].as_str().unwrap().to_string(),
                a["peer"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const OFFER: &str = "offers = [{ service = \"storage-replication\", protocols = [\"AMQP\"], transports = [\"UDT\", \"TCP\"], capacity = 100, unit = \"GB\" }]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud1_finds_negotiates_falls_back_and_leaves_it_offline() {
    let mut root = Node::init("neg-root", "root.test", &[]);
    root.make_root();
    root.edit("enrollment_tokens = []", "enrollment_tokens = [\"tok\"]");
    let root_addr = root.p2p_addr();
    let root_key = cli(&["directory", "key", "--config", &root.config()])
        .trim()
        .to_string();
    let mut ex = Node::init("neg-ex", "exchange.test", &[]);
    ex.edit("roles = [\"cloud\"]", "roles = [\"cloud\", \"exchange\"]");
    tokio::task::block_in_place(|| ex.import_paper_catalog());
    let mut c1 = Node::init("neg-c1", "cloud1.test", &[]);
    let mut c2 = Node::init("neg-c2", "cloud2.test", &[]);
    let mut c5 = Node::init("neg-c5", "cloud5.test", &[]);
    for n in [&root, &ex, &c1, &c2, &c5] {
        n.only_s2s_auth("external");
        n.edit("root_keys = []", &format!("root_keys = [\"{root_key}\"]"));
        n.edit("peers_refresh_secs = 30", "peers_refresh_secs = 2");
        n.edit("timeout_secs = 10", "timeout_secs = 5");
        n.edit("retransmit_secs = 2", "retransmit_secs = 1");
    }
    for n in [&ex, &c1, &c2, &c5] {
        n.bootstrap(std::slice::from_ref(&root_addr));
        n.edit("enrollment_token = \"\"", "enrollment_token = \"tok\"");
    }
    for n in [&c1, &c2, &c5] {
        n.edit("exchanges = []", "exchanges = [\"exchange.test\"]");
    }
    for n in [&c2, &c5] {
        n.edit("offers = []", OFFER);
    }
    c1.add_user("alice", "pw");
    let metrics = [&root, &ex, &c2].map(common::metrics::with_metrics);
    for n in [&mut root, &mut ex, &mut c1, &mut c2, &mut c5] {
        n.start();
    }
    for n in [&ex, &c1, &c2, &c5] {
        wait_for(&format!("{} enrolled", n.domain), || {
            n.dir.join("data/tls/enrolled-cert.pem").exists()
        });
    }

    // 1. cloud2 ranks first and is available: it gets the proposal and says go ahead.
    let (out, ok) = negotiate(&c1, 10);
    assert!(ok, "{out}\n{}\n{}", c1.log(), c2.log());
    assert!(out.contains("matchingClouds: cloud2, cloud5"), "{out}");
    assert!(
        out.contains("presence gateway@cloud2.test (cloud2): available"),
        "{out}"
    );
    assert!(
        out.contains("Cloud 2, I would like to use your resources for storage replication using AMQP over UDT protocol"),
        "{out}"
    );
    assert!(
        out.contains("Cloud 1, please go ahead and use my resources for storage replication using AMQP/UDT protocol"),
        "{out}"
    );
    assert!(out.contains("AGREED"), "{out}");
    let a1 = agreements(&c1);
    assert_eq!(a1.len(), 1, "{a1:?}");
    assert_eq!(a1[0].1, "consumer");
    assert_eq!(a1[0].2, "gateway@cloud2.test");
    wait_for("cloud2 keeps the same agreement", || {
        agreements(&c2)
            == vec![(
                a1[0].0.clone(),
                "provider".to_string(),
                "gateway@cloud1.test".to_string(),
            )]
    });
    // What the operators' scrapes show: the root issued five certificates (its own too),
    // the exchange answered catalog queries, cloud2 agreed once.
    let [root_m, ex_m, c2_m] = metrics;
    common::metrics::expect(
        root_m,
        &[(
            r#"intercloud_directory_enrollments_total{outcome="issued"}"#,
            5.0,
        )],
    )
    .await;
    common::metrics::at_least(root_m, "intercloud_directory_zone_records", 5.0).await;
    common::metrics::at_least(
        ex_m,
        r#"intercloud_catalog_query_seconds_count{node="constraint_catalog_resources"}"#,
        1.0,
    )
    .await;
    common::metrics::expect(
        c2_m,
        &[
            (r#"intercloud_negotiations_total{outcome="agreed"}"#, 1.0),
            ("intercloud_agreements", 1.0),
        ],
    )
    .await;
    // The gateway's presence carries its capacity: 90 of 100 GB left.
    let mut alice = c1.login("alice", "pw", None).await;
    common::online(&mut alice).await;
    alice
        .send(
            &Element::new("presence", NS_CLIENT)
                .attr("to", "gateway@cloud2.test")
                .attr("type", "subscribe"),
        )
        .await
        .unwrap();
    let p = alice
        .wait_for(T, |e| {
            e.name == "presence"
                && e.get_attr("from")
                    .map(|f| f.starts_with("gateway@cloud2.test/"))
                    .unwrap_or(false)
                && e.get_attr("type").is_none()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c2.log()));
    let xml = p.to_xml();
    assert!(
        xml.contains("urn:intercloud:capacity:0") && xml.contains("free='90'"),
        "{xml}"
    );
    assert!(
        xml.contains("storage-replication: 90 of 100 GB free"),
        "{xml}"
    );

    // 2. cloud2 stops: its gateway goes unavailable, cloud1 lands on cloud5.
    c2.stop();
    let p = alice
        .wait_for(T, |e| {
            e.name == "presence"
                && e.get_attr("type") == Some("unavailable")
                && e.get_attr("from")
                    .map(|f| f.starts_with("gateway@cloud2.test"))
                    .unwrap_or(false)
        })
        .await;
    assert!(p.is_ok(), "alice never saw cloud2's gateway leave");
    let (out, ok) = negotiate(&c1, 10);
    assert!(ok, "{out}\n{}\n{}", c1.log(), c5.log());
    assert!(
        out.contains("gateway@cloud2.test (cloud2): unavailable"),
        "{out}"
    );
    assert!(out.contains("AGREED"), "{out}");
    assert!(out.contains("with gateway@cloud5.test"), "{out}");
    wait_for("cloud5 keeps the agreement", || agreements(&c5).len() == 1);

    // 3. cloud5 is killed (its link dies without a goodbye): nobody is available.
    c5.kill9();
    let (out, ok) = negotiate(&c1, 10);
    assert!(ok, "{out}\n{}", c1.log());
    assert!(
        out.contains("gateway@cloud5.test (cloud5): unavailable"),
        "{out}"
    );
    assert!(out.contains("OFFLINE"), "{out}");
    assert!(out.contains("waits for gateway@cloud2.test"), "{out}");
    let held = out
        .lines()
        .find_map(|l| l.strip_prefix("OFFLINE proposal "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    assert_eq!(agreements(&c1).len(), 2);
    // cloud2 returns: the held proposal reaches it, both sides agree.
    c2.start();
    wait_for("cloud2 agrees to the held proposal", || {
        agreements(&c2).iter().any(|a| a.0 == held)
    });
    wait_for("cloud1 keeps it too", || {
        agreements(&c1).iter().any(|a| a.0 == held)
    });
    drop(alice);
    for n in [&mut c1, &mut c2, &mut ex, &mut root] {
        n.stop();
    }
}
