//! The client stream's negotiation (RFC 6120 §4–7) as a sans-IO state machine: stream headers, STARTTLS, SASL and in-band registration go in as events, what to send and what to do next come out; `c2s/mod.rs` drives it over a socket.

use crate::xmpp::codec::{self, StreamHeader};
use crate::xmpp::register;
use crate::xmpp::sasl::{self, Mechanism, Step, NS_SASL};
use crate::xmpp::stream::{new_id, NS_TLS};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use intercloud_actors::element::{Element, NS_CLIENT};
use intercloud_actors::jid::Jid;
use intercloud_actors::sm::NS_SM;
use intercloud_actors::stanza::{NS_BIND, NS_SESSION};

/// What the negotiation is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub domain: String,
    pub allow_anonymous: bool,
    /// Whether XEP-0077 in-band registration is offered before login.
    pub registration: bool,
    /// SASL failures before the stream is closed.
    pub max_auth_attempts: u32,
}

/// What the negotiation asks of the node: accounts, registration, the login throttle.
pub trait Env {
    /// Starts SASL mechanism `name`; None when unsupported.
    fn start(&self, name: &str) -> Option<Mechanism>;
    /// Feeds the client's data to the mechanism.
    fn step(&self, mechanism: &mut Mechanism, data: &[u8]) -> Step;
    /// Answers an in-band registration request.
    fn register(&self, request: &Element) -> Element;
    /// Whether too many logins failed lately from this connection's address.
    fn throttled(&self) -> bool;
    /// Counts a wrong password against this connection's address.
    fn login_failed(&self);
}

/// What the driver saw.
#[derive(Debug)]
pub enum Input {
    Header(StreamHeader),
    Element(Element),
    /// The client's `</stream:stream>`.
    End,
    /// The read failed: with the stream error it calls for, or None when the client is gone.
    Broken(Option<(&'static str, String)>),
    /// The client sent more after `<starttls/>`, before the handshake.
    Pipelined,
    /// The TLS handshake the driver ran after [`Action::StartTls`] succeeded.
    TlsReady,
}

/// What the driver must do, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Send(String),
    /// Send `<proceed/>` and run the server side of the TLS handshake.
    StartTls,
    /// SASL succeeded: the client restarts the stream on the same transport.
    Restart,
    /// End the stream with a stream error (after our header when it was not sent yet).
    Close {
        header: Option<String>,
        condition: &'static str,
        text: String,
    },
    /// Answer the client's close with ours and stop.
    End,
    /// Stop without writing: the client is gone.
    Stop,
    /// Negotiation is over: resource binding is offered to this account.
    Ready {
        jid: Jid,
        anonymous: bool,
    },
}

enum Phase {
    /// Waiting for the client's stream header, then offering what comes next.
    Header(Next),
    /// Before TLS: only `<starttls/>` moves on.
    Plain,
    /// `<proceed/>` sent; the driver runs the handshake.
    Handshake,
    /// SASL (and registration) on the TLS stream.
    Sasl {
        failures: u32,
        mechanism: Option<Mechanism>,
    },
    /// Bind offered, or the stream closed.
    Over,
}

#[derive(Debug)]
enum Next {
    Plain,
    Sasl,
    Bind { jid: Jid, anonymous: bool },
}

/// One client stream's negotiation.
pub struct Negotiation {
    settings: Settings,
    phase: Phase,
}

impl Negotiation {
    pub fn new(settings: Settings) -> Negotiation {
        Negotiation {
            settings,
            phase: Phase::Header(Next::Plain),
        }
    }

    /// Whether negotiation ended (bound, closed or stopped).
    pub fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Over)
    }

    /// Takes one event; returns what to do about it.
    pub fn handle(&mut self, input: Input, env: &dyn Env) -> Vec<Action> {
        match std::mem::replace(&mut self.phase, Phase::Over) {
            Phase::Header(next) => self.header(input, next),
            Phase::Plain => self.plain(input),
            Phase::Handshake => match input {
                Input::TlsReady => {
                    self.phase = Phase::Header(Next::Sasl);
                    vec![]
                }
                Input::Pipelined => self.close(true, "policy-violation", "data after <starttls/>"),
                other => self.unexpected(other, true),
            },
            Phase::Sasl {
                failures,
                mechanism,
            } => self.sasl(input, failures, mechanism, env),
            Phase::Over => vec![Action::Stop],
        }
    }

    fn close(&mut self, header_sent: bool, condition: &'static str, text: &str) -> Vec<Action> {
        self.phase = Phase::Over;
        let header = (!header_sent).then(|| {
            codec::stream_header(
                NS_CLIENT,
                Some(&self.settings.domain),
                None,
                Some(&new_id()),
                &[],
            )
        });
        vec![Action::Close {
            header,
            condition,
            text: text.to_string(),
        }]
    }

    /// Whatever a phase has no rule for: the client's close, a broken read,
    /// a second header.
    fn unexpected(&mut self, input: Input, header_sent: bool) -> Vec<Action> {
        match input {
            Input::End => {
                self.phase = Phase::Over;
                vec![Action::End]
            }
            Input::Broken(Some((condition, text))) => self.close(header_sent, condition, &text),
            Input::Broken(None) => {
                self.phase = Phase::Over;
                vec![Action::Stop]
            }
            Input::Header(_) => self.close(header_sent, "not-well-formed", "second stream header"),
            _ => self.close(header_sent, "internal-server-error", "out of order"),
        }
    }

    /// Checks the client's header; answers with ours and the features of `next`.
    fn header(&mut self, input: Input, next: Next) -> Vec<Action> {
        let h = match input {
            Input::Header(h) => h,
            Input::Broken(_) => return self.unexpected(input, false),
            _ => return self.close(false, "not-well-formed", "expected a stream header"),
        };
        if h.default_ns != NS_CLIENT {
            return self.close(false, "invalid-namespace", "this port serves jabber:client");
        }
        if let Some(to) = h.get("to") {
            if !to.eq_ignore_ascii_case(&self.settings.domain) {
                return self.close(
                    false,
                    "host-unknown",
                    "this server does not serve that domain",
                );
            }
        }
        if !matches!(h.get("version"), Some(v) if v.split('.').next() == Some("1")) {
            return self.close(false, "unsupported-version", "version 1.0 is required");
        }
        let features = match &next {
            Next::Plain => {
                vec![Element::new("starttls", NS_TLS).child(Element::new("required", NS_TLS))]
            }
            Next::Sasl => {
                let mut mechs = Element::new("mechanisms", NS_SASL);
                for m in sasl::offered(true, self.settings.allow_anonymous) {
                    mechs = mechs.child(Element::new("mechanism", NS_SASL).text(m));
                }
                let mut f = vec![mechs];
                if self.settings.registration {
                    f.push(register::feature());
                }
                f
            }
            Next::Bind { .. } => vec![
                Element::new("bind", NS_BIND),
                Element::new("session", NS_SESSION).child(Element::new("optional", NS_SESSION)),
                Element::new("sm", NS_SM),
            ],
        };
        let mut out = codec::stream_header(
            NS_CLIENT,
            Some(&self.settings.domain),
            h.get("from"),
            Some(&new_id()),
            &[],
        );
        out.push_str(&codec::features(&features));
        let mut actions = vec![Action::Send(out)];
        match next {
            Next::Plain => self.phase = Phase::Plain,
            Next::Sasl => {
                self.phase = Phase::Sasl {
                    failures: 0,
                    mechanism: None,
                }
            }
            Next::Bind { jid, anonymous } => actions.push(Action::Ready { jid, anonymous }),
        }
        actions
    }

    /// Before TLS only STARTTLS moves on; SASL is refused until then.
    fn plain(&mut self, input: Input) -> Vec<Action> {
        match input {
            Input::Element(e) if e.is("starttls", NS_TLS) => {
                self.phase = Phase::Handshake;
                vec![Action::StartTls]
            }
            Input::Element(e) if e.ns == NS_SASL && e.name == "auth" => {
                tracing::info!("refused SASL before TLS");
                self.phase = Phase::Plain;
                let f = Element::new("failure", NS_SASL)
                    .child(Element::new("encryption-required", NS_SASL));
                vec![Action::Send(f.to_xml())]
            }
            Input::Element(_) => self.close(true, "policy-violation", "STARTTLS is required"),
            other => self.unexpected(other, true),
        }
    }

    /// The SASL exchange (RFC 6120 §6.4), with registration beside it.
    fn sasl(
        &mut self,
        input: Input,
        mut failures: u32,
        mut mechanism: Option<Mechanism>,
        env: &dyn Env,
    ) -> Vec<Action> {
        let e = match input {
            Input::Element(e) => e,
            other => return self.unexpected(other, true),
        };
        if self.settings.registration && register::is_request(&e) {
            self.phase = Phase::Sasl {
                failures,
                mechanism,
            };
            return vec![Action::Send(env.register(&e).to_xml_in(NS_CLIENT))];
        }
        if e.ns != NS_SASL {
            return self.close(true, "not-authorized", "authenticate first");
        }
        let step = match e.name.as_str() {
            // Too many failed logins from this address: refused for now.
            "auth" if env.throttled() => Step::Failure("temporary-auth-failure"),
            "auth" => {
                let name = e.get_attr("mechanism").unwrap_or("");
                let offered = sasl::offered(true, self.settings.allow_anonymous);
                match offered.contains(&name).then(|| env.start(name)).flatten() {
                    None => Step::Failure("invalid-mechanism"),
                    Some(mut m) => {
                        let step = match decode_b64(&e.text_content()) {
                            Err(()) => Step::Failure("incorrect-encoding"),
                            // No initial response: ask for it.
                            Ok(None) if matches!(m, Mechanism::Scram(_) | Mechanism::Plain) => {
                                Step::Challenge(Vec::new())
                            }
                            Ok(data) => env.step(&mut m, &data.unwrap_or_default()),
                        };
                        mechanism = Some(m);
                        step
                    }
                }
            }
            "response" => match (&mut mechanism, decode_b64(&e.text_content())) {
                (Some(m), Ok(data)) => env.step(m, &data.unwrap_or_default()),
                (Some(_), Err(())) => Step::Failure("incorrect-encoding"),
                (None, _) => Step::Failure("malformed-request"),
            },
            "abort" => Step::Failure("aborted"),
            _ => Step::Failure("malformed-request"),
        };
        match step {
            Step::Challenge(c) => {
                self.phase = Phase::Sasl {
                    failures,
                    mechanism,
                };
                let el = Element::new("challenge", NS_SASL).text(B64.encode(c));
                vec![Action::Send(el.to_xml())]
            }
            Step::Success {
                jid,
                additional,
                anonymous,
            } => {
                tracing::info!(jid = %jid, "authenticated");
                let mut el = Element::new("success", NS_SASL);
                if let Some(a) = additional {
                    el = el.text(B64.encode(a));
                }
                self.phase = Phase::Header(Next::Bind { jid, anonymous });
                vec![Action::Send(el.to_xml()), Action::Restart]
            }
            Step::Failure(condition) => {
                failures += 1;
                if condition == "not-authorized" {
                    env.login_failed();
                }
                tracing::info!(condition, failures, "SASL failure");
                let el = Element::new("failure", NS_SASL).child(Element::new(condition, NS_SASL));
                let mut actions = vec![Action::Send(el.to_xml())];
                if failures >= self.settings.max_auth_attempts {
                    actions.extend(self.close(
                        true,
                        "policy-violation",
                        "too many failed authentication attempts",
                    ));
                } else {
                    self.phase = Phase::Sasl {
                        failures,
                        mechanism: None,
                    };
                }
                actions
            }
        }
    }
}

/// Base64 of a SASL element: Ok(None) for no data, Ok(Some(empty)) for "=".
fn decode_b64(text: &str) -> Result<Option<Vec<u8>>, ()> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t == "=" {
        return Ok(Some(Vec::new()));
    }
    B64.decode(t).map(Some).map_err(|_| ())
}

#[cfg(test)]
mod tests;
