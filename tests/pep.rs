//! Personal eventing (XEP-0163) with entity capabilities (XEP-0115) on real nodes: stock slixmpp clients notified by interest and given the last item on presence, items surviving `kill -9`, and a contact on another node asked for its capabilities and notified over s2s.

mod common;

use common::Node;
use intercloud::xmpp::client::Client;
use intercloud_actors::element::{Element, NS_CLIENT};
use std::time::Duration;

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_CAPS: &str = "http://jabber.org/protocol/caps";
const GEO: &str = "http://jabber.org/protocol/geoloc";
const T: Duration = Duration::from_secs(20);

#[test]
fn slixmpp_contacts_get_tunes_by_interest_and_after_kill_9() {
    let mut node = Node::init("pep-slix", "pep.test", &[]);
    for u in ["alice", "bob", "carol"] {
        node.add_user(u, &format!("{u}-pw"));
    }
    node.start();
    let (port, domain) = (node.port.to_string(), node.domain.clone());
    let args = |phase: &str| {
        [
            ("port", port.clone()),
            ("domain", domain.clone()),
            ("phase", phase.to_string()),
        ]
    };
    let stdout = common::slixmpp("pep_flow.py", &args("flow"), &|| node.log());
    let last = stdout.trim().lines().last().unwrap_or("");
    let r: serde_json::Value = serde_json::from_str(last).expect("one JSON line");
    assert_eq!(
        r["identities"],
        serde_json::json!([["account", "registered"], ["pubsub", "pep"]]),
        "{r}"
    );
    assert_eq!(
        r["bob"],
        serde_json::json!(["first", "second", "third"]),
        "{r}"
    );
    assert_eq!(r["bob_reads"], serde_json::json!(["second"]), "{r}");
    assert_eq!(r["carol"], serde_json::json!([]), "{r}");
    assert_eq!(r["carol_reads"], "not-authorized", "{r}");
    assert_eq!(r["carol_publishes_for_alice"], "forbidden", "{r}");
    // The tune was acknowledged: now the process dies without flushing.
    node.kill9();
    node.start();
    let stdout = common::slixmpp("pep_flow.py", &args("after"), &|| node.log());
    let last = stdout.trim().lines().last().unwrap_or("");
    let r: serde_json::Value = serde_json::from_str(last).expect("one JSON line");
    assert_eq!(r["bob"], serde_json::json!(["third"]), "{r}");
    assert!(node.stop().success(), "node did not exit cleanly");
}

fn presence(ty: Option<&str>, to: &str) -> Element {
    let mut p = Element::new("presence", NS_CLIENT).attr("to", to);
    if let Some(t) = ty {
        p = p.attr("type", t);
    }
    p
}

async fn wait_presence(c: &mut Client, ty: &str, from: &str, logs: &dyn Fn() -> String) {
    c.wait_for(T, |e| {
        e.name == "presence"
            && e.get_attr("type") == Some(ty)
            && e.get_attr("from").is_some_and(|f| f.starts_with(from))
    })
    .await
    .unwrap_or_else(|e| panic!("presence {ty} from {from}: {e}\n{}", logs()));
}

/// `a` subscribes to `b`'s presence and `b` approves, each step seen by
/// the other side (so both servers have written it).
async fn subscribe(
    a: &mut Client,
    a_jid: &str,
    b: &mut Client,
    b_jid: &str,
    logs: &dyn Fn() -> String,
) {
    a.send(&presence(Some("subscribe"), b_jid)).await.unwrap();
    wait_presence(b, "subscribe", a_jid, logs).await;
    b.send(&presence(Some("subscribed"), a_jid)).await.unwrap();
    wait_presence(a, "subscribed", b_jid, logs).await;
}

fn publish_geo(id: &str, text: &str) -> Element {
    Element::new("iq", NS_CLIENT)
        .attr("type", "set")
        .attr("id", id)
        .child(Element::new("pubsub", NS_PUBSUB).child(
            Element::new("publish", NS_PUBSUB).attr("node", GEO).child(
                Element::new("item", NS_PUBSUB).attr("id", id).child(
                    Element::new("geoloc", GEO).child(Element::new("locality", GEO).text(text)),
                ),
            ),
        ))
}

/// Waits for a notification of `GEO` and returns its locality.
async fn geo_note(c: &mut Client, from: &str, logs: &dyn Fn() -> String) -> String {
    let m = c
        .wait_for(T, |e| {
            e.name == "message" && e.get_child("event", NS_EVENT).is_some()
        })
        .await
        .unwrap_or_else(|e| panic!("a notification: {e}\n{}", logs()));
    assert_eq!(m.get_attr("from"), Some(from), "{}", m.to_xml());
    m.get_child("event", NS_EVENT)
        .and_then(|e| e.get_child("items", NS_EVENT))
        .filter(|i| i.get_attr("node") == Some(GEO))
        .and_then(|i| i.get_child("item", NS_EVENT))
        .and_then(|i| i.get_child("geoloc", GEO))
        .and_then(|g| g.child_text("locality", GEO))
        .unwrap_or_else(|| panic!("not a geoloc item: {}", m.to_xml()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_on_another_node_is_asked_its_caps_and_notified_over_s2s() {
    let ca = common::Ca::new("pep-s2s");
    let mut a = Node::init("pep-s2s1", "cloud1.test", &[]);
    let mut b = Node::init("pep-s2s2", "cloud2.test", &[]);
    a.federate(&b, Some(&ca), Some("external"));
    a.add_user("alice", "pw");
    b.add_user("bob", "pw");
    a.start();
    b.start();
    let logs = || format!("{}\n{}", a.log(), b.log());
    let mut alice = a.login("alice", "pw", Some("a")).await;
    let mut bob = b.login("bob", "pw", Some("b")).await;
    for c in [&mut alice, &mut bob] {
        c.send(&Element::new("presence", NS_CLIENT)).await.unwrap();
    }
    subscribe(
        &mut bob,
        "bob@cloud2.test",
        &mut alice,
        "alice@cloud1.test",
        &logs,
    )
    .await;
    subscribe(
        &mut alice,
        "alice@cloud1.test",
        &mut bob,
        "bob@cloud2.test",
        &logs,
    )
    .await;
    let r = alice.send(&publish_geo("g1", "Tokyo")).await;
    r.unwrap();
    let ok = alice
        .wait_for(T, |e| e.get_attr("id") == Some("g1"))
        .await
        .unwrap();
    assert_eq!(ok.get_attr("type"), Some("result"), "{}", ok.to_xml());

    // Bob's features, and the hash that stands for them.
    let info = Element::new("query", NS_DISCO_INFO)
        .child(
            Element::new("identity", NS_DISCO_INFO)
                .attr("category", "client")
                .attr("type", "bot")
                .attr("name", "test"),
        )
        .child(Element::new("feature", NS_DISCO_INFO).attr("var", NS_DISCO_INFO))
        .child(Element::new("feature", NS_DISCO_INFO).attr("var", format!("{GEO}+notify")));
    let ver = intercloud_actors::pep::caps::ver_of(&info).unwrap();
    let caps = Element::new("c", NS_CAPS)
        .attr("hash", "sha-1")
        .attr("node", "urn:intercloud:test")
        .attr("ver", ver.clone());
    bob.send(&Element::new("presence", NS_CLIENT).child(caps))
        .await
        .unwrap();
    // Cloud1 does not know the hash: it asks bob, across the federation
    // (cloud2 asks too, for bob's own nodes; that one goes unanswered).
    let q = bob
        .wait_for(T, |e| {
            e.name == "iq"
                && e.get_attr("from") == Some("alice@cloud1.test")
                && e.get_child("query", NS_DISCO_INFO).is_some()
        })
        .await
        .unwrap_or_else(|e| panic!("the caps query: {e}\n{}", logs()));
    let node = q
        .get_child("query", NS_DISCO_INFO)
        .and_then(|x| x.get_attr("node"))
        .unwrap_or("");
    assert_eq!(node, format!("urn:intercloud:test#{ver}"));
    let answer = Element::new("iq", NS_CLIENT)
        .attr("type", "result")
        .attr("id", q.get_attr("id").unwrap())
        .attr("to", "alice@cloud1.test")
        .child(info.attr("node", node));
    bob.send(&answer).await.unwrap();
    // The last item comes on the answer, the next one as it is published.
    assert_eq!(
        geo_note(&mut bob, "alice@cloud1.test", &logs).await,
        "Tokyo"
    );
    alice.send(&publish_geo("g2", "Osaka")).await.unwrap();
    assert_eq!(
        geo_note(&mut bob, "alice@cloud1.test", &logs).await,
        "Osaka"
    );
}
