//! The incoming s2s stream's decisions, event by event, without sockets or clocks.

use super::*;
use crate::xmpp::testing;
use intercloud_actors::element::NS_CLIENT;
use std::cell::RefCell;

const SECRET: &str = "s3cret";

/// Allows all but evil.test; b.test's certificate proves b.test; remembers stanza ids.
#[derive(Default)]
struct Fake {
    seen: RefCell<HashSet<String>>,
}

impl Env for Fake {
    fn allows(&self, domain: &str) -> bool {
        domain != "evil.test"
    }
    fn cert_proves(&self, domain: &str) -> bool {
        domain == "b.test"
    }
    fn first(&self, e: &Element) -> bool {
        self.seen
            .borrow_mut()
            .insert(e.get_attr("id").unwrap_or("").to_string())
    }
}

fn settings() -> Settings {
    Settings {
        domain: "a.test".into(),
        tls_required: true,
        dialback: true,
        external: true,
        dialback_secret: SECRET.into(),
    }
}

fn new() -> (Incoming, Arc<Metrics>) {
    let m = Arc::new(Metrics::new());
    (Incoming::new(settings(), m.clone()), m)
}

fn header(ns: &str, from: &str, to: &str) -> Input {
    Input::Header(testing::header(
        ns,
        &format!("from='{from}' to='{to}' version='1.0'"),
    ))
}

fn hello(from: &str) -> Input {
    header(NS_SERVER, from, "a.test")
}

fn el(xml: &str) -> Input {
    Input::Element(testing::element(NS_SERVER, xml))
}

fn element(a: &Action) -> Element {
    let Action::Send(xml) = a else {
        panic!("{a:?}")
    };
    testing::element(NS_SERVER, xml)
}

/// The header we answered with (its id) and the names of the features offered.
fn answer(actions: &[Action]) -> (String, Vec<String>) {
    let [Action::Send(out), ..] = actions else {
        panic!("{actions:?}")
    };
    let (h, features) = testing::answer(out);
    (h.get("id").unwrap_or("").to_string(), features)
}

fn closed(actions: &[Action]) -> &'static str {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Close { condition, .. } => Some(*condition),
            _ => None,
        })
        .unwrap_or_else(|| panic!("expected a close: {actions:?}"))
}

/// Up to the first element after TLS, with `from` in the headers; the secured stream's id.
fn secured(n: &mut Incoming, env: &Fake, from: &str) -> (String, Vec<String>) {
    let a = n.handle(hello(from), env);
    assert_eq!(answer(&a).1, ["starttls"]);
    assert_eq!(
        n.handle(el(&format!("<starttls xmlns='{NS_TLS}'/>")), env),
        vec![Action::StartTls]
    );
    assert_eq!(n.handle(Input::TlsReady, env), vec![]);
    answer(&n.handle(hello(from), env))
}

fn external() -> Input {
    el(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{}</auth>",
        B64.encode("b.test")
    ))
}

fn message(from: &str, to: &str, id: &str) -> Input {
    el(&format!(
        "<message from='{from}' to='{to}' id='{id}'><body>x</body></message>"
    ))
}

/// b.test authenticated with SASL EXTERNAL.
fn authenticated(n: &mut Incoming, env: &Fake) {
    secured(n, env, "b.test");
    assert_eq!(
        n.handle(external(), env),
        vec![Action::CheckRevoked("b.test".into())]
    );
    let a = n.handle(Input::Revoked(false), env);
    assert_eq!(element(&a[0]).name, "success");
    assert_eq!(a[1], Action::Restart);
    assert_eq!(answer(&n.handle(hello("b.test"), env)).1, ["sm"]);
    assert!(n.is_established());
}

#[test]
fn sasl_external_admits_the_proven_domain_only() {
    let env = Fake::default();
    let (mut n, m) = new();
    let (_, features) = secured(&mut n, &env, "b.test");
    assert_eq!(features, ["mechanisms", "dialback", "sm"]);
    let (mut n, _) = new();
    authenticated(&mut n, &env);
    assert_eq!(m.s2s_links_in.get(), 0);
    let a = n.handle(message("x@b.test", "y@a.test", "1"), &env);
    let [Action::Route(e)] = a.as_slice() else {
        panic!("{a:?}")
    };
    // Inside, stanzas carry the internal namespace.
    assert_eq!((e.name.as_str(), e.ns.as_str()), ("message", NS_CLIENT));
    // A service of b.test travels on b.test's stream; c.test does not.
    let a = n.handle(message("service.b.test", "y@a.test", "2"), &env);
    assert!(matches!(a.as_slice(), [Action::Route(_)]), "{a:?}");
    let a = n.handle(message("x@c.test", "y@a.test", "3"), &env);
    assert_eq!(closed(&a), "invalid-from");
    // The stream broke unclean: its domain is unreachable.
    assert_eq!(a.last(), Some(&Action::Unreachable(vec!["b.test".into()])));
    assert!(n.is_over());
}

#[test]
fn sasl_external_is_refused_without_proof() {
    let env = Fake::default();
    // The certificate proves b.test, not c.test: EXTERNAL is not even offered.
    let (mut n, m) = new();
    let (_, features) = secured(&mut n, &env, "c.test");
    assert_eq!(features, ["dialback", "sm"]);
    let a = n.handle(
        el(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{}</auth>",
            B64.encode("c.test")
        )),
        &env,
    );
    assert_eq!(element(&a[0]).name, "failure");
    assert_eq!(closed(&a), "not-authorized");
    assert_eq!(m.s2s_auth_failures.get(), 1);
    // An authorization identity other than the header's domain.
    let (mut n, _) = new();
    secured(&mut n, &env, "b.test");
    let a = n.handle(
        el(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{}</auth>",
            B64.encode("c.test")
        )),
        &env,
    );
    assert_eq!(closed(&a), "not-authorized");
    // A revoked certificate.
    let (mut n, _) = new();
    secured(&mut n, &env, "b.test");
    n.handle(external(), &env);
    assert_eq!(
        closed(&n.handle(Input::Revoked(true), &env)),
        "not-authorized"
    );
    // The restarted stream may not claim another domain.
    let (mut n, _) = new();
    secured(&mut n, &env, "b.test");
    n.handle(external(), &env);
    n.handle(Input::Revoked(false), &env);
    assert_eq!(closed(&n.handle(hello("c.test"), &env)), "invalid-from");
}

#[test]
fn headers_and_plain_streams_are_checked() {
    let env = Fake::default();
    for (input, condition) in [
        (header(NS_CLIENT, "b.test", "a.test"), "invalid-namespace"),
        (header(NS_SERVER, "b.test", "other.test"), "host-unknown"),
        (header(NS_SERVER, "evil.test", "a.test"), "policy-violation"),
        (el("<message/>"), "not-well-formed"),
    ] {
        let (mut n, _) = new();
        let a = n.handle(input, &env);
        let [Action::Close {
            header,
            condition: c,
            ..
        }] = a.as_slice()
        else {
            panic!("{a:?}")
        };
        assert_eq!(*c, condition);
        assert!(header.is_some(), "our header goes first");
    }
    // TLS required: nothing else before it.
    let (mut n, _) = new();
    n.handle(hello("b.test"), &env);
    assert_eq!(
        closed(&n.handle(message("x@b.test", "y@a.test", "1"), &env)),
        "policy-violation"
    );
    let (mut n, _) = new();
    n.handle(hello("b.test"), &env);
    n.handle(el(&format!("<starttls xmlns='{NS_TLS}'/>")), &env);
    assert_eq!(
        closed(&n.handle(Input::Pipelined, &env)),
        "policy-violation"
    );
}

#[test]
fn dialback_asks_the_authoritative_server_and_admits_on_its_word() {
    let env = Fake::default();
    let (mut n, m) = new();
    let (id, _) = secured(&mut n, &env, "b.test");
    let key = dialback::key("theirs", "a.test", "b.test", &id);
    let a = n.handle(
        el(&format!(
            "<db:result from='b.test' to='a.test'>{key}</db:result>"
        )),
        &env,
    );
    assert_eq!(
        a,
        vec![Action::AskAuthoritative {
            domain: "b.test".into(),
            receiving: "a.test".into(),
            stream_id: id.clone(),
            key: key.clone()
        }]
    );
    let a = n.handle(Input::Authoritative(true), &env);
    let r = element(&a[0]);
    assert_eq!(
        (r.name.as_str(), r.get_attr("type")),
        ("result", Some("valid"))
    );
    assert_eq!(m.s2s_links_in.get(), 1);
    assert!(matches!(
        n.handle(message("x@b.test", "y@a.test", "1"), &env)
            .as_slice(),
        [Action::Route(_)]
    ));
    // To a domain we do not serve.
    let a = n.handle(message("x@b.test", "y@elsewhere.test", "2"), &env);
    assert_eq!(closed(&a), "host-unknown");
    assert_eq!(m.s2s_links_in.get(), 0);

    // The authoritative server says no: the stream ends.
    let (mut n, m) = new();
    secured(&mut n, &env, "b.test");
    n.handle(
        el("<db:result from='b.test' to='a.test'>k</db:result>"),
        &env,
    );
    let a = n.handle(Input::Authoritative(false), &env);
    assert_eq!(element(&a[0]).get_attr("type"), Some("invalid"));
    assert_eq!(closed(&a), "not-authorized");
    assert_eq!(m.s2s_auth_failures.get(), 1);

    // Refused before asking: a denied domain, another receiving domain.
    let (mut n, _) = new();
    secured(&mut n, &env, "b.test");
    let a = n.handle(
        el("<db:result from='evil.test' to='a.test'>k</db:result>"),
        &env,
    );
    let r = element(&a[0]);
    assert_eq!(r.get_attr("type"), Some("error"));
    assert_eq!(
        r.elements().next().unwrap().elements().next().unwrap().name,
        "not-allowed"
    );
    let a = n.handle(
        el("<db:result from='b.test' to='z.test'>k</db:result>"),
        &env,
    );
    let r = element(&a[0]);
    assert_eq!(
        r.elements().next().unwrap().elements().next().unwrap().name,
        "item-not-found"
    );
    // Nothing authenticated yet: a stanza is refused.
    assert_eq!(
        closed(&n.handle(message("x@b.test", "y@a.test", "1"), &env)),
        "invalid-from"
    );
}

#[test]
fn dialback_verify_answers_for_our_own_keys() {
    let env = Fake::default();
    let (mut n, _) = new();
    secured(&mut n, &env, "b.test");
    let ours = dialback::key(SECRET, "b.test", "a.test", "S1");
    for (key, to, want) in [
        (ours.as_str(), "a.test", "valid"),
        ("0000", "a.test", "invalid"),
        (ours.as_str(), "z.test", "invalid"),
    ] {
        let a = n.handle(
            el(&format!(
                "<db:verify from='b.test' to='{to}' id='S1'>{key}</db:verify>"
            )),
            &env,
        );
        let r = element(&a[0]);
        assert_eq!(
            (r.get_attr("id"), r.get_attr("type")),
            (Some("S1"), Some(want))
        );
    }
}

#[test]
fn acknowledgements_count_every_stanza_and_resends_are_dropped() {
    let env = Fake::default();
    let (mut n, m) = new();
    authenticated(&mut n, &env);
    let enabled = n.handle(el(&format!("<enable xmlns='{NS_SM}'/>")), &env);
    assert_eq!(element(&enabled[0]).name, "enabled");
    // Enabling twice is an unexpected request.
    let again = n.handle(el(&format!("<enable xmlns='{NS_SM}'/>")), &env);
    assert_eq!(element(&again[0]).name, "failed");
    assert!(matches!(
        n.handle(message("x@b.test", "y@a.test", "1"), &env)
            .as_slice(),
        [Action::Route(_)]
    ));
    // The same stanza resent after a cut: not routed again, but counted.
    assert_eq!(n.handle(message("x@b.test", "y@a.test", "1"), &env), vec![]);
    assert_eq!(m.s2s_duplicates.get(), 1);
    let a = n.handle(el(&format!("<r xmlns='{NS_SM}'/>")), &env);
    let ack = element(&a[0]);
    assert_eq!((ack.name.as_str(), ack.get_attr("h")), ("a", Some("2")));
    // A clean close: no unreachable domains.
    assert_eq!(n.handle(Input::End, &env), vec![Action::End]);
}

#[test]
fn a_broken_or_silent_stream_makes_its_domains_unreachable() {
    let env = Fake::default();
    for input in [
        Input::Broken(None),
        Input::Broken(Some(("connection-timeout", "idle".into()))),
        hello("b.test"),
    ] {
        let (mut n, m) = new();
        authenticated(&mut n, &env);
        let a = n.handle(input, &env);
        assert_eq!(
            a.last(),
            Some(&Action::Unreachable(vec!["b.test".into()])),
            "{a:?}"
        );
        assert_eq!(m.s2s_links_in.get(), 0);
    }
}

#[test]
fn a_service_of_ours_is_reached_as_a_host_of_its_own() {
    let env = Fake::default();
    let (mut n, _) = new();
    // Stock servers open streams to conference.a.test.
    let a = n.handle(header(NS_SERVER, "b.test", "conference.a.test"), &env);
    assert_eq!(answer(&a).1, ["starttls"]);
    n.handle(el(&format!("<starttls xmlns='{NS_TLS}'/>")), &env);
    n.handle(Input::TlsReady, &env);
    let (id, _) = answer(&n.handle(header(NS_SERVER, "b.test", "conference.a.test"), &env));
    let a = n.handle(
        el("<db:result from='b.test' to='conference.a.test'>k</db:result>"),
        &env,
    );
    assert_eq!(
        a,
        vec![Action::AskAuthoritative {
            domain: "b.test".into(),
            receiving: "conference.a.test".into(),
            stream_id: id,
            key: "k".into()
        }]
    );
    let r = element(&n.handle(Input::Authoritative(true), &env)[0]);
    assert_eq!(
        (r.get_attr("from"), r.get_attr("type")),
        (Some("conference.a.test"), Some("valid"))
    );
    // Our key for the room service verifies; a domain not ours does not.
    let key = dialback::key(SECRET, "b.test", "conference.a.test", "S9");
    for (to, want) in [
        ("conference.a.test", "valid"),
        ("conference.z.test", "invalid"),
    ] {
        let a = n.handle(
            el(&format!(
                "<db:verify from='b.test' to='{to}' id='S9'>{key}</db:verify>"
            )),
            &env,
        );
        assert_eq!(element(&a[0]).get_attr("type"), Some(want), "{to}");
    }
    // Elsewhere: refused at the header.
    let (mut n, _) = new();
    let a = n.handle(header(NS_SERVER, "b.test", "conference.z.test"), &env);
    assert_eq!(closed(&a), "host-unknown");
}
