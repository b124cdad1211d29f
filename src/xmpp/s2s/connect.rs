//! An outgoing s2s stream's negotiation as a sans-IO state machine: our header, the peer's features, STARTTLS, then SASL EXTERNAL (XEP-0178) or dialback (XEP-0220), then XEP-0198 acknowledgements; what failed is classified as a refusal, a timeout or a broken connection. `outbound.rs` drives it over a socket.

use crate::xmpp::codec::{self, Event, StreamHeader};
use crate::xmpp::dialback::{self, NS_DIALBACK, NS_DIALBACK_FEATURE};
use crate::xmpp::sasl::NS_SASL;
use crate::xmpp::stream::{WireError, NS_TLS};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use intercloud_actors::element::{Element, NS_SERVER};
use intercloud_actors::link::DialError;
use intercloud_actors::sm::NS_SM;

/// What the dial is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub local: String,
    pub remote: String,
    /// False for a stream that only asks the peer to verify a dialback key.
    pub authenticate: bool,
    pub external: bool,
    pub dialback: bool,
    pub dialback_secret: String,
}

/// What the dial asks of the node.
pub trait Env {
    /// Whether the certificate the peer presented proves `domain`.
    fn cert_proves(&self, domain: &str) -> bool;
}

/// What the driver saw, or the answer to what it was asked.
#[derive(Debug)]
pub enum Input {
    Header(StreamHeader),
    Element(Element),
    End,
    Broken(WireError),
    /// The client side of the TLS handshake after [`Action::StartTls`] succeeded.
    TlsReady,
    /// Answer to [`Action::CheckRevoked`].
    Revoked(bool),
}

/// What the driver must do, in order.
#[derive(Debug)]
pub enum Action {
    Send(String),
    /// Run the client side of the TLS handshake with the remote domain's name.
    StartTls,
    /// SASL succeeded: start a fresh stream on the same transport.
    Restart,
    /// Ask the directory whether the certificate the remote domain presented is revoked.
    CheckRevoked,
    /// The stream is ready: the peer's header and features, and whether acknowledgements are on.
    Ready {
        header: Box<StreamHeader>,
        features: Element,
        managed: bool,
    },
    /// The dial failed.
    Fail(DialError),
}

enum Stage {
    Plain,
    Secured,
    /// Restarted after SASL EXTERNAL.
    Authenticated,
}

enum Phase {
    Header(Stage),
    Features(Stage, StreamHeader),
    Proceed,
    Handshake,
    Revocation(StreamHeader, Element),
    Success,
    Dialback(StreamHeader, Element),
    Enabled(StreamHeader, Element),
    Over,
}

/// One outgoing stream's negotiation.
pub struct Connect {
    settings: Settings,
    phase: Phase,
}

impl Connect {
    /// Starts the dial: our stream header goes out first.
    pub fn new(settings: Settings) -> (Connect, Action) {
        let c = Connect {
            settings,
            phase: Phase::Header(Stage::Plain),
        };
        let h = c.header();
        (c, Action::Send(h))
    }

    /// The domain dialed.
    pub fn remote(&self) -> &str {
        &self.settings.remote
    }

    fn header(&self) -> String {
        super::header(&self.settings.local, Some(&self.settings.remote), None)
    }

    /// Takes one event; returns what to do about it.
    pub fn handle(&mut self, input: Input, env: &dyn Env) -> Vec<Action> {
        let remote = self.settings.remote.clone();
        match std::mem::replace(&mut self.phase, Phase::Over) {
            Phase::Header(stage) => match input {
                Input::Header(h) if h.default_ns != NS_SERVER => fail(DialError::NotFound(
                    "peer does not speak jabber:server".into(),
                )),
                Input::Header(h) => {
                    self.phase = Phase::Features(stage, h);
                    vec![]
                }
                Input::Broken(WireError::Timeout) => {
                    fail(DialError::Timeout("no stream header".into()))
                }
                other => fail(unexpected("expected a stream header", other)),
            },
            Phase::Features(stage, h) => match input {
                Input::Element(f) if f.name == "features" => self.features(stage, h, f, env),
                Input::Broken(WireError::Timeout) => {
                    fail(DialError::Timeout("no stream features".into()))
                }
                other => fail(unexpected("expected stream features", other)),
            },
            Phase::Proceed => match input {
                Input::Element(p) if p.name == "proceed" => {
                    self.phase = Phase::Handshake;
                    vec![Action::StartTls]
                }
                other => fail(unexpected("STARTTLS", other)),
            },
            Phase::Handshake => match input {
                Input::TlsReady => {
                    self.phase = Phase::Header(Stage::Secured);
                    vec![Action::Send(self.header())]
                }
                other => fail(unexpected("TLS", other)),
            },
            Phase::Revocation(h, f) => match input {
                Input::Revoked(false) => {
                    let auth = Element::new("auth", NS_SASL)
                        .attr("mechanism", "EXTERNAL")
                        .text(B64.encode(self.settings.local.as_bytes()));
                    self.phase = Phase::Success;
                    vec![Action::Send(auth.to_xml())]
                }
                // A revoked certificate: dialback may still prove who we are.
                Input::Revoked(true) => self.dialback(h, f),
                other => fail(unexpected("certificate check", other)),
            },
            Phase::Success => match input {
                Input::Element(r) if r.is("success", NS_SASL) => {
                    tracing::info!(%remote, "authenticated to peer with SASL EXTERNAL");
                    self.phase = Phase::Header(Stage::Authenticated);
                    vec![Action::Restart, Action::Send(self.header())]
                }
                other => fail(unexpected(&format!("SASL EXTERNAL with {remote}"), other)),
            },
            Phase::Dialback(h, f) => match input {
                Input::Element(r) if r.ns == NS_DIALBACK && r.name == "result" => {
                    if r.get_attr("type") == Some("valid") {
                        tracing::info!(%remote, "authenticated to peer with dialback");
                        self.enable(h, f)
                    } else {
                        fail(DialError::NotFound(format!(
                            "{remote} refused our dialback key"
                        )))
                    }
                }
                Input::Element(_) => {
                    self.phase = Phase::Dialback(h, f);
                    vec![]
                }
                Input::Broken(WireError::Timeout) => {
                    fail(DialError::Timeout(format!("{remote}: dialback")))
                }
                other => fail(unexpected(&format!("dialback with {remote}"), other)),
            },
            Phase::Enabled(h, f) => match input {
                Input::Element(e) if e.is("enabled", NS_SM) => ready(h, f, true),
                Input::Element(e) if e.is("failed", NS_SM) => ready(h, f, false),
                Input::Element(_) => {
                    self.phase = Phase::Enabled(h, f);
                    vec![]
                }
                // A stream that breaks meanwhile is a failed dial — not a
                // link without acknowledgements, on which whatever is
                // written could vanish unnoticed.
                other => fail(unexpected("enabling stream management", other)),
            },
            Phase::Over => fail(DialError::Broken("dial already over".into())),
        }
    }

    fn features(
        &mut self,
        stage: Stage,
        h: StreamHeader,
        f: Element,
        env: &dyn Env,
    ) -> Vec<Action> {
        let s = &self.settings;
        match stage {
            Stage::Plain => {
                if f.get_child("starttls", NS_TLS).is_none() {
                    return fail(DialError::NotFound(format!(
                        "{} does not offer STARTTLS",
                        s.remote
                    )));
                }
                self.phase = Phase::Proceed;
                vec![Action::Send(Element::new("starttls", NS_TLS).to_xml())]
            }
            Stage::Secured if !s.authenticate => ready(h, f, false),
            Stage::Secured => {
                let offers_external = f
                    .get_child("mechanisms", NS_SASL)
                    .is_some_and(|m| m.elements().any(|x| x.text_content().trim() == "EXTERNAL"));
                if s.external && offers_external && env.cert_proves(&s.remote) {
                    self.phase = Phase::Revocation(h, f);
                    return vec![Action::CheckRevoked];
                }
                self.dialback(h, f)
            }
            Stage::Authenticated => self.enable(h, f),
        }
    }

    /// Dialback when both sides do it; otherwise no method in common.
    fn dialback(&mut self, h: StreamHeader, f: Element) -> Vec<Action> {
        let s = &self.settings;
        let offered = f.get_child("dialback", NS_DIALBACK_FEATURE).is_some()
            || h.prefixes.iter().any(|(_, ns)| ns == NS_DIALBACK);
        if !(s.dialback && offered) {
            // Most often, in a federation that is enrolling, one side does
            // not yet trust the other's new certificate (it asks the
            // directory for the trust authorities again): worth another
            // dial, not a refusal.
            return fail(DialError::Broken(format!(
                "authentication: no authentication method in common with {} (yet)",
                s.remote
            )));
        }
        let id = h.get("id").unwrap_or("");
        let key = dialback::key(&s.dialback_secret, &s.remote, &s.local, id);
        let r = Element::new("result", NS_DIALBACK)
            .attr("from", s.local.clone())
            .attr("to", s.remote.clone())
            .text(key);
        self.phase = Phase::Dialback(h, f);
        vec![Action::Send(dialback::wire(&r))]
    }

    /// XEP-0198 on the authenticated stream, when the peer offers it.
    fn enable(&mut self, h: StreamHeader, f: Element) -> Vec<Action> {
        if f.get_child("sm", NS_SM).is_none() {
            return ready(h, f, false);
        }
        self.phase = Phase::Enabled(h, f);
        vec![Action::Send(Element::new("enable", NS_SM).to_xml())]
    }
}

fn ready(header: StreamHeader, features: Element, managed: bool) -> Vec<Action> {
    vec![Action::Ready {
        header: Box::new(header),
        features,
        managed,
    }]
}

fn fail(e: DialError) -> Vec<Action> {
    vec![Action::Fail(e)]
}

/// A write or read that failed while negotiating: the connection broke
/// under us (worth another dial), not a refusal.
pub fn broke(what: &str, e: impl std::fmt::Display) -> DialError {
    DialError::Broken(format!("{what}: {e}"))
}

/// Not the answer expected while negotiating: a read that failed (the
/// connection broke or timed out) or something else the peer sent (its
/// refusal, which another dial would meet again).
fn unexpected(what: &str, got: Input) -> DialError {
    match got {
        Input::Broken(WireError::Timeout) => DialError::Timeout(format!("{what}: no answer")),
        Input::Broken(e) => broke(what, e),
        // The peer could not read what the network did to our bytes, or
        // is going away: the stream broke, nobody refused us.
        Input::Element(e)
            if e.is("error", codec::NS_STREAM)
                && e.elements().any(|c| {
                    matches!(
                        c.name.as_str(),
                        "not-well-formed"
                            | "bad-format"
                            | "connection-timeout"
                            | "reset"
                            | "system-shutdown"
                            | "internal-server-error"
                            | "remote-connection-failed"
                    )
                }) =>
        {
            broke(what, format!("stream error {}", e.to_xml()))
        }
        Input::Element(e) => DialError::NotFound(format!("{what}: got {:?}", Event::Stanza(e))),
        Input::Header(h) => DialError::NotFound(format!("{what}: got {:?}", Event::StreamStart(h))),
        Input::End => DialError::NotFound(format!("{what}: got {:?}", Event::StreamEnd)),
        other => DialError::NotFound(format!("{what}: got {other:?}")),
    }
}

#[cfg(test)]
mod tests;
