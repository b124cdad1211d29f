//! Incoming s2s streams: the tokio driver of the `incoming.rs` core (STARTTLS, SASL EXTERNAL or dialback, stanzas checked against the domains the stream authenticated), and the dialback question to the authoritative server.

use super::incoming::{self, Action, Incoming, Input};
use super::*;

/// Serves one connection from a peer server.
pub async fn serve(tcp: Stream, peer: SocketAddr, s2s: Arc<S2s>, _slot: InSlot) {
    let span = tracing::info_span!("s2s-in", local = %s2s.domain, remote = tracing::field::Empty, peer = %peer);
    serve_inner(tcp, s2s).instrument(span).await
}

/// The node's side of what the stream asks: policy, certificates, resends.
struct NodeEnv<'a> {
    s2s: &'a S2s,
    /// What the peer presented in the TLS handshake.
    certs: Option<Vec<CertificateDer<'static>>>,
}

impl incoming::Env for NodeEnv<'_> {
    fn allows(&self, domain: &str) -> bool {
        self.s2s.cfg.allows(domain)
    }
    fn cert_proves(&self, domain: &str) -> bool {
        self.s2s.peer_verified(self.certs.as_deref(), domain)
    }
    fn first(&self, stanza: &Element) -> bool {
        self.s2s
            .dedup
            .lock()
            .map(|mut d| d.first(stanza))
            .unwrap_or(true)
    }
}

async fn serve_inner(tcp: Stream, s2s: Arc<S2s>) {
    let mut core = Incoming::new(
        incoming::Settings {
            domain: s2s.domain.clone(),
            tls_required: s2s.cfg.tls_required,
            dialback: s2s.cfg.dialback(),
            external: s2s.cfg.external(),
            dialback_secret: s2s.cfg.dialback_secret.clone(),
        },
        s2s.cloud.metrics.clone(),
    );
    let mut env = NodeEnv {
        s2s: &s2s,
        certs: None,
    };
    let mut s = XmlStream::new(tcp, s2s.limits);
    if !drive(&mut s, &mut core, &env).await {
        return;
    }
    let tls = match accept_starttls(s, &s2s.server_tls, s2s.negotiation_timeout).await {
        Upgrade::Tls(t) => *t,
        Upgrade::Pipelined(mut s) => {
            carry_out(&mut s, &mut core, &env, Input::Pipelined).await;
            return;
        }
        Upgrade::Failed => return,
    };
    env.certs = tls.get_ref().1.peer_certificates().map(|c| c.to_vec());
    core.handle(Input::TlsReady, &env);
    let mut s = XmlStream::new(tls, s2s.limits);
    drive(&mut s, &mut core, &env).await;
}

/// Feeds the core what `s` reads until it asks for TLS (true) or the stream is over (false).
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut XmlStream<S>,
    core: &mut Incoming,
    env: &NodeEnv<'_>,
) -> bool {
    loop {
        let timeout = if core.is_established() {
            env.s2s.idle_timeout
        } else {
            env.s2s.negotiation_timeout
        };
        let input = match s.next_event(timeout).await {
            Ok(Event::StreamStart(h)) => Input::Header(h),
            Ok(Event::Stanza(e)) => Input::Element(e),
            Ok(Event::StreamEnd) => Input::End,
            Err(e) => Input::Broken(e.stream_condition()),
        };
        match carry_out(s, core, env, input).await {
            Some(true) => return true,
            Some(false) => {}
            None => return false,
        }
    }
}

/// Hands `input` to the core and does what it says, answering its questions:
/// Some(true) when it asks for TLS, None when the stream is over.
async fn carry_out<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut XmlStream<S>,
    core: &mut Incoming,
    env: &NodeEnv<'_>,
    input: Input,
) -> Option<bool> {
    let s2s = env.s2s;
    let mut inputs = std::collections::VecDeque::from([input]);
    let mut tls = false;
    while let Some(input) = inputs.pop_front() {
        for action in core.handle(input, env) {
            match action {
                Action::Send(xml) => {
                    if s.send(&xml).await.is_err() {
                        inputs.push_back(Input::Broken(None));
                        break;
                    }
                }
                Action::StartTls => tls = true,
                Action::Restart => s.decoder.reset(),
                Action::CheckRevoked(domain) => {
                    let r = s2s.cert_revoked(env.certs.as_deref(), &domain).await;
                    inputs.push_back(Input::Revoked(r));
                }
                Action::AskAuthoritative {
                    domain,
                    receiving,
                    stream_id,
                    key,
                } => {
                    let valid =
                        verify_with_authoritative(s2s, &domain, &receiving, &stream_id, &key).await;
                    inputs.push_back(Input::Authoritative(valid));
                }
                Action::Route(e) => route(s2s, e),
                Action::Close {
                    header,
                    condition,
                    text,
                } => {
                    tracing::info!(condition, text, "closing s2s stream with stream error");
                    s2s.cloud.metrics.stream_error(condition);
                    s.close_with_error(header, condition, &text).await;
                }
                Action::End => {
                    let _ = s.send("</stream:stream>").await;
                }
                Action::Stop => {}
                Action::Unreachable(domains) => {
                    for d in domains {
                        tracing::info!(peer_domain = %d, "inbound s2s stream broke");
                        s2s.cloud
                            .router
                            .do_send(intercloud_actors::link::DomainUnreachable(d));
                    }
                }
            }
        }
    }
    if core.is_over() {
        None
    } else {
        Some(tls)
    }
}

/// Hands an admitted stanza to the router.
fn route(s2s: &S2s, mut e: Element) {
    // Builds for tests only: the fault table may discard or forge it.
    #[cfg(feature = "test-faults")]
    let deliver = crate::net::fault::test_only::tamper(s2s.net.faults(), &s2s.domain, &mut e);
    #[cfg(not(feature = "test-faults"))]
    let deliver = {
        let _ = &mut e;
        true
    };
    if deliver {
        s2s.cloud.router.do_send(Route(e));
    }
}

/// Asks the authoritative server of `originating` whether `key` is its key
/// for our stream `stream_id` (XEP-0220 §2.3).
async fn verify_with_authoritative(
    s2s: &S2s,
    originating: &str,
    receiving: &str,
    stream_id: &str,
    key: &str,
) -> bool {
    let r = tokio::time::timeout(s2s.connect_timeout, async {
        let mut s = open_out(s2s, originating, false).await.ok()?.0;
        let v = Element::new("verify", NS_DIALBACK)
            .attr("from", receiving.to_string())
            .attr("to", originating.to_string())
            .attr("id", stream_id.to_string())
            .text(key.trim());
        s.send(&dialback::wire(&v)).await.ok()?;
        loop {
            match s.next_event(s2s.connect_timeout).await.ok()? {
                Event::Stanza(r) if r.ns == NS_DIALBACK && r.name == "verify" => {
                    let _ = s.send("</stream:stream>").await;
                    return Some(
                        r.get_attr("type") == Some("valid") && r.get_attr("id") == Some(stream_id),
                    );
                }
                Event::Stanza(_) => {}
                _ => return None,
            }
        }
    })
    .await;
    matches!(r, Ok(Some(true)))
}
