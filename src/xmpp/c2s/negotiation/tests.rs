//! The c2s negotiation's decisions, event by event, without sockets or clocks.

use super::*;
use crate::xmpp::testing;
use std::cell::Cell;

/// Accepts PLAIN alice/pw; counts what the throttle is told.
#[derive(Default)]
struct Fake {
    throttled: bool,
    failed: Cell<u32>,
}

impl Env for Fake {
    fn start(&self, name: &str) -> Option<Mechanism> {
        (name == "PLAIN").then_some(Mechanism::Plain)
    }
    fn step(&self, _: &mut Mechanism, data: &[u8]) -> Step {
        if data == b"\0alice\0pw" {
            Step::Success {
                jid: Jid::new(Some("alice"), "c.test", None).unwrap(),
                additional: None,
                anonymous: false,
            }
        } else {
            Step::Failure("not-authorized")
        }
    }
    fn register(&self, request: &Element) -> Element {
        Element::new("iq", NS_CLIENT)
            .attr("type", "result")
            .attr("id", request.get_attr("id").unwrap_or(""))
    }
    fn throttled(&self) -> bool {
        self.throttled
    }
    fn login_failed(&self) {
        self.failed.set(self.failed.get() + 1);
    }
}

fn settings() -> Settings {
    Settings {
        domain: "c.test".into(),
        allow_anonymous: false,
        registration: true,
        max_auth_attempts: 3,
    }
}

/// A client's stream header.
fn header(ns: &str, to: &str, version: &str) -> Input {
    Input::Header(testing::header(
        ns,
        &format!("to='{to}' version='{version}'"),
    ))
}

fn hello() -> Input {
    header(NS_CLIENT, "c.test", "1.0")
}

/// An element as it arrives inside a client stream.
fn el(xml: &str) -> Input {
    Input::Element(testing::element(NS_CLIENT, xml))
}

fn auth(mechanism: &str, data: &[u8]) -> Input {
    el(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{}</auth>",
        B64.encode(data)
    ))
}

/// The names of the features our answer to a header offers.
fn features(actions: &[Action]) -> Vec<String> {
    let [Action::Send(out), ..] = actions else {
        panic!("{actions:?}")
    };
    testing::answer(out).1
}

/// The stanza an action sends (one element).
fn sent(a: &Action) -> Element {
    let Action::Send(xml) = a else {
        panic!("{a:?}")
    };
    testing::element(NS_CLIENT, xml)
}

fn closed(actions: &[Action]) -> (&'static str, bool) {
    match actions.last() {
        Some(Action::Close {
            header, condition, ..
        }) => (condition, header.is_some()),
        other => panic!("expected a close, got {other:?}"),
    }
}

/// Negotiation up to the SASL phase.
fn at_sasl(n: &mut Negotiation, env: &Fake) {
    n.handle(hello(), env);
    assert_eq!(
        n.handle(el(&format!("<starttls xmlns='{NS_TLS}'/>")), env),
        vec![Action::StartTls]
    );
    assert_eq!(n.handle(Input::TlsReady, env), vec![]);
    let a = n.handle(hello(), env);
    assert_eq!(features(&a), ["mechanisms", "register"]);
}

#[test]
fn a_client_goes_from_header_to_binding() {
    let env = Fake::default();
    let mut n = Negotiation::new(settings());
    let a = n.handle(hello(), &env);
    assert_eq!(features(&a), ["starttls"]);
    at_sasl(&mut Negotiation::new(settings()), &env);
    let mut n = Negotiation::new(settings());
    at_sasl(&mut n, &env);
    let a = n.handle(auth("PLAIN", b"\0alice\0pw"), &env);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(sent(&a[0]).name, "success");
    assert_eq!(a[1], Action::Restart);
    let a = n.handle(hello(), &env);
    assert_eq!(features(&a), ["bind", "session", "sm"]);
    assert_eq!(
        a[1],
        Action::Ready {
            jid: Jid::new(Some("alice"), "c.test", None).unwrap(),
            anonymous: false
        }
    );
    assert!(n.is_over());
    assert_eq!(env.failed.get(), 0);
}

#[test]
fn headers_are_checked_before_ours_is_sent() {
    let env = Fake::default();
    for (input, condition) in [
        (
            header("jabber:server", "c.test", "1.0"),
            "invalid-namespace",
        ),
        (header(NS_CLIENT, "other.test", "1.0"), "host-unknown"),
        (header(NS_CLIENT, "c.test", "0.9"), "unsupported-version"),
        (el("<message/>"), "not-well-formed"),
        (
            Input::Broken(Some(("xml-not-well-formed", "x".into()))),
            "xml-not-well-formed",
        ),
    ] {
        let mut n = Negotiation::new(settings());
        let a = n.handle(input, &env);
        // Our header goes first: the client has not seen one yet.
        assert_eq!(closed(&a), (condition, true), "{a:?}");
        assert!(n.is_over());
    }
    // The domain is compared without case.
    let a = Negotiation::new(settings()).handle(header(NS_CLIENT, "C.Test", "1.0"), &env);
    assert_eq!(features(&a), ["starttls"]);
}

#[test]
fn nothing_but_starttls_before_tls() {
    let env = Fake::default();
    let mut n = Negotiation::new(settings());
    n.handle(hello(), &env);
    // SASL is refused with encryption-required, and the stream goes on.
    let a = n.handle(auth("PLAIN", b"\0alice\0pw"), &env);
    assert_eq!(a.len(), 1);
    let f = sent(&a[0]);
    assert_eq!(f.name, "failure");
    assert_eq!(
        f.elements().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["encryption-required"]
    );
    let a = n.handle(el("<message to='bob@c.test'/>"), &env);
    assert_eq!(closed(&a), ("policy-violation", false));

    // Data after <starttls/> is refused before the handshake.
    let mut n = Negotiation::new(settings());
    n.handle(hello(), &env);
    n.handle(el(&format!("<starttls xmlns='{NS_TLS}'/>")), &env);
    assert_eq!(
        closed(&n.handle(Input::Pipelined, &env)),
        ("policy-violation", false)
    );

    // The client's close is answered; a second header is not well-formed.
    let mut n = Negotiation::new(settings());
    n.handle(hello(), &env);
    assert_eq!(n.handle(Input::End, &env), vec![Action::End]);
    let mut n = Negotiation::new(settings());
    n.handle(hello(), &env);
    assert_eq!(closed(&n.handle(hello(), &env)), ("not-well-formed", false));
    let mut n = Negotiation::new(settings());
    n.handle(hello(), &env);
    assert_eq!(n.handle(Input::Broken(None), &env), vec![Action::Stop]);
}

#[test]
fn failed_logins_are_counted_and_end_the_stream() {
    let env = Fake::default();
    let mut n = Negotiation::new(settings());
    at_sasl(&mut n, &env);
    for i in 1..=3u32 {
        let a = n.handle(auth("PLAIN", b"\0alice\0wrong"), &env);
        let f = sent(&a[0]);
        assert_eq!(f.name, "failure");
        assert_eq!(f.elements().next().unwrap().name, "not-authorized");
        assert_eq!(env.failed.get(), i);
        if i < 3 {
            assert_eq!(a.len(), 1, "{a:?}");
        } else {
            assert_eq!(closed(&a), ("policy-violation", false));
        }
    }
    assert!(n.is_over());
}

#[test]
fn sasl_errors_have_their_conditions() {
    let env = Fake::default();
    let cases: [(Input, &str); 5] = [
        (auth("X-UNKNOWN", b""), "invalid-mechanism"),
        // Offered nowhere when anonymous login is off.
        (auth("ANONYMOUS", b""), "invalid-mechanism"),
        (
            el(&format!(
                "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>!!!</auth>"
            )),
            "incorrect-encoding",
        ),
        (
            el(&format!("<response xmlns='{NS_SASL}'>AA==</response>")),
            "malformed-request",
        ),
        (el(&format!("<abort xmlns='{NS_SASL}'/>")), "aborted"),
    ];
    for (input, condition) in cases {
        let mut n = Negotiation::new(settings());
        at_sasl(&mut n, &env);
        let a = n.handle(input, &env);
        assert_eq!(a.len(), 1, "{a:?}");
        let f = sent(&a[0]);
        assert_eq!(
            (f.name.as_str(), f.elements().next().unwrap().name.as_str()),
            ("failure", condition)
        );
    }
    // Only a wrong password counts against the address.
    assert_eq!(env.failed.get(), 0);
}

#[test]
fn an_address_over_its_failures_is_told_to_wait() {
    let env = Fake {
        throttled: true,
        ..Fake::default()
    };
    let mut n = Negotiation::new(settings());
    at_sasl(&mut n, &env);
    // Even the right password is refused for now.
    let a = n.handle(auth("PLAIN", b"\0alice\0pw"), &env);
    let f = sent(&a[0]);
    assert_eq!(f.elements().next().unwrap().name, "temporary-auth-failure");
}

#[test]
fn plain_without_initial_response_is_challenged_then_succeeds() {
    let env = Fake::default();
    let mut n = Negotiation::new(settings());
    at_sasl(&mut n, &env);
    let a = n.handle(
        el(&format!("<auth xmlns='{NS_SASL}' mechanism='PLAIN'/>")),
        &env,
    );
    assert_eq!(sent(&a[0]).name, "challenge");
    let a = n.handle(
        el(&format!(
            "<response xmlns='{NS_SASL}'>{}</response>",
            B64.encode(b"\0alice\0pw")
        )),
        &env,
    );
    assert_eq!(sent(&a[0]).name, "success");
}

#[test]
fn registration_is_answered_and_other_stanzas_need_login() {
    let env = Fake::default();
    let mut n = Negotiation::new(settings());
    at_sasl(&mut n, &env);
    let a = n.handle(
        el("<iq type='get' id='r1'><query xmlns='jabber:iq:register'/></iq>"),
        &env,
    );
    let r = sent(&a[0]);
    assert_eq!(
        (r.get_attr("type"), r.get_attr("id")),
        (Some("result"), Some("r1"))
    );
    let a = n.handle(el("<message to='bob@c.test'/>"), &env);
    assert_eq!(closed(&a), ("not-authorized", false));

    // Without registration, the same request is a stanza before login.
    let mut n = Negotiation::new(Settings {
        registration: false,
        ..settings()
    });
    n.handle(hello(), &env);
    n.handle(el(&format!("<starttls xmlns='{NS_TLS}'/>")), &env);
    n.handle(Input::TlsReady, &env);
    assert_eq!(features(&n.handle(hello(), &env)), ["mechanisms"]);
    let a = n.handle(
        el("<iq type='get' id='r1'><query xmlns='jabber:iq:register'/></iq>"),
        &env,
    );
    assert_eq!(closed(&a), ("not-authorized", false));
}
