//! The pubsub service's decisions, stanza by stanza, on an in-memory store: no actors, no sockets.

use super::*;
use std::collections::HashMap;

/// Rosters: (owner, contact) -> (contact gets owner's presence, groups).
#[derive(Default)]
struct Rosters(HashMap<(String, String), (bool, Vec<String>)>);

impl Env for Rosters {
    fn roster(&self, owner: &str, contact: &str) -> Option<(bool, Vec<String>)> {
        self.0
            .get(&(owner.to_string(), contact.to_string()))
            .cloned()
    }
}

const SVC: &str = "pubsub.a.test";

fn service(store: &Arc<Store>) -> PubSub {
    PubSub::load(
        SVC,
        "a.test",
        Limits {
            max_nodes: 5,
            max_nodes_per_owner: 3,
            max_items_per_node: 3,
            max_subscriptions_per_node: 2,
            max_payload_bytes: 256,
        },
        store.clone(),
    )
    .unwrap()
}

fn new() -> (PubSub, Arc<Store>) {
    let store = Arc::new(Store::in_memory().unwrap());
    (service(&store), store)
}

fn iq(from: &str, ty: &str, payload: Element) -> Element {
    Element::new("iq", NS_CLIENT)
        .attr("from", from)
        .attr("to", SVC)
        .attr("type", ty)
        .attr("id", "q1")
        .child(payload)
}

fn ps(child: Element) -> Element {
    Element::new("pubsub", NS_PUBSUB).child(child)
}

fn owner(child: Element) -> Element {
    Element::new("pubsub", NS_OWNER).child(child)
}

fn create(from: &str, node: &str) -> Element {
    iq(
        from,
        "set",
        ps(Element::new("create", NS_PUBSUB).attr("node", node)),
    )
}

fn subscribe(from: &str, node: &str) -> Element {
    let bare = from.split('/').next().unwrap();
    iq(
        from,
        "set",
        ps(Element::new("subscribe", NS_PUBSUB)
            .attr("node", node)
            .attr("jid", bare)),
    )
}

fn publish(from: &str, node: &str, id: &str, text: &str) -> Element {
    iq(
        from,
        "set",
        ps(Element::new("publish", NS_PUBSUB).attr("node", node).child(
            Element::new("item", NS_PUBSUB)
                .attr("id", id)
                .child(Element::new("entry", "urn:test").text(text)),
        )),
    )
}

/// Alice, owner of `node`, sets `jid`'s affiliation.
fn affiliate(node: &str, jid: &str, affiliation: &str) -> Element {
    iq(
        "alice@a.test",
        "set",
        owner(
            Element::new("affiliations", NS_OWNER)
                .attr("node", node)
                .child(
                    Element::new("affiliation", NS_OWNER)
                        .attr("jid", jid)
                        .attr("affiliation", affiliation),
                ),
        ),
    )
}

fn items(from: &str, node: &str) -> Element {
    iq(
        from,
        "get",
        ps(Element::new("items", NS_PUBSUB).attr("node", node)),
    )
}

/// The one reply (the iq answer) and what else went out.
fn reply(out: &[Element]) -> &Element {
    out.iter()
        .find(|e| e.name == "iq")
        .unwrap_or_else(|| panic!("no reply: {out:?}"))
}

fn ok(out: &[Element]) {
    let r = reply(out);
    assert_eq!(r.get_attr("type"), Some("result"), "{}", r.to_xml());
}

/// The stanza condition and the pubsub one of an error reply.
fn err(out: &[Element]) -> (String, Option<String>) {
    let r = reply(out);
    assert_eq!(r.get_attr("type"), Some("error"), "{}", r.to_xml());
    let e = r.get_child("error", NS_CLIENT).unwrap();
    let cond = e
        .elements()
        .find(|c| c.ns == crate::stanza::NS_STANZAS)
        .unwrap()
        .name
        .clone();
    let app = e
        .elements()
        .find(|c| c.ns == NS_ERRORS)
        .map(|c| c.name.clone());
    (cond, app)
}

fn notifications(out: &[Element]) -> Vec<(String, String)> {
    out.iter()
        .filter(|e| e.name == "message")
        .map(|m| {
            let ev = m.get_child("event", NS_EVENT).unwrap();
            (
                m.get_attr("to").unwrap().to_string(),
                ev.elements().next().unwrap().to_xml(),
            )
        })
        .collect()
}

/// The item ids an items request answers, in order.
fn ids(out: &[Element]) -> Vec<String> {
    reply(out)
        .get_child("pubsub", NS_PUBSUB)
        .unwrap()
        .get_child("items", NS_PUBSUB)
        .unwrap()
        .elements()
        .map(|i| i.get_attr("id").unwrap().to_string())
        .collect()
}

#[test]
fn publish_notifies_subscribers_with_the_payload_and_items_returns_it() {
    let env = Rosters::default();
    let (mut s, _) = new();
    ok(&s.handle(&create("alice@a.test/r", "news"), &env));
    ok(&s.handle(&subscribe("bob@b.test/x", "news"), &env));
    ok(&s.handle(&subscribe("carol@a.test/y", "news"), &env));
    let out = s.handle(&publish("alice@a.test/r", "news", "i1", "hello"), &env);
    ok(&out);
    let n = notifications(&out);
    assert_eq!(n.len(), 2);
    assert_eq!(n[0].0, "bob@b.test");
    assert!(
        n[0].1.contains(
            "<item id='i1' publisher='alice@a.test'><entry xmlns='urn:test'>hello</entry></item>"
        ),
        "{}",
        n[0].1
    );
    assert_eq!(ids(&s.handle(&items("bob@b.test/x", "news"), &env)), ["i1"]);
    // A subscriber may not publish to a publishers-only node.
    assert_eq!(
        err(&s.handle(&publish("bob@b.test/x", "news", "i2", "no"), &env)),
        ("forbidden".into(), None)
    );
}

#[test]
fn max_items_keeps_the_newest_and_max_items_requests_the_latest() {
    let env = Rosters::default();
    let (mut s, store) = new();
    ok(&s.handle(&create("alice@a.test", "n"), &env));
    for i in 1..=5 {
        ok(&s.handle(&publish("alice@a.test", "n", &format!("i{i}"), "x"), &env));
    }
    // The service's limit is 3 items per node.
    assert_eq!(
        ids(&s.handle(&items("alice@a.test", "n"), &env)),
        ["i3", "i4", "i5"]
    );
    let latest = iq(
        "alice@a.test",
        "get",
        ps(Element::new("items", NS_PUBSUB)
            .attr("node", "n")
            .attr("max_items", "2")),
    );
    assert_eq!(ids(&s.handle(&latest, &env)), ["i4", "i5"]);
    // Publishing an existing id replaces it and makes it the newest.
    ok(&s.handle(&publish("alice@a.test", "n", "i3", "again"), &env));
    assert_eq!(
        ids(&s.handle(&items("alice@a.test", "n"), &env)),
        ["i4", "i5", "i3"]
    );
    // What is stored is what a restarted service has.
    let mut again = service(&store);
    assert_eq!(
        ids(&again.handle(&items("alice@a.test", "n"), &env)),
        ["i4", "i5", "i3"]
    );
}

#[test]
fn retract_delete_and_purge_notify_subscribers() {
    let env = Rosters::default();
    let (mut s, store) = new();
    ok(&s.handle(&create("alice@a.test", "n"), &env));
    ok(&s.handle(&subscribe("bob@b.test", "n"), &env));
    ok(&s.handle(&publish("alice@a.test", "n", "i1", "x"), &env));
    ok(&s.handle(&publish("alice@a.test", "n", "i2", "x"), &env));
    let retract = iq(
        "alice@a.test",
        "set",
        ps(Element::new("retract", NS_PUBSUB)
            .attr("node", "n")
            .attr("notify", "true")
            .child(Element::new("item", NS_PUBSUB).attr("id", "i1"))),
    );
    let out = s.handle(&retract, &env);
    ok(&out);
    assert_eq!(notifications(&out), [("bob@b.test".to_string(), "<items xmlns='http://jabber.org/protocol/pubsub#event' node='n'><retract id='i1'/></items>".to_string())]);
    // Someone else's item may not be retracted by a subscriber.
    let retract2 = iq(
        "bob@b.test",
        "set",
        ps(Element::new("retract", NS_PUBSUB)
            .attr("node", "n")
            .child(Element::new("item", NS_PUBSUB).attr("id", "i2"))),
    );
    assert_eq!(err(&s.handle(&retract2, &env)).0, "forbidden");
    let purge = iq(
        "alice@a.test",
        "set",
        owner(Element::new("purge", NS_OWNER).attr("node", "n")),
    );
    let out = s.handle(&purge, &env);
    ok(&out);
    assert!(notifications(&out)[0].1.starts_with("<purge"), "{out:?}");
    assert_eq!(
        ids(&s.handle(&items("alice@a.test", "n"), &env)),
        Vec::<String>::new()
    );
    // Only an owner deletes; the subscribers hear it; it is gone after a restart.
    let delete = |from: &str| {
        iq(
            from,
            "set",
            owner(Element::new("delete", NS_OWNER).attr("node", "n")),
        )
    };
    assert_eq!(err(&s.handle(&delete("bob@b.test"), &env)).0, "forbidden");
    let out = s.handle(&delete("alice@a.test"), &env);
    ok(&out);
    assert!(notifications(&out)[0].1.starts_with("<delete"), "{out:?}");
    assert_eq!(
        err(&s.handle(&items("alice@a.test", "n"), &env)).0,
        "item-not-found"
    );
    assert_eq!(service(&store).node_count(), 0);
}

#[test]
fn creation_is_checked_and_bounded() {
    let env = Rosters::default();
    let (mut s, _) = new();
    ok(&s.handle(&create("alice@a.test", "n"), &env));
    assert_eq!(
        err(&s.handle(&create("bob@a.test", "n"), &env)),
        ("conflict".into(), None)
    );
    // Accounts of other servers do not create nodes here.
    assert_eq!(
        err(&s.handle(&create("eve@b.test", "m"), &env)).0,
        "forbidden"
    );
    // An instant node gets a name.
    let out = s.handle(
        &iq("alice@a.test", "set", ps(Element::new("create", NS_PUBSUB))),
        &env,
    );
    ok(&out);
    let made = reply(&out)
        .get_child("pubsub", NS_PUBSUB)
        .unwrap()
        .get_child("create", NS_PUBSUB)
        .unwrap();
    assert_eq!(made.get_attr("node").map(str::len), Some(16));
    ok(&s.handle(&create("alice@a.test", "third"), &env));
    // Three nodes per owner.
    assert_eq!(
        err(&s.handle(&create("alice@a.test", "fourth"), &env)).0,
        "resource-constraint"
    );
    ok(&s.handle(&create("bob@a.test", "b1"), &env));
    ok(&s.handle(&create("carol@a.test", "c1"), &env));
    // Five in all.
    assert_eq!(
        err(&s.handle(&create("dave@a.test", "d1"), &env)).0,
        "resource-constraint"
    );
}

#[test]
fn access_models_decide_who_subscribes() {
    let mut env = Rosters::default();
    env.0.insert(
        ("alice@a.test".into(), "bob@b.test".into()),
        (true, vec!["friends".into()]),
    );
    env.0.insert(
        ("alice@a.test".into(), "carol@a.test".into()),
        (false, vec!["work".into()]),
    );
    let (mut s, _) = new();
    let configured = |model: &str, name: &str| {
        let form = Form::new("submit")
            .with_type(NODE_CONFIG)
            .field(Field::new("pubsub#access_model", "").value(model))
            .field(Field::new("pubsub#roster_groups_allowed", "").value("friends"));
        iq(
            "alice@a.test",
            "set",
            Element::new("pubsub", NS_PUBSUB)
                .child(Element::new("create", NS_PUBSUB).attr("node", name))
                .child(Element::new("configure", NS_PUBSUB).child(form.to_element())),
        )
    };
    ok(&s.handle(&configured("presence", "p"), &env));
    ok(&s.handle(&subscribe("bob@b.test", "p"), &env));
    assert_eq!(
        err(&s.handle(&subscribe("carol@a.test", "p"), &env)),
        (
            "not-authorized".into(),
            Some("presence-subscription-required".into())
        )
    );
    ok(&s.handle(&configured("roster", "r"), &env));
    ok(&s.handle(&subscribe("bob@b.test", "r"), &env));
    assert_eq!(
        err(&s.handle(&subscribe("carol@a.test", "r"), &env)),
        ("not-authorized".into(), Some("not-in-roster-group".into()))
    );
    ok(&s.handle(&configured("whitelist", "w"), &env));
    assert_eq!(
        err(&s.handle(&subscribe("bob@b.test", "w"), &env)),
        ("not-allowed".into(), Some("closed-node".into()))
    );
    assert_eq!(
        err(&s.handle(&items("bob@b.test", "w"), &env)).0,
        "not-allowed"
    );
    // A member is let in.
    let member = affiliate("w", "bob@b.test", "member");
    ok(&s.handle(&member, &env));
    ok(&s.handle(&subscribe("bob@b.test", "w"), &env));
    // Subscribing for someone else is refused.
    let other = iq(
        "carol@a.test",
        "set",
        ps(Element::new("subscribe", NS_PUBSUB)
            .attr("node", "p")
            .attr("jid", "bob@b.test")),
    );
    assert_eq!(
        err(&s.handle(&other, &env)),
        ("bad-request".into(), Some("invalid-jid".into()))
    );
}

#[test]
fn authorize_waits_for_the_owner() {
    let env = Rosters::default();
    let (mut s, _) = new();
    let form = Form::new("submit")
        .with_type(NODE_CONFIG)
        .field(Field::new("pubsub#access_model", "").value("authorize"));
    let create = iq(
        "alice@a.test",
        "set",
        Element::new("pubsub", NS_PUBSUB)
            .child(Element::new("create", NS_PUBSUB).attr("node", "a"))
            .child(Element::new("configure", NS_PUBSUB).child(form.to_element())),
    );
    ok(&s.handle(&create, &env));
    let out = s.handle(&subscribe("bob@b.test", "a"), &env);
    let sub = reply(&out)
        .get_child("pubsub", NS_PUBSUB)
        .unwrap()
        .get_child("subscription", NS_PUBSUB)
        .unwrap();
    assert_eq!(sub.get_attr("subscription"), Some("pending"));
    // The owner is asked with a form.
    let ask = out.iter().find(|e| e.name == "message").unwrap();
    assert_eq!(ask.get_attr("to"), Some("alice@a.test"));
    let asked = Form::find(ask).unwrap();
    assert_eq!(asked.value("pubsub#subscriber_jid"), Some("bob@b.test"));
    // Pending: no items yet.
    assert_eq!(
        err(&s.handle(&items("bob@b.test", "a"), &env)).0,
        "not-authorized"
    );
    // Only an owner's answer counts.
    let answer = |from: &str, allow: &str| {
        let f = Form::new("submit")
            .with_type(SUBSCRIBE_AUTHORIZATION)
            .field(Field::new("pubsub#node", "").value("a"))
            .field(Field::new("pubsub#subscriber_jid", "").value("bob@b.test"))
            .field(Field::new("pubsub#allow", "").value(allow));
        Element::new("message", NS_CLIENT)
            .attr("from", from)
            .attr("to", SVC)
            .child(f.to_element())
    };
    assert!(s.handle(&answer("bob@b.test", "true"), &env).is_empty());
    let out = s.handle(&answer("alice@a.test", "true"), &env);
    assert_eq!(notifications(&out), [("bob@b.test".to_string(), "<subscription xmlns='http://jabber.org/protocol/pubsub#event' node='a' jid='bob@b.test' subscription='subscribed'/>".to_string())]);
    ok(&s.handle(&items("bob@b.test", "a"), &env));
}

#[test]
fn publish_options_are_preconditions_and_payloads_are_bounded() {
    let env = Rosters::default();
    let (mut s, _) = new();
    let with_options =
        |node: &str, model: &str| {
            let f = Form::new("submit")
                .with_type(PUBLISH_OPTIONS)
                .field(Field::new("pubsub#access_model", "").value(model));
            iq(
                "alice@a.test",
                "set",
                Element::new("pubsub", NS_PUBSUB)
                    .child(Element::new("publish", NS_PUBSUB).attr("node", node).child(
                        Element::new("item", NS_PUBSUB).child(Element::new("x", "urn:test")),
                    ))
                    .child(Element::new("publish-options", NS_PUBSUB).child(f.to_element())),
            )
        };
    // Auto-created with the options as its configuration, then held to them.
    ok(&s.handle(&with_options("auto", "whitelist"), &env));
    ok(&s.handle(&with_options("auto", "whitelist"), &env));
    assert_eq!(
        err(&s.handle(&with_options("auto", "open"), &env)),
        ("conflict".into(), Some("precondition-not-met".into()))
    );
    let big = publish("alice@a.test", "auto", "big", &"x".repeat(300));
    assert_eq!(
        err(&s.handle(&big, &env)),
        ("not-acceptable".into(), Some("payload-too-big".into()))
    );
    let none = iq(
        "alice@a.test",
        "set",
        ps(Element::new("publish", NS_PUBSUB).attr("node", "auto")),
    );
    assert_eq!(
        err(&s.handle(&none, &env)),
        ("bad-request".into(), Some("item-required".into()))
    );
    let nameless = iq(
        "alice@a.test",
        "set",
        ps(Element::new("publish", NS_PUBSUB)),
    );
    assert_eq!(
        err(&s.handle(&nameless, &env)),
        ("bad-request".into(), Some("nodeid-required".into()))
    );
}

#[test]
fn subscriptions_are_bounded_unsubscribe_and_outcasts_lose_theirs() {
    let env = Rosters::default();
    let (mut s, store) = new();
    ok(&s.handle(&create("alice@a.test", "n"), &env));
    ok(&s.handle(&subscribe("bob@b.test", "n"), &env));
    ok(&s.handle(&subscribe("carol@a.test", "n"), &env));
    // Two per node in this service.
    assert_eq!(
        err(&s.handle(&subscribe("dave@a.test", "n"), &env)).0,
        "resource-constraint"
    );
    let unsub = |from: &str, jid: &str| {
        iq(
            from,
            "set",
            ps(Element::new("unsubscribe", NS_PUBSUB)
                .attr("node", "n")
                .attr("jid", jid)),
        )
    };
    ok(&s.handle(&unsub("carol@a.test", "carol@a.test"), &env));
    assert_eq!(
        err(&s.handle(&unsub("carol@a.test", "carol@a.test"), &env)),
        ("unexpected-request".into(), Some("not-subscribed".into()))
    );
    assert_eq!(
        err(&s.handle(&unsub("carol@a.test", "bob@b.test"), &env)).0,
        "forbidden"
    );
    let outcast = affiliate("n", "bob@b.test", "outcast");
    ok(&s.handle(&outcast, &env));
    let out = s.handle(&publish("alice@a.test", "n", "i1", "x"), &env);
    assert!(notifications(&out).is_empty(), "{out:?}");
    assert_eq!(
        err(&s.handle(&subscribe("bob@b.test", "n"), &env)).0,
        "forbidden"
    );
    // The last owner cannot leave.
    let orphan = affiliate("n", "alice@a.test", "none");
    assert_eq!(err(&s.handle(&orphan, &env)).0, "not-acceptable");
    // After a restart: bob is still an outcast, carol still unsubscribed.
    let mut again = service(&store);
    assert_eq!(
        err(&again.handle(&subscribe("bob@b.test", "n"), &env)).0,
        "forbidden"
    );
    let subs = iq(
        "alice@a.test",
        "get",
        owner(Element::new("subscriptions", NS_OWNER).attr("node", "n")),
    );
    let out = again.handle(&subs, &env);
    let listed = reply(&out)
        .get_child("pubsub", NS_OWNER)
        .unwrap()
        .get_child("subscriptions", NS_OWNER)
        .unwrap()
        .elements()
        .count();
    assert_eq!(listed, 0);
}

#[test]
fn configuration_round_trips_and_bad_values_are_refused() {
    let env = Rosters::default();
    let (mut s, store) = new();
    ok(&s.handle(&create("alice@a.test", "n"), &env));
    let get = iq(
        "alice@a.test",
        "get",
        owner(Element::new("configure", NS_OWNER).attr("node", "n")),
    );
    let out = s.handle(&get, &env);
    let form = Form::find(
        reply(&out)
            .get_child("pubsub", NS_OWNER)
            .unwrap()
            .get_child("configure", NS_OWNER)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(form.value("pubsub#max_items"), Some("3"));
    assert_eq!(
        err(&s.handle(
            &iq(
                "bob@a.test",
                "get",
                owner(Element::new("configure", NS_OWNER).attr("node", "n"))
            ),
            &env
        ))
        .0,
        "forbidden"
    );
    let set = |field: &str, value: &str| {
        let f = Form::new("submit")
            .with_type(NODE_CONFIG)
            .field(Field::new(field, "").value(value));
        iq(
            "alice@a.test",
            "set",
            owner(
                Element::new("configure", NS_OWNER)
                    .attr("node", "n")
                    .child(f.to_element()),
            ),
        )
    };
    ok(&s.handle(&set("pubsub#title", "News"), &env));
    assert_eq!(
        err(&s.handle(&set("pubsub#max_items", "4"), &env)).0,
        "not-acceptable"
    );
    assert_eq!(
        err(&s.handle(&set("pubsub#access_model", "everyone"), &env)).0,
        "not-acceptable"
    );
    assert_eq!(
        err(&s.handle(&set("pubsub#deliver_payloads", "maybe"), &env)).0,
        "not-acceptable"
    );
    // The title shows in disco#items, after a restart too.
    let disco = iq("bob@b.test", "get", Element::new("query", NS_DISCO_ITEMS));
    let out = service(&store).handle(&disco, &env);
    let item = reply(&out)
        .get_child("query", NS_DISCO_ITEMS)
        .unwrap()
        .elements()
        .next()
        .unwrap()
        .clone();
    assert_eq!(
        (item.get_attr("node"), item.get_attr("name")),
        (Some("n"), Some("News"))
    );
}

#[test]
fn the_last_item_goes_to_a_new_subscriber() {
    let env = Rosters::default();
    let (mut s, _) = new();
    ok(&s.handle(&create("alice@a.test", "n"), &env));
    ok(&s.handle(&publish("alice@a.test", "n", "i1", "old"), &env));
    ok(&s.handle(&publish("alice@a.test", "n", "i2", "new"), &env));
    let out = s.handle(&subscribe("bob@b.test/x", "n"), &env);
    ok(&out);
    let n = notifications(&out);
    assert_eq!(n.len(), 1);
    assert!(
        n[0].1.contains("id='i2'") && !n[0].1.contains("id='i1'"),
        "{}",
        n[0].1
    );
}
