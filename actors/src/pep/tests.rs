//! Personal eventing's decisions, stanza by stanza, on an in-memory store: XEP-0115 hashes against the XEP's own examples, who is asked and who is notified, and the bounds.

use super::caps::{self, Caps, NS_CAPS};
use super::service::{Limits, Pep, QUERY_PREFIX};
use crate::dataform::{Field, Form, NS_DATA};
use crate::element::{Attr, Element, NS_CLIENT, NS_XML};
use crate::jid::Jid;
use crate::pubsub::node::{NS_EVENT, NS_PUBSUB};
use crate::pubsub::service::Env;
use crate::stanza::NS_DISCO_INFO;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::Arc;

const TUNE: &str = "http://jabber.org/protocol/tune";

fn identity(category: &str, ty: &str, lang: Option<&str>, name: &str) -> Element {
    let mut e = Element::new("identity", NS_DISCO_INFO)
        .attr("category", category)
        .attr("type", ty)
        .attr("name", name);
    if let Some(l) = lang {
        e.attrs.push(Attr {
            ns: Some(NS_XML.into()),
            name: "lang".into(),
            value: l.into(),
        });
    }
    e
}

fn feature(var: &str) -> Element {
    Element::new("feature", NS_DISCO_INFO).attr("var", var)
}

fn info(features: &[&str]) -> Element {
    let mut q = Element::new("query", NS_DISCO_INFO).child(identity("client", "pc", None, "t"));
    for f in features {
        q = q.child(feature(f));
    }
    q
}

const BASIC: [&str; 4] = [
    "http://jabber.org/protocol/caps",
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "http://jabber.org/protocol/muc",
];

#[test]
fn the_simple_example_of_xep_0115_hashes_to_its_ver() {
    let mut q =
        Element::new("query", NS_DISCO_INFO).child(identity("client", "pc", None, "Exodus 0.9.1"));
    // Out of order on purpose: the algorithm sorts.
    for f in BASIC.iter().rev() {
        q = q.child(feature(f));
    }
    assert_eq!(
        caps::ver_of(&q).as_deref(),
        Some("QgayPKawpkPSDYmwT/WM94uAlu0=")
    );
    // One feature more is another hash; a feature twice is no hash at all.
    let more = q.clone().child(feature("urn:x"));
    assert_ne!(
        caps::ver_of(&more).as_deref(),
        Some("QgayPKawpkPSDYmwT/WM94uAlu0=")
    );
    let twice = q.child(feature(BASIC[0]));
    assert_eq!(caps::ver_of(&twice), None);
}

#[test]
fn the_complex_example_of_xep_0115_hashes_to_its_ver() {
    let mut q = Element::new("query", NS_DISCO_INFO)
        .child(identity("client", "pc", Some("en"), "Psi 0.11"))
        .child(identity("client", "pc", Some("el"), "Ψ 0.11"));
    for f in BASIC {
        q = q.child(feature(f));
    }
    let mut ip = Field::new("ip_version", "text-multi");
    ip.values = vec!["ipv6".into(), "ipv4".into()];
    let form = Form::new("result")
        .field(Field::new("FORM_TYPE", "hidden").value("urn:xmpp:dataforms:softwareinfo"))
        .field(ip)
        .field(Field::new("os", "text-single").value("Mac"))
        .field(Field::new("os_version", "text-single").value("10.5.1"))
        .field(Field::new("software", "text-single").value("Psi"))
        .field(Field::new("software_version", "text-single").value("0.11"));
    let x = form.to_element();
    assert_eq!(x.ns, NS_DATA);
    let q = q.child(x);
    assert_eq!(
        caps::ver_of(&q).as_deref(),
        Some("q07IKJEyjvHSyhy//CH0CxmKi8w=")
    );
    let c = Caps {
        node: "http://psi-im.org".into(),
        ver: "q07IKJEyjvHSyhy//CH0CxmKi8w=".into(),
        hash: Some("sha-1".into()),
    };
    assert!(c.verifies(&q));
    let legacy = Caps { hash: None, ..c };
    assert!(!legacy.verifies(&q));
}

/// Rosters: (owner, contact) -> contact receives owner's presence.
#[derive(Default)]
struct Rosters(HashMap<(String, String), bool>);

impl Env for Rosters {
    fn roster(&self, owner: &str, contact: &str) -> Option<(bool, Vec<String>)> {
        self.0
            .get(&(owner.to_string(), contact.to_string()))
            .map(|f| (*f, vec![]))
    }
}

fn j(s: &str) -> Jid {
    s.parse().unwrap()
}

fn with_caps(ver: &str) -> Element {
    Element::new("presence", NS_CLIENT).child(
        Element::new("c", NS_CAPS)
            .attr("hash", "sha-1")
            .attr("node", "https://slixmpp.test")
            .attr("ver", ver),
    )
}

fn unavailable() -> Element {
    Element::new("presence", NS_CLIENT).attr("type", "unavailable")
}

fn publish(owner: &str, node: &str, id: &str) -> Element {
    Element::new("iq", NS_CLIENT)
        .attr("type", "set")
        .attr("id", "p1")
        .attr("from", format!("{owner}/home"))
        .attr("to", owner)
        .child(
            Element::new("pubsub", NS_PUBSUB).child(
                Element::new("publish", NS_PUBSUB).attr("node", node).child(
                    Element::new("item", NS_PUBSUB).attr("id", id).child(
                        Element::new("tune", TUNE)
                            .child(Element::new("title", TUNE).text(format!("song {id}"))),
                    ),
                ),
            ),
        )
}

fn answer(q: &Element, features: &Element) -> Element {
    Element::new("iq", NS_CLIENT)
        .attr("type", "result")
        .attr("id", q.get_attr("id").unwrap())
        .attr("from", q.get_attr("to").unwrap())
        .attr("to", q.get_attr("from").unwrap())
        .child(features.clone())
}

/// The full JIDs `out` notifies of an item of `node`.
fn notified(out: &[Element], node: &str) -> Vec<String> {
    let mut to: Vec<String> = out
        .iter()
        .filter(|m| m.name == "message")
        .filter(|m| {
            m.get_child("event", NS_EVENT)
                .and_then(|e| e.get_child("items", NS_EVENT))
                .is_some_and(|i| i.get_attr("node") == Some(node))
        })
        .map(|m| m.get_attr("to").unwrap().to_string())
        .collect();
    to.sort();
    to
}

fn setup(limits: Limits) -> (Pep, Rosters) {
    let store = Arc::new(Store::in_memory().unwrap());
    let mut r = Rosters::default();
    // b receives a's presence; c does not.
    r.0.insert(("a@x.test".into(), "b@x.test".into()), true);
    (Pep::new(limits, store), r)
}

#[test]
fn contacts_whose_caps_want_a_node_get_it_and_others_do_not() {
    let (mut pep, r) = setup(Limits::default());
    let wants = info(&[TUNE, &format!("{TUNE}+notify")]);
    let ver = caps::ver_of(&wants).unwrap();
    let a = j("a@x.test");
    // b's phone: an unknown hash is asked about, once.
    let out = pep.presence(&a, &j("b@x.test/phone"), &with_caps(&ver), &r);
    assert_eq!(out.len(), 1);
    let q = out[0].clone();
    assert_eq!(q.get_attr("to"), Some("b@x.test/phone"));
    assert_eq!(q.get_attr("from"), Some("a@x.test"));
    assert!(q.get_attr("id").unwrap().starts_with(QUERY_PREFIX));
    let asked = q.get_child("query", NS_DISCO_INFO).unwrap();
    assert_eq!(
        asked.get_attr("node"),
        Some(format!("https://slixmpp.test#{ver}").as_str())
    );
    // b's laptop with the same hash waits for the same answer.
    assert!(pep
        .presence(&a, &j("b@x.test/laptop"), &with_caps(&ver), &r)
        .is_empty());
    // c sends the same hash but may not read a's presence-model nodes.
    assert!(pep
        .presence(&a, &j("c@x.test/pc"), &with_caps(&ver), &r)
        .is_empty());
    assert_eq!(pep.pending(), 1);
    assert!(pep.iq(&answer(&q, &wants), &r).is_empty());
    assert_eq!(pep.known_caps(), 1);
    let out = pep.iq(&publish("a@x.test", TUNE, "1"), &r);
    assert_eq!(out[0].get_attr("type"), Some("result"));
    assert_eq!(
        notified(&out, TUNE),
        vec!["b@x.test/laptop", "b@x.test/phone"]
    );
    // A node nobody's caps ask for notifies no one.
    let out = pep.iq(&publish("a@x.test", "urn:other", "1"), &r);
    assert_eq!(notified(&out, "urn:other"), Vec::<String>::new());
}

#[test]
fn an_answer_that_does_not_match_its_hash_counts_for_the_one_who_gave_it() {
    let (mut pep, r) = setup(Limits::default());
    let a = j("a@x.test");
    let claimed = caps::ver_of(&info(&[TUNE])).unwrap();
    let q = pep.presence(&a, &j("b@x.test/phone"), &with_caps(&claimed), &r)[0].clone();
    assert!(pep
        .presence(&a, &j("b@x.test/laptop"), &with_caps(&claimed), &r)
        .is_empty());
    // The phone answers with +notify, which is not what the hash said.
    let lie = info(&[TUNE, &format!("{TUNE}+notify")]);
    pep.iq(&answer(&q, &lie), &r);
    assert_eq!(pep.known_caps(), 0);
    let out = pep.iq(&publish("a@x.test", TUNE, "1"), &r);
    assert_eq!(notified(&out, TUNE), vec!["b@x.test/phone"]);
}

#[test]
fn only_whom_we_asked_may_answer() {
    let (mut pep, r) = setup(Limits::default());
    let a = j("a@x.test");
    let wants = info(&[&format!("{TUNE}+notify")]);
    let ver = caps::ver_of(&wants).unwrap();
    let q = pep.presence(&a, &j("b@x.test/phone"), &with_caps(&ver), &r)[0].clone();
    let mut forged = answer(&q, &wants);
    forged.set_attr("from", "mallory@evil.test/x");
    assert!(pep.iq(&forged, &r).is_empty());
    assert_eq!((pep.known_caps(), pep.pending()), (0, 1));
    pep.iq(&answer(&q, &wants), &r);
    assert_eq!((pep.known_caps(), pep.pending()), (1, 0));
}

#[test]
fn the_last_item_goes_to_a_contact_coming_online_and_not_after_it_leaves() {
    let (mut pep, r) = setup(Limits::default());
    let a = j("a@x.test");
    let wants = info(&[&format!("{TUNE}+notify")]);
    let ver = caps::ver_of(&wants).unwrap();
    pep.iq(&publish("a@x.test", TUNE, "1"), &r);
    pep.iq(&publish("a@x.test", TUNE, "2"), &r);
    let q = pep.presence(&a, &j("b@x.test/phone"), &with_caps(&ver), &r)[0].clone();
    // The answer resolves the interest: the last item (only) follows.
    let out = pep.iq(&answer(&q, &wants), &r);
    assert_eq!(notified(&out, TUNE), vec!["b@x.test/phone"]);
    let ids: Vec<&str> = out[0]
        .get_child("event", NS_EVENT)
        .unwrap()
        .get_child("items", NS_EVENT)
        .unwrap()
        .elements()
        .filter_map(|i| i.get_attr("id"))
        .collect();
    assert_eq!(ids, vec!["2"]);
    // A known hash needs no question: the last item at once.
    let out = pep.presence(&a, &j("b@x.test/tablet"), &with_caps(&ver), &r);
    assert_eq!(notified(&out, TUNE), vec!["b@x.test/tablet"]);
    // The same presence again changes nothing.
    assert!(pep
        .presence(&a, &j("b@x.test/tablet"), &with_caps(&ver), &r)
        .is_empty());
    pep.presence(&a, &j("b@x.test/tablet"), &unavailable(), &r);
    let out = pep.iq(&publish("a@x.test", TUNE, "3"), &r);
    assert_eq!(notified(&out, TUNE), vec!["b@x.test/phone"]);
    // The phone's domain breaks: no one is left to notify.
    pep.domain_gone("x.test");
    assert_eq!(pep.tracked(), 0);
    let out = pep.iq(&publish("a@x.test", TUNE, "4"), &r);
    assert_eq!(notified(&out, TUNE), Vec::<String>::new());
}

#[test]
fn only_the_account_creates_and_publishes_in_its_service() {
    let (mut pep, r) = setup(Limits::default());
    let mut by_b = publish("a@x.test", TUNE, "1");
    by_b.set_attr("from", "b@x.test/phone");
    let out = pep.iq(&by_b, &r);
    assert_eq!(out[0].get_attr("type"), Some("error"));
    assert!(out[0]
        .get_child("error", NS_CLIENT)
        .unwrap()
        .get_child("forbidden", crate::stanza::NS_STANZAS)
        .is_some());
    let out = pep.iq(&publish("a@x.test", TUNE, "1"), &r);
    assert_eq!(out[0].get_attr("type"), Some("result"));
    let mut again = publish("a@x.test", TUNE, "2");
    again.set_attr("from", "b@x.test/phone");
    let out = pep.iq(&again, &r);
    assert_eq!(out[0].get_attr("type"), Some("error"));
}

#[test]
fn interests_and_queries_are_bounded() {
    let (mut pep, r) = setup(Limits {
        max_recipients: 2,
        max_pending: 1,
        ..Limits::default()
    });
    let a = j("a@x.test");
    let q1 = pep.presence(&a, &j("b@x.test/1"), &with_caps("v1"), &r);
    let q2 = pep.presence(&a, &j("b@x.test/2"), &with_caps("v2"), &r);
    assert_eq!((q1.len(), q2.len()), (1, 1));
    // The second query pushed out the first.
    assert_eq!(pep.pending(), 1);
    assert!(pep.iq(&answer(&q1[0], &info(&[])), &r).is_empty());
    assert_eq!(pep.pending(), 1);
    // A third resource is not tracked at all.
    assert!(pep
        .presence(&a, &j("b@x.test/3"), &with_caps("v3"), &r)
        .is_empty());
    assert_eq!(pep.tracked(), 2);
}

#[test]
fn the_account_answers_disco_as_a_pep_service() {
    let (mut pep, r) = setup(Limits::default());
    let q = Element::new("iq", NS_CLIENT)
        .attr("type", "get")
        .attr("id", "d1")
        .attr("from", "b@x.test/phone")
        .attr("to", "a@x.test")
        .child(Element::new("query", NS_DISCO_INFO));
    let out = pep.iq(&q, &r);
    let q = out[0].get_child("query", NS_DISCO_INFO).unwrap();
    let ids: Vec<(&str, &str)> = q
        .elements()
        .filter(|e| e.name == "identity")
        .map(|e| (e.get_attr("category").unwrap(), e.get_attr("type").unwrap()))
        .collect();
    assert_eq!(ids, vec![("account", "registered"), ("pubsub", "pep")]);
}

#[test]
fn presence_to_accounts_without_nodes_loads_no_service() {
    let (mut pep, r) = setup(Limits::default());
    let wants = info(&[&format!("{TUNE}+notify")]);
    let ver = caps::ver_of(&wants).unwrap();
    let q = pep.presence(&j("a@x.test"), &j("b@x.test/phone"), &with_caps(&ver), &r)[0].clone();
    pep.iq(&answer(&q, &wants), &r);
    // A peer names made-up local accounts: nothing is kept for them.
    for i in 0..50 {
        let owner = j(&format!("nobody{i}@x.test"));
        assert!(pep
            .presence(&owner, &j("b@x.test/phone"), &with_caps(&ver), &r)
            .is_empty());
    }
    assert_eq!(pep.loaded(), 0);
    // An account that publishes has its service kept.
    pep.iq(&publish("a@x.test", TUNE, "1"), &r);
    assert_eq!(pep.loaded(), 1);
}
