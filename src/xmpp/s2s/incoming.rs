//! An incoming s2s stream as a sans-IO state machine: header checks, STARTTLS, SASL EXTERNAL (XEP-0178), dialback results and verifications (XEP-0220), acknowledgements (XEP-0198) and which stanzas may pass (RFC 6120 §13.7.1); `inbound.rs` drives it over a socket.

use crate::xmpp::codec::{self, StreamHeader};
use crate::xmpp::dialback::{self, NS_DIALBACK, NS_DIALBACK_FEATURE};
use crate::xmpp::sasl::NS_SASL;
use crate::xmpp::stream::{new_id, NS_TLS};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use intercloud_actors::element::{Element, NS_SERVER};
use intercloud_actors::metrics::Metrics;
use intercloud_actors::sm::{self, StreamManagement, NS_SM};
use intercloud_actors::stanza;
use std::collections::HashSet;
use std::sync::Arc;

/// What the stream is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub domain: String,
    pub tls_required: bool,
    pub dialback: bool,
    pub external: bool,
    /// What our dialback keys are made with (XEP-0185).
    pub dialback_secret: String,
}

/// What the stream asks of the node.
pub trait Env {
    /// Whether federation with `domain` is allowed.
    fn allows(&self, domain: &str) -> bool;
    /// Whether the certificate the peer presented proves `domain` (false before TLS).
    fn cert_proves(&self, domain: &str) -> bool;
    /// Whether this stanza was not seen before (not a resend after a cut).
    fn first(&self, stanza: &Element) -> bool;
}

/// What the driver saw, or the answer to what it was asked.
#[derive(Debug)]
pub enum Input {
    Header(StreamHeader),
    Element(Element),
    /// The peer's `</stream:stream>`.
    End,
    /// The read (or a write) failed: with the stream error it calls for, or None when the peer is gone.
    Broken(Option<(&'static str, String)>),
    /// The peer sent more after `<starttls/>`, before the handshake.
    Pipelined,
    /// The TLS handshake after [`Action::StartTls`] succeeded.
    TlsReady,
    /// Answer to [`Action::CheckRevoked`].
    Revoked(bool),
    /// Answer to [`Action::AskAuthoritative`].
    Authoritative(bool),
}

/// What the driver must do, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Send(String),
    /// Send `<proceed/>` and run the server side of the TLS handshake.
    StartTls,
    /// SASL succeeded: the peer restarts the stream on the same transport.
    Restart,
    /// Ask the directory whether the certificate `domain` presented is revoked.
    CheckRevoked(String),
    /// Ask the authoritative server of `domain` whether `key` is its key for our stream `stream_id`.
    AskAuthoritative {
        domain: String,
        /// Us, or the service of ours the peer wants to reach.
        receiving: String,
        stream_id: String,
        key: String,
    },
    /// Hand a stanza from an authenticated domain to the router (in the internal namespace).
    Route(Element),
    /// End the stream with a stream error (after our header when it was not sent yet).
    Close {
        header: Option<String>,
        condition: &'static str,
        text: String,
    },
    /// Answer the peer's close with ours and stop.
    End,
    /// Stop without writing.
    Stop,
    /// These domains' stream broke: their presence goes with it.
    Unreachable(Vec<String>),
}

enum Phase {
    Header(Next),
    /// Before TLS: STARTTLS, or (when TLS is optional) dialback on the plain stream.
    Plain {
        stream_id: String,
    },
    Handshake,
    /// The first element on the TLS stream: SASL EXTERNAL or the dialback stream.
    Secured {
        stream_id: String,
        from: String,
    },
    /// SASL EXTERNAL waits for the directory's word on the certificate.
    Revocation {
        from: String,
    },
    /// Dialback waits for the authoritative server.
    Authoritative {
        from: String,
        receiving: String,
        stream: Stream,
    },
    Stream(Stream),
    Over,
}

enum Next {
    Plain,
    Secured,
    /// The stream restarted after SASL EXTERNAL proved `from`.
    External {
        from: String,
    },
}

/// The stream once negotiated: who it authenticated, XEP-0198 counting.
struct Stream {
    stream_id: String,
    authenticated: HashSet<String>,
    /// Present once the peer enabled acknowledgements.
    sm: Option<StreamManagement>,
    /// Whether this stream counts as an inbound link.
    counted: bool,
}

/// One incoming stream.
pub struct Incoming {
    settings: Settings,
    metrics: Arc<Metrics>,
    phase: Phase,
}

impl Incoming {
    pub fn new(settings: Settings, metrics: Arc<Metrics>) -> Incoming {
        Incoming {
            settings,
            metrics,
            phase: Phase::Header(Next::Plain),
        }
    }

    /// Whether negotiation is over and stanzas flow (the idle timeout applies).
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Stream(_) | Phase::Authoritative { .. })
    }

    /// Whether `domain` is ours: the node's domain or a service it hosts at a
    /// subdomain (stock servers reach `conference.<domain>` as a host of its own).
    fn hosted(&self, domain: &str) -> bool {
        let d = domain.to_ascii_lowercase();
        intercloud_actors::jid::server_of(&d) == self.settings.domain
    }

    pub fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Over)
    }

    /// Takes one event; returns what to do about it.
    pub fn handle(&mut self, input: Input, env: &dyn Env) -> Vec<Action> {
        match std::mem::replace(&mut self.phase, Phase::Over) {
            Phase::Header(next) => self.header(input, next, env),
            Phase::Plain { stream_id } => match input {
                Input::Element(e) if e.is("starttls", NS_TLS) => {
                    self.phase = Phase::Handshake;
                    vec![Action::StartTls]
                }
                // A plain stream: carry on without TLS.
                Input::Element(e) if !self.settings.tls_required => self.stanza(
                    e,
                    Stream::new(stream_id, HashSet::new(), &self.metrics),
                    env,
                ),
                Input::Element(_) => self.close(true, "policy-violation", "STARTTLS is required"),
                other => self.unexpected(other),
            },
            Phase::Handshake => match input {
                Input::TlsReady => {
                    self.phase = Phase::Header(Next::Secured);
                    vec![]
                }
                Input::Pipelined => self.close(true, "policy-violation", "data after <starttls/>"),
                other => self.unexpected(other),
            },
            Phase::Secured { stream_id, from } => match input {
                Input::Element(e) if e.is("auth", NS_SASL) => self.external(e, from, env),
                Input::Element(e) => self.stanza(
                    e,
                    Stream::new(stream_id, HashSet::new(), &self.metrics),
                    env,
                ),
                Input::Header(_) => self.close(true, "not-well-formed", "unexpected header"),
                other => self.unexpected(other),
            },
            Phase::Revocation { from } => match input {
                Input::Revoked(false) => {
                    tracing::info!(peer_domain = %from, "peer authenticated with SASL EXTERNAL");
                    self.phase = Phase::Header(Next::External { from });
                    vec![
                        Action::Send(Element::new("success", NS_SASL).to_xml()),
                        Action::Restart,
                    ]
                }
                Input::Revoked(true) => self.external_refused(&from),
                other => self.unexpected(other),
            },
            Phase::Authoritative {
                from,
                receiving,
                stream,
            } => match input {
                Input::Authoritative(valid) => {
                    self.dialback_answer(from, &receiving, valid, stream)
                }
                other => self.end_stream(other, stream),
            },
            Phase::Stream(stream) => match input {
                Input::Element(e) => self.stanza(e, stream, env),
                other => self.end_stream(other, stream),
            },
            Phase::Over => vec![Action::Stop],
        }
    }

    fn close(&mut self, header_sent: bool, condition: &'static str, text: &str) -> Vec<Action> {
        self.phase = Phase::Over;
        let header =
            (!header_sent).then(|| super::header(&self.settings.domain, None, Some(&new_id())));
        vec![Action::Close {
            header,
            condition,
            text: text.to_string(),
        }]
    }

    /// During negotiation: the peer's close, a broken read, a second header.
    fn unexpected(&mut self, input: Input) -> Vec<Action> {
        match input {
            Input::End => {
                self.phase = Phase::Over;
                vec![Action::End]
            }
            Input::Broken(Some((condition, text))) => self.close(true, condition, &text),
            Input::Broken(None) => {
                self.phase = Phase::Over;
                vec![Action::Stop]
            }
            Input::Header(_) => self.close(true, "not-well-formed", "second stream header"),
            _ => self.close(true, "internal-server-error", "out of order"),
        }
    }

    /// Checks the peer's header; answers with ours and the features of `next`.
    fn header(&mut self, input: Input, next: Next, env: &dyn Env) -> Vec<Action> {
        let h = match input {
            Input::Header(h) => h,
            Input::Broken(Some((condition, text))) => return self.close(false, condition, &text),
            Input::Broken(None) => return vec![Action::Stop],
            _ => return self.close(false, "not-well-formed", "expected a stream header"),
        };
        if h.default_ns != NS_SERVER {
            return self.close(false, "invalid-namespace", "this port serves jabber:server");
        }
        if !matches!(h.get("to"), Some(to) if self.hosted(to)) {
            return self.close(
                false,
                "host-unknown",
                "this server does not serve that domain",
            );
        }
        let from = h.get("from").map(str::to_ascii_lowercase);
        if let Some(f) = &from {
            if !env.allows(f) {
                return self.close(
                    false,
                    "policy-violation",
                    "federation with your domain is not allowed",
                );
            }
            tracing::Span::current().record("remote", f.as_str());
        }
        let s = &self.settings;
        let dialback = || {
            Element::new("dialback", NS_DIALBACK_FEATURE)
                .child(Element::new("errors", NS_DIALBACK_FEATURE))
        };
        let features = match &next {
            Next::Plain => {
                let mut st = Element::new("starttls", NS_TLS);
                if s.tls_required {
                    st = st.child(Element::new("required", NS_TLS));
                }
                let mut f = vec![st];
                if s.dialback && !s.tls_required {
                    f.push(dialback());
                }
                f
            }
            Next::Secured => {
                let mut f = vec![];
                if s.external && from.as_deref().is_some_and(|d| env.cert_proves(d)) {
                    f.push(
                        Element::new("mechanisms", NS_SASL)
                            .child(Element::new("mechanism", NS_SASL).text("EXTERNAL")),
                    );
                }
                if s.dialback {
                    f.push(dialback());
                    // For the streams dialback authenticates.
                    f.push(Element::new("sm", NS_SM));
                }
                f
            }
            Next::External { .. } => vec![Element::new("sm", NS_SM)],
        };
        let stream_id = new_id();
        let mut out = super::header(&s.domain, h.get("from"), Some(&stream_id));
        out.push_str(&codec::features(&features));
        let mut actions = vec![Action::Send(out)];
        match next {
            Next::Plain => self.phase = Phase::Plain { stream_id },
            Next::Secured => {
                self.phase = Phase::Secured {
                    stream_id,
                    from: from.unwrap_or_default(),
                }
            }
            Next::External { from: proven } => {
                if from.as_deref().is_some_and(|f| f != proven) {
                    actions.extend(self.close(
                        true,
                        "invalid-from",
                        "from changed after authentication",
                    ));
                } else {
                    let auth = HashSet::from([proven]);
                    self.phase = Phase::Stream(Stream::new(stream_id, auth, &self.metrics));
                }
            }
        }
        actions
    }

    /// SASL EXTERNAL (XEP-0178): the certificate must prove the header's `from`.
    fn external(&mut self, e: Element, from: String, env: &dyn Env) -> Vec<Action> {
        let authzid = match B64.decode(e.text_content().trim().trim_matches('=')) {
            Ok(a) => String::from_utf8(a).unwrap_or_default(),
            Err(_) => String::new(),
        };
        let ok = self.settings.external
            && e.get_attr("mechanism") == Some("EXTERNAL")
            && !from.is_empty()
            && (authzid.is_empty() || authzid.eq_ignore_ascii_case(&from))
            && env.cert_proves(&from);
        if !ok {
            return self.external_refused(&from);
        }
        self.phase = Phase::Revocation { from: from.clone() };
        vec![Action::CheckRevoked(from)]
    }

    fn external_refused(&mut self, from: &str) -> Vec<Action> {
        self.metrics.s2s_auth_failures.inc();
        tracing::warn!(peer_domain = %from, "SASL EXTERNAL refused");
        let f = Element::new("failure", NS_SASL).child(Element::new("not-authorized", NS_SASL));
        let mut actions = vec![Action::Send(f.to_xml())];
        actions.extend(self.close(
            true,
            "not-authorized",
            "certificate does not prove that domain",
        ));
        actions
    }

    /// The stream ends: cleanly on the peer's close, otherwise its domains
    /// are unreachable (peer killed, link cut, silence past the idle timeout).
    fn end_stream(&mut self, input: Input, stream: Stream) -> Vec<Action> {
        let clean = matches!(input, Input::End);
        let mut actions = self.unexpected(input);
        if stream.counted {
            self.metrics.s2s_links_in.dec();
        }
        if !clean && !stream.authenticated.is_empty() {
            let mut d: Vec<String> = stream.authenticated.into_iter().collect();
            d.sort();
            actions.push(Action::Unreachable(d));
        }
        actions
    }

    /// Ends the stream with an error from the established phase.
    fn fail_stream(&mut self, stream: Stream, condition: &'static str, text: &str) -> Vec<Action> {
        self.end_stream(Input::Broken(Some((condition, text.to_string()))), stream)
    }

    /// One element on the negotiated stream.
    fn stanza(&mut self, e: Element, mut stream: Stream, env: &dyn Env) -> Vec<Action> {
        let domain = self.settings.domain.clone();
        if e.ns == NS_DIALBACK && e.name == "result" && e.get_attr("type").is_none() {
            let from = e.get_attr("from").unwrap_or("").to_ascii_lowercase();
            let to = e.get_attr("to").unwrap_or("");
            let refusal = if !self.settings.dialback || !env.allows(&from) || from.is_empty() {
                Some((domain.as_str(), "not-allowed"))
            } else if !self.hosted(to) {
                Some((to, "item-not-found"))
            } else {
                None
            };
            if let Some((ours, condition)) = refusal {
                let r = Element::new("result", NS_DIALBACK)
                    .attr("from", ours.to_string())
                    .attr("to", from)
                    .attr("type", "error")
                    .child(
                        Element::new("error", NS_DIALBACK)
                            .attr("type", "cancel")
                            .child(Element::new(condition, stanza::NS_STANZAS)),
                    );
                self.phase = Phase::Stream(stream);
                return vec![Action::Send(dialback::wire(&r))];
            }
            let receiving = to.to_ascii_lowercase();
            let ask = Action::AskAuthoritative {
                domain: from.clone(),
                receiving: receiving.clone(),
                stream_id: stream.stream_id.clone(),
                key: e.text_content().trim().to_string(),
            };
            self.phase = Phase::Authoritative {
                from,
                receiving,
                stream,
            };
            return vec![ask];
        }
        if e.ns == NS_DIALBACK && e.name == "verify" && e.get_attr("type").is_none() {
            // We are the authoritative server: is this key one we made?
            let from = e.get_attr("from").unwrap_or("");
            let to = e.get_attr("to").unwrap_or("");
            let id = e.get_attr("id").unwrap_or("");
            let valid = self.hosted(to)
                && dialback::verify(
                    &self.settings.dialback_secret,
                    from,
                    to,
                    id,
                    &e.text_content(),
                );
            let r = Element::new("verify", NS_DIALBACK)
                .attr("from", to.to_string())
                .attr("to", from.to_string())
                .attr("id", id.to_string())
                .attr("type", if valid { "valid" } else { "invalid" });
            self.phase = Phase::Stream(stream);
            return vec![Action::Send(dialback::wire(&r))];
        }
        if e.ns == NS_SM {
            let reply = match e.name.as_str() {
                "enable" if !stream.authenticated.is_empty() && stream.sm.is_none() => {
                    stream.sm = Some(StreamManagement::new(false));
                    Some(Element::new("enabled", NS_SM))
                }
                "enable" => Some(sm::failed("unexpected-request")),
                "r" => stream.sm.as_ref().map(|m| sm::answer(m.h_in)),
                _ => None,
            };
            self.phase = Phase::Stream(stream);
            return reply
                .map(|r| vec![Action::Send(r.to_xml())])
                .unwrap_or_default();
        }
        if stanza::kind(&e).is_none() || e.ns != NS_SERVER {
            return self.fail_stream(stream, "unsupported-stanza-type", "not a stanza");
        }
        // RFC 6120 §13.7.1 / §8.1.2.2: only authenticated domains, only to us.
        let (from, to) = match (stanza::from(&e), stanza::to(&e)) {
            (Ok(Some(f)), Ok(Some(t))) => (f, t),
            _ => {
                return self.fail_stream(
                    stream,
                    "improper-addressing",
                    "stanzas need valid from and to",
                )
            }
        };
        // A domain's own services (service.<domain>) travel on its stream.
        let sender = intercloud_actors::jid::server_of(from.domain());
        if !stream.authenticated.contains(from.domain()) && !stream.authenticated.contains(sender) {
            self.metrics.s2s_refused_stanzas.inc();
            tracing::warn!(from = %from, "stanza from a domain this stream did not authenticate");
            return self.fail_stream(
                stream,
                "invalid-from",
                "that domain is not authenticated on this stream",
            );
        }
        if intercloud_actors::jid::server_of(to.domain()) != domain {
            self.metrics.s2s_refused_stanzas.inc();
            return self.fail_stream(
                stream,
                "host-unknown",
                "this server does not serve that domain",
            );
        }
        let mut e = e;
        super::to_internal_ns(&mut e);
        self.metrics.s2s_in.count(&e.name);
        // Counted either way, so the peer's acknowledgements stay right.
        if let Some(m) = &mut stream.sm {
            m.received();
        }
        self.phase = Phase::Stream(stream);
        if !env.first(&e) {
            // Resent by the peer after a cut: handled already.
            self.metrics.s2s_duplicates.inc();
            tracing::debug!(from = %from, id = ?e.get_attr("id"), "duplicate stanza from a resend dropped");
            return vec![];
        }
        vec![Action::Route(e)]
    }

    /// The authoritative server answered about a dialback key.
    fn dialback_answer(
        &mut self,
        from: String,
        receiving: &str,
        valid: bool,
        mut stream: Stream,
    ) -> Vec<Action> {
        let r = Element::new("result", NS_DIALBACK)
            .attr("from", receiving)
            .attr("to", from.clone())
            .attr("type", if valid { "valid" } else { "invalid" });
        let mut actions = vec![Action::Send(dialback::wire(&r))];
        if valid {
            tracing::info!(peer_domain = %from, "peer authenticated with dialback");
            if !stream.counted {
                stream.counted = true;
                self.metrics.s2s_links_in.inc();
            }
            stream.authenticated.insert(from);
            self.phase = Phase::Stream(stream);
        } else {
            self.metrics.s2s_auth_failures.inc();
            tracing::warn!(peer_domain = %from, "dialback key did not verify");
            actions.extend(self.fail_stream(
                stream,
                "not-authorized",
                "dialback key did not verify",
            ));
        }
        actions
    }
}

impl Stream {
    fn new(stream_id: String, authenticated: HashSet<String>, metrics: &Metrics) -> Stream {
        let counted = !authenticated.is_empty();
        if counted {
            metrics.s2s_links_in.inc();
        }
        Stream {
            stream_id,
            authenticated,
            sm: None,
            counted,
        }
    }
}

#[cfg(test)]
mod tests;
