//! The operator's endpoints of a running node: `/metrics` scraped after real traffic between two federated nodes (the figures move by exactly what was sent), and `/healthz`.

mod common;

use common::metrics::{expect, http, with_metrics};
use common::{chat, sync, Ca, Node};
use intercloud_actors::element::{Element, NS_CLIENT};
use std::time::Duration;

const T: Duration = Duration::from_secs(15);

fn stanzas(transport: &str, direction: &str, kind: &str) -> String {
    format!(
        r#"intercloud_stanzas_total{{transport="{transport}",direction="{direction}",kind="{kind}"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic_between_two_nodes() {
    let ca = Ca::new("metrics");
    let mut a = Node::init("metrics1", "cloud1.test", &[]);
    let mut b = Node::init("metrics2", "cloud2.test", &[]);
    a.federate(&b, Some(&ca), Some("external"));
    a.add_user("alice", "pw");
    b.add_user("bob", "pw");
    let (pa, pb) = (with_metrics(&a), with_metrics(&b));
    a.start();
    b.start();

    // Before any traffic: the gateway's is the one session (an in-process client).
    let c2s_msg_in = stanzas("c2s", "in", "message");
    let c2s_msg_out = stanzas("c2s", "out", "message");
    let s2s_msg_in = stanzas("s2s", "in", "message");
    let s2s_msg_out = stanzas("s2s", "out", "message");
    expect(
        pa,
        &[
            ("intercloud_c2s_sessions", 1.0),
            (&c2s_msg_in, 0.0),
            (&s2s_msg_out, 0.0),
            (r#"intercloud_s2s_links{direction="out"}"#, 0.0),
        ],
    )
    .await;

    let mut alice = a.login("alice", "pw", Some("a")).await;
    let mut bob = b.login("bob", "pw", Some("b")).await;
    bob.send(&Element::new("presence", NS_CLIENT))
        .await
        .unwrap();
    sync(&mut bob, "s1").await;
    sync(&mut alice, "s2").await;
    expect(pa, &[("intercloud_c2s_sessions", 2.0)]).await;

    for i in 0..3 {
        alice
            .send(&chat("bob@cloud2.test", &format!("m{i}")))
            .await
            .unwrap();
    }
    for _ in 0..3 {
        bob.wait_for(T, |e| e.name == "message")
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}\n{}", a.log(), b.log()));
    }
    // To an account cloud2 does not have: cloud2 bounces it back.
    alice
        .send(&chat("nobody@cloud2.test", "anyone?"))
        .await
        .unwrap();
    let err = alice
        .wait_for(T, |e| {
            e.name == "message" && e.get_attr("type") == Some("error")
        })
        .await
        .unwrap();
    assert!(
        err.to_xml().contains("service-unavailable"),
        "{}",
        err.to_xml()
    );

    expect(
        pa,
        &[
            ("intercloud_c2s_sessions", 2.0),
            (&c2s_msg_in, 4.0),
            (&s2s_msg_out, 4.0),
            (&s2s_msg_in, 1.0),
            (&c2s_msg_out, 1.0),
            (r#"intercloud_s2s_links{direction="out"}"#, 1.0),
            (r#"intercloud_s2s_links{direction="in"}"#, 1.0),
        ],
    )
    .await;
    expect(
        pb,
        &[
            ("intercloud_c2s_sessions", 2.0),
            (&s2s_msg_in, 4.0),
            (&c2s_msg_out, 3.0),
            (&s2s_msg_out, 1.0),
            (
                r#"intercloud_bounces_total{condition="service-unavailable"}"#,
                1.0,
            ),
            (r#"intercloud_s2s_links{direction="in"}"#, 1.0),
        ],
    )
    .await;

    // The session ends: the gauge comes back down.
    drop(alice);
    expect(pa, &[("intercloud_c2s_sessions", 1.0)]).await;

    let (status, body) = http(pa, "GET", "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(http(pa, "GET", "/nothing").await.0, 404);
    assert_eq!(http(pa, "POST", "/metrics").await.0, 405);
    let (_, text) = http(pb, "GET", "/metrics").await;
    assert!(text.ends_with("# EOF\n"), "{text}");
    drop(bob);
}

/// A node without a metrics port opens no listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_listener_when_the_port_is_zero() {
    let mut a = Node::init("metrics0", "cloud1.test", &[]);
    a.start();
    assert!(!a.log().contains("metrics and health check listening"));
    let text = std::fs::read_to_string(a.config()).unwrap();
    assert!(
        text.contains("\n[metrics]\n"),
        "init writes the section:\n{text}"
    );
    let config = intercloud::config::Config::load(std::path::Path::new(&a.config())).unwrap();
    assert_eq!(config.metrics.port, 0);
}
