//! The outgoing s2s negotiation's decisions, event by event, without sockets or clocks.

use super::*;
use crate::xmpp::testing;

/// The certificate b.test presented proves b.test when `proves`.
struct Fake {
    proves: bool,
}

impl Env for Fake {
    fn cert_proves(&self, domain: &str) -> bool {
        self.proves && domain == "b.test"
    }
}

fn settings() -> Settings {
    Settings {
        local: "a.test".into(),
        remote: "b.test".into(),
        authenticate: true,
        external: true,
        dialback: true,
        dialback_secret: "s3cret".into(),
    }
}

fn header(ns: &str, id: &str) -> Input {
    Input::Header(testing::header(
        ns,
        &format!("from='b.test' to='a.test' id='{id}' version='1.0'"),
    ))
}

fn el(xml: &str) -> Input {
    Input::Element(testing::element(NS_SERVER, xml))
}

fn features(inner: &str) -> Input {
    el(&format!(
        "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>{inner}</stream:features>"
    ))
}

const STARTTLS: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>";
const EXTERNAL: &str = "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>";
const DIALBACK: &str = "<dialback xmlns='urn:xmpp:features:dialback'/>";
const SM: &str = "<sm xmlns='urn:xmpp:sm:3'/>";

/// The element an action sends.
fn sent(a: &Action) -> Element {
    let Action::Send(xml) = a else {
        panic!("{a:?}")
    };
    testing::element(NS_SERVER, xml)
}

fn failed(a: &[Action]) -> &DialError {
    match a {
        [Action::Fail(e)] => e,
        other => panic!("expected a failure: {other:?}"),
    }
}

/// Up to the secured stream's features (not yet fed).
fn secured(env: &Fake) -> Connect {
    secured_with(env, settings())
}

fn secured_with(env: &Fake, settings: Settings) -> Connect {
    let (mut c, hello) = Connect::new(settings);
    assert!(
        matches!(hello, Action::Send(ref h) if h.contains("to='b.test'")),
        "{hello:?}"
    );
    assert!(c.handle(header(NS_SERVER, "P1"), env).is_empty());
    let a = c.handle(features(STARTTLS), env);
    assert!(sent(&a[0]).is("starttls", NS_TLS));
    let a = c.handle(
        el("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        env,
    );
    assert!(matches!(a.as_slice(), [Action::StartTls]), "{a:?}");
    let a = c.handle(Input::TlsReady, env);
    assert!(
        matches!(a.as_slice(), [Action::Send(_)]),
        "a new header: {a:?}"
    );
    assert!(c.handle(header(NS_SERVER, "S1"), env).is_empty());
    c
}

#[test]
fn sasl_external_then_acknowledgements() {
    let env = Fake { proves: true };
    let mut c = secured(&env);
    let a = c.handle(features(&format!("{EXTERNAL}{DIALBACK}{SM}")), &env);
    assert!(matches!(a.as_slice(), [Action::CheckRevoked]), "{a:?}");
    let a = c.handle(Input::Revoked(false), &env);
    let auth = sent(&a[0]);
    assert_eq!(auth.get_attr("mechanism"), Some("EXTERNAL"));
    assert_eq!(auth.text_content(), B64.encode("a.test"));
    let a = c.handle(
        el("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"),
        &env,
    );
    assert!(
        matches!(a.as_slice(), [Action::Restart, Action::Send(_)]),
        "{a:?}"
    );
    assert!(c.handle(header(NS_SERVER, "S2"), &env).is_empty());
    let a = c.handle(features(SM), &env);
    assert!(sent(&a[0]).is("enable", NS_SM));
    let a = c.handle(el("<enabled xmlns='urn:xmpp:sm:3'/>"), &env);
    let [Action::Ready {
        header, managed, ..
    }] = a.as_slice()
    else {
        panic!("{a:?}")
    };
    assert_eq!((header.get("id"), *managed), (Some("S2"), true));
}

#[test]
fn dialback_when_the_certificate_does_not_prove_the_peer() {
    let env = Fake { proves: false };
    let mut c = secured(&env);
    let a = c.handle(features(&format!("{EXTERNAL}{DIALBACK}{SM}")), &env);
    let r = sent(&a[0]);
    assert_eq!((r.name.as_str(), r.ns.as_str()), ("result", NS_DIALBACK));
    // The key is made over the stream id the peer gave the secured stream.
    assert_eq!(
        r.text_content(),
        dialback::key("s3cret", "b.test", "a.test", "S1")
    );
    // Other elements may come first.
    assert!(c.handle(el("<presence from='x@b.test'/>"), &env).is_empty());
    let a = c.handle(
        el("<db:result from='b.test' to='a.test' type='valid'/>"),
        &env,
    );
    assert!(sent(&a[0]).is("enable", NS_SM));
    // The peer does not do acknowledgements: a link without them.
    let a = c.handle(el("<failed xmlns='urn:xmpp:sm:3'/>"), &env);
    assert!(
        matches!(a.as_slice(), [Action::Ready { managed: false, .. }]),
        "{a:?}"
    );

    // A revoked certificate falls back to dialback too.
    let env = Fake { proves: true };
    let mut c = secured(&env);
    c.handle(features(&format!("{EXTERNAL}{DIALBACK}")), &env);
    let a = c.handle(Input::Revoked(true), &env);
    assert_eq!(sent(&a[0]).name, "result");
    // Refused: another dial would meet the same answer.
    let a = c.handle(
        el("<db:result from='b.test' to='a.test' type='invalid'/>"),
        &env,
    );
    assert!(matches!(failed(&a), DialError::NotFound(_)), "{a:?}");
}

#[test]
fn failures_are_told_apart() {
    let env = Fake { proves: false };
    // No STARTTLS offered: a refusal.
    let (mut c, _) = Connect::new(settings());
    c.handle(header(NS_SERVER, "P1"), &env);
    assert!(matches!(
        failed(&c.handle(features(""), &env)),
        DialError::NotFound(_)
    ));
    // Not a server stream.
    let (mut c, _) = Connect::new(settings());
    assert!(matches!(
        failed(&c.handle(header("jabber:client", "P1"), &env)),
        DialError::NotFound(_)
    ));
    // Silence: a timeout.
    let (mut c, _) = Connect::new(settings());
    assert!(matches!(
        failed(&c.handle(Input::Broken(WireError::Timeout), &env)),
        DialError::Timeout(_)
    ));
    // The connection went away mid-way: broken, worth another dial.
    let (mut c, _) = Connect::new(settings());
    c.handle(header(NS_SERVER, "P1"), &env);
    assert!(matches!(
        failed(&c.handle(Input::Broken(WireError::Eof), &env)),
        DialError::Broken(_)
    ));
    // A stream error the network may have caused is a broken stream; a
    // refusal is not.
    for (condition, broken) in [("not-well-formed", true), ("host-unknown", false)] {
        let (mut c, _) = Connect::new(settings());
        c.handle(header(NS_SERVER, "P1"), &env);
        let a = c.handle(
            el(&format!(
                "<stream:error xmlns:stream='http://etherx.jabber.org/streams'>\
                 <{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
            )),
            &env,
        );
        assert_eq!(matches!(failed(&a), DialError::Broken(_)), broken, "{a:?}");
    }
    // No method in common (yet): broken, not a refusal. (The peer's header
    // declares the dialback namespace, which offers dialback; we do not.)
    let mut c = secured_with(
        &env,
        Settings {
            dialback: false,
            ..settings()
        },
    );
    assert!(matches!(
        failed(&c.handle(features(SM), &env)),
        DialError::Broken(_)
    ));
    // Acknowledgements never answered: the dial failed.
    let mut c = secured(&env);
    c.handle(features(&format!("{DIALBACK}{SM}")), &env);
    c.handle(
        el("<db:result from='b.test' to='a.test' type='valid'/>"),
        &env,
    );
    assert!(matches!(
        failed(&c.handle(Input::Broken(WireError::Timeout), &env)),
        DialError::Timeout(_)
    ));
}

#[test]
fn a_verification_stream_stops_after_tls() {
    let env = Fake { proves: true };
    let (mut c, _) = Connect::new(Settings {
        authenticate: false,
        ..settings()
    });
    c.handle(header(NS_SERVER, "P1"), &env);
    c.handle(features(STARTTLS), &env);
    c.handle(
        el("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        &env,
    );
    c.handle(Input::TlsReady, &env);
    c.handle(header(NS_SERVER, "S1"), &env);
    let a = c.handle(features(&format!("{EXTERNAL}{DIALBACK}{SM}")), &env);
    assert!(
        matches!(a.as_slice(), [Action::Ready { managed: false, .. }]),
        "{a:?}"
    );
}
