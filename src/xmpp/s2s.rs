//! Server-to-server streams (RFC 6120): the listener for peers and the dialer of outgoing links, with STARTTLS, SASL EXTERNAL (XEP-0178) and Server Dialback (XEP-0220).

use super::codec::{self, Event, Limits, StreamHeader};
use super::dialback::{self, NS_DIALBACK, NS_DIALBACK_FEATURE};
use super::resolve::Resolver;
use super::sasl::NS_SASL;
use super::stream::{accept_starttls, new_id, Upgrade, WireError, XmlStream, NS_TLS};
use crate::net::{Net, Stream};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use intercloud_actors::element::{Element, NS_CLIENT, NS_SERVER};
use intercloud_actors::link::{DialError, DialFuture, Dialer, LinkSink};
use intercloud_actors::messages::Route;
use intercloud_actors::metrics::Tally;
use intercloud_actors::sm::{self, NS_SM};
use intercloud_actors::stanza;
use intercloud_actors::Cloud;
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// Federation settings and shared state of one node.
pub struct S2s {
    pub cloud: Arc<Cloud>,
    pub domain: String,
    pub cfg: crate::config::S2sSection,
    pub server_tls: tokio_rustls::TlsAcceptor,
    pub client_tls: tokio_rustls::TlsConnector,
    /// Our s2s certificate (hot-swapped on enrollment and renewal).
    pub identity: Arc<crate::tls::Identity>,
    /// Who SASL EXTERNAL trusts.
    pub anchors: Arc<crate::tls::Anchors>,
    pub limits: Limits,
    pub resolver: Resolver,
    pub connect_timeout: Duration,
    pub negotiation_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Where links are dialed (TCP, or the in-process network) and under which faults.
    pub net: Net,
    conns: AtomicUsize,
    /// What peers sent lately, to drop what a link resends after a cut.
    dedup: std::sync::Mutex<intercloud_actors::dedup::Dedup>,
}

/// Counts an inbound connection while it lives.
pub struct InSlot(Arc<S2s>);

impl Drop for InSlot {
    fn drop(&mut self) {
        self.0.conns.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum S2sSetupError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Resolver(#[from] super::resolve::ResolverError),
}

fn header(from: &str, to: Option<&str>, id: Option<&str>) -> String {
    codec::stream_header(NS_SERVER, Some(from), to, id, &[("db", NS_DIALBACK)])
}

/// Renames `jabber:server` to the internal `jabber:client` throughout a stanza.
fn to_internal_ns(e: &mut Element) {
    if e.ns == NS_SERVER {
        e.ns = NS_CLIENT.to_string();
    }
    for c in e.elements_mut() {
        to_internal_ns(c);
    }
}

/// Serialises a stanza for a `jabber:server` stream: elements in the internal
/// `jabber:client` namespace inherit the stream's default namespace.
pub fn write_server_stanza(e: &Element, out: &mut String) {
    e.write_to(out, NS_CLIENT);
}

impl S2s {
    pub fn new(
        cloud: Arc<Cloud>,
        config: &crate::config::Config,
        directory: Option<Arc<dyn super::resolve::DirectoryLookup>>,
        net: Net,
    ) -> Result<Arc<S2s>, S2sSetupError> {
        let mut resolver = Resolver::new(
            config.s2s.routes.clone(),
            &config.s2s.dns_servers,
            Duration::from_secs(config.limits.s2s_connect_timeout_secs.clamp(1, 5)),
        )?;
        resolver.directory = directory;
        let (cert, key) = config.s2s_identity_paths();
        let identity = crate::tls::Identity::load(&cert, &key)?;
        let anchors: Vec<_> = config
            .s2s
            .trust_anchors
            .iter()
            .map(|p| config.path(p))
            .collect();
        let anchors = crate::tls::Anchors::load(&anchors)?;
        if let Ok(pem) = std::fs::read_to_string(config.learnt_anchors_path()) {
            anchors.set_learnt(&[pem]);
        }
        let l = &config.limits;
        Ok(Arc::new(S2s {
            domain: cloud.settings.domain.clone(),
            cloud,
            cfg: config.s2s.clone(),
            server_tls: tokio_rustls::TlsAcceptor::from(crate::tls::s2s_server_config(
                identity.clone(),
            )?),
            client_tls: tokio_rustls::TlsConnector::from(crate::tls::s2s_client_config(
                identity.clone(),
            )?),
            identity,
            anchors,
            limits: Limits {
                max_stanza_bytes: l.max_stanza_bytes,
                max_depth: l.max_depth,
            },
            resolver,
            connect_timeout: Duration::from_secs(l.s2s_connect_timeout_secs.max(1)),
            negotiation_timeout: Duration::from_secs(l.negotiation_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(l.s2s_idle_timeout_secs.max(1)),
            max_connections: l.max_s2s_connections,
            net,
            conns: AtomicUsize::new(0),
            dedup: std::sync::Mutex::new(intercloud_actors::dedup::Dedup::new(l.s2s_dedup_ids)),
        }))
    }

    /// Takes an inbound connection slot, or None over the limit.
    pub fn admit(self: &Arc<Self>) -> Option<InSlot> {
        let n = self.conns.fetch_add(1, Ordering::Relaxed);
        if n >= self.max_connections {
            self.conns.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(InSlot(self.clone()))
    }

    /// Whether the directory holds a root's revocation of the certificate `domain` presents.
    async fn cert_revoked(&self, certs: Option<&[CertificateDer<'static>]>, domain: &str) -> bool {
        let (Some(dir), Some(c)) = (&self.resolver.directory, certs.and_then(|c| c.first())) else {
            return false;
        };
        let revoked = dir
            .revoked(domain, &crate::tls::cert_sha256(c.as_ref()))
            .await;
        if revoked {
            tracing::warn!(peer = %domain, "certificate revoked by the trust authority");
        }
        revoked
    }

    fn peer_verified(&self, certs: Option<&[CertificateDer<'static>]>, domain: &str) -> bool {
        match certs {
            Some(c) => match crate::tls::verify_peer(c, &self.anchors.current(), domain) {
                Ok(()) => true,
                Err(e) => {
                    tracing::info!(peer = %domain, error = %e, "peer certificate not accepted");
                    // Its issuer may be a trust authority the directory
                    // knows and we have not learnt yet.
                    self.anchors.want_refresh();
                    false
                }
            },
            None => false,
        }
    }
}

/// Ends a stream with a stream error (our header first when not yet sent).
async fn fail<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut XmlStream<S>,
    s2s: &S2s,
    header_sent: bool,
    condition: &str,
    text: &str,
) {
    tracing::info!(condition, text, "closing s2s stream with stream error");
    s2s.cloud.metrics.stream_error(condition);
    let h = (!header_sent).then(|| header(&s2s.domain, None, Some(&new_id())));
    s.close_with_error(h, condition, text).await;
}

// ---------------------------------------------------------------- inbound

/// Serves one connection from a peer server.
pub async fn serve(tcp: Stream, peer: SocketAddr, s2s: Arc<S2s>, _slot: InSlot) {
    let span = tracing::info_span!("s2s-in", local = %s2s.domain, remote = tracing::field::Empty, peer = %peer);
    serve_inner(tcp, s2s).instrument(span).await
}

/// Reads the peer's header; checks namespace and `to`; answers with ours and `features`.
async fn open_in<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut XmlStream<S>,
    s2s: &S2s,
    features: impl Fn(&StreamHeader) -> Vec<Element>,
) -> Option<(StreamHeader, String)> {
    let h = match s.next_event(s2s.negotiation_timeout).await {
        Ok(Event::StreamStart(h)) => h,
        Ok(_) => {
            fail(s, s2s, false, "not-well-formed", "expected a stream header").await;
            return None;
        }
        Err(e) => {
            if let Some((c, t)) = e.stream_condition() {
                fail(s, s2s, false, c, &t).await;
            }
            return None;
        }
    };
    if h.default_ns != NS_SERVER {
        fail(
            s,
            s2s,
            false,
            "invalid-namespace",
            "this port serves jabber:server",
        )
        .await;
        return None;
    }
    match h.get("to") {
        Some(to) if to.eq_ignore_ascii_case(&s2s.domain) => {}
        _ => {
            fail(
                s,
                s2s,
                false,
                "host-unknown",
                "this server does not serve that domain",
            )
            .await;
            return None;
        }
    }
    if let Some(from) = h.get("from") {
        if !s2s.cfg.allows(from) {
            fail(
                s,
                s2s,
                false,
                "policy-violation",
                "federation with your domain is not allowed",
            )
            .await;
            return None;
        }
        tracing::Span::current().record("remote", from);
    }
    let id = new_id();
    let mut out = header(&s2s.domain, h.get("from"), Some(&id));
    out.push_str(&codec::features(&features(&h)));
    s.send(&out).await.ok()?;
    Some((h, id))
}

async fn serve_inner(tcp: Stream, s2s: Arc<S2s>) {
    let mut s = XmlStream::new(tcp, s2s.limits);
    let tls_required = s2s.cfg.tls_required;
    let dialback_ok = s2s.cfg.dialback();
    let Some((_, id)) = open_in(&mut s, &s2s, |_| {
        let mut f = vec![];
        let mut st = Element::new("starttls", NS_TLS);
        if tls_required {
            st = st.child(Element::new("required", NS_TLS));
        }
        f.push(st);
        if dialback_ok && !tls_required {
            f.push(
                Element::new("dialback", NS_DIALBACK_FEATURE)
                    .child(Element::new("errors", NS_DIALBACK_FEATURE)),
            );
        }
        f
    })
    .await
    else {
        return;
    };
    // Before TLS: STARTTLS, or (when TLS is optional) dialback on the plain stream.
    let ev = match s.next_event(s2s.negotiation_timeout).await {
        Ok(ev) => ev,
        Err(e) => {
            if let Some((c, t)) = e.stream_condition() {
                fail(&mut s, &s2s, true, c, &t).await;
            }
            return;
        }
    };
    match ev {
        Event::Stanza(e) if e.is("starttls", NS_TLS) => {}
        Event::Stanza(e) if !tls_required => {
            // A plain stream: carry on without TLS.
            return authenticated_loop(s, s2s, id, None, Some(e)).await;
        }
        Event::StreamEnd => {
            let _ = s.send("</stream:stream>").await;
            return;
        }
        _ => {
            return fail(
                &mut s,
                &s2s,
                true,
                "policy-violation",
                "STARTTLS is required",
            )
            .await;
        }
    }
    let tls = match accept_starttls(s, &s2s.server_tls, s2s.negotiation_timeout).await {
        Upgrade::Tls(t) => *t,
        Upgrade::Pipelined(mut s) => {
            let why = "data after <starttls/>";
            return fail(&mut s, &s2s, true, "policy-violation", why).await;
        }
        Upgrade::Failed => return,
    };
    let certs: Option<Vec<CertificateDer<'static>>> =
        tls.get_ref().1.peer_certificates().map(|c| c.to_vec());
    let mut s = XmlStream::new(tls, s2s.limits);
    let external_ok = s2s.cfg.external();
    let s2s2 = s2s.clone();
    let certs2 = certs.clone();
    let Some((h, id)) = open_in(&mut s, &s2s, move |h| {
        let mut f = vec![];
        if external_ok {
            if let Some(from) = h.get("from") {
                if s2s2.peer_verified(certs2.as_deref(), from) {
                    f.push(
                        Element::new("mechanisms", NS_SASL)
                            .child(Element::new("mechanism", NS_SASL).text("EXTERNAL")),
                    );
                }
            }
        }
        if dialback_ok {
            f.push(
                Element::new("dialback", NS_DIALBACK_FEATURE)
                    .child(Element::new("errors", NS_DIALBACK_FEATURE)),
            );
            // For the streams dialback authenticates.
            f.push(Element::new("sm", NS_SM));
        }
        f
    })
    .await
    else {
        return;
    };
    // SASL EXTERNAL, if the peer goes for it, comes first.
    let first = match s.next_event(s2s.negotiation_timeout).await {
        Ok(Event::Stanza(e)) => e,
        Ok(Event::StreamEnd) => {
            let _ = s.send("</stream:stream>").await;
            return;
        }
        Ok(_) => return fail(&mut s, &s2s, true, "not-well-formed", "unexpected header").await,
        Err(e) => {
            if let Some((c, t)) = e.stream_condition() {
                fail(&mut s, &s2s, true, c, &t).await;
            }
            return;
        }
    };
    if first.is("auth", NS_SASL) {
        let from = h.get("from").unwrap_or("").to_string();
        let authzid = match B64.decode(first.text_content().trim().trim_matches('=')) {
            Ok(a) => String::from_utf8(a).unwrap_or_default(),
            Err(_) => String::new(),
        };
        let ok = external_ok
            && first.get_attr("mechanism") == Some("EXTERNAL")
            && !from.is_empty()
            && (authzid.is_empty() || authzid.eq_ignore_ascii_case(&from))
            && s2s.peer_verified(certs.as_deref(), &from)
            && !s2s.cert_revoked(certs.as_deref(), &from).await;
        if !ok {
            s2s.cloud.metrics.s2s_auth_failures.inc();
            tracing::warn!(peer_domain = %from, "SASL EXTERNAL refused");
            let f = Element::new("failure", NS_SASL).child(Element::new("not-authorized", NS_SASL));
            let _ = s.send(&f.to_xml()).await;
            return fail(
                &mut s,
                &s2s,
                true,
                "not-authorized",
                "certificate does not prove that domain",
            )
            .await;
        }
        if s.send(&Element::new("success", NS_SASL).to_xml())
            .await
            .is_err()
        {
            return;
        }
        tracing::info!(peer_domain = %from, "peer authenticated with SASL EXTERNAL");
        s.decoder.reset();
        let Some((h2, id2)) = open_in(&mut s, &s2s, |_| vec![Element::new("sm", NS_SM)]).await
        else {
            return;
        };
        if h2
            .get("from")
            .map(|f| !f.eq_ignore_ascii_case(&from))
            .unwrap_or(false)
        {
            return fail(
                &mut s,
                &s2s,
                true,
                "invalid-from",
                "from changed after authentication",
            )
            .await;
        }
        let mut auth = HashSet::new();
        auth.insert(from.to_ascii_lowercase());
        return authenticated_loop(s, s2s, id2, Some(auth), None).await;
    }
    authenticated_loop(s, s2s, id, None, Some(first)).await
}

/// The stream after negotiation: dialback requests, verify requests, and stanzas from authenticated domains.
async fn authenticated_loop<S>(
    mut s: XmlStream<S>,
    s2s: Arc<S2s>,
    stream_id: String,
    authenticated: Option<HashSet<String>>,
    mut pending: Option<Element>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut auth = authenticated.unwrap_or_default();
    let counted = !auth.is_empty();
    // XEP-0198: stanzas handled, once the peer enabled acknowledgements.
    let mut handled: Option<u32> = None;
    if counted {
        s2s.cloud.metrics.s2s_links_in.inc();
    }
    // A stream that ends without its closing tag (peer killed, link cut,
    // silence past the idle timeout) takes its domains' presence with it.
    let mut clean = false;
    loop {
        let e = match pending.take() {
            Some(e) => e,
            None => match s.next_event(s2s.idle_timeout).await {
                Ok(Event::Stanza(e)) => e,
                Ok(Event::StreamEnd) => {
                    let _ = s.send("</stream:stream>").await;
                    clean = true;
                    break;
                }
                Ok(Event::StreamStart(_)) => {
                    fail(
                        &mut s,
                        &s2s,
                        true,
                        "not-well-formed",
                        "second stream header",
                    )
                    .await;
                    break;
                }
                Err(e) => {
                    if let Some((c, t)) = e.stream_condition() {
                        fail(&mut s, &s2s, true, c, &t).await;
                    }
                    break;
                }
            },
        };
        if e.ns == NS_DIALBACK && e.name == "result" && e.get_attr("type").is_none() {
            let from = e.get_attr("from").unwrap_or("").to_ascii_lowercase();
            let to = e.get_attr("to").unwrap_or("");
            if !s2s.cfg.dialback() || !s2s.cfg.allows(&from) || from.is_empty() {
                let r = Element::new("result", NS_DIALBACK)
                    .attr("from", s2s.domain.clone())
                    .attr("to", from.clone())
                    .attr("type", "error")
                    .child(
                        Element::new("error", NS_DIALBACK)
                            .attr("type", "cancel")
                            .child(Element::new("not-allowed", stanza::NS_STANZAS)),
                    );
                let _ = s.send(&dialback::wire(&r)).await;
                continue;
            }
            if !to.eq_ignore_ascii_case(&s2s.domain) {
                let r = Element::new("result", NS_DIALBACK)
                    .attr("from", to.to_string())
                    .attr("to", from.clone())
                    .attr("type", "error")
                    .child(
                        Element::new("error", NS_DIALBACK)
                            .attr("type", "cancel")
                            .child(Element::new("item-not-found", stanza::NS_STANZAS)),
                    );
                let _ = s.send(&dialback::wire(&r)).await;
                continue;
            }
            let key = e.text_content();
            let valid = verify_with_authoritative(&s2s, &from, &stream_id, &key).await;
            let r = Element::new("result", NS_DIALBACK)
                .attr("from", s2s.domain.clone())
                .attr("to", from.clone())
                .attr("type", if valid { "valid" } else { "invalid" });
            if s.send(&dialback::wire(&r)).await.is_err() {
                break;
            }
            if valid {
                tracing::info!(peer_domain = %from, "peer authenticated with dialback");
                if auth.is_empty() {
                    s2s.cloud.metrics.s2s_links_in.inc();
                }
                auth.insert(from);
            } else {
                s2s.cloud.metrics.s2s_auth_failures.inc();
                tracing::warn!(peer_domain = %from, "dialback key did not verify");
                fail(
                    &mut s,
                    &s2s,
                    true,
                    "not-authorized",
                    "dialback key did not verify",
                )
                .await;
                break;
            }
            continue;
        }
        if e.ns == NS_DIALBACK && e.name == "verify" && e.get_attr("type").is_none() {
            // We are the authoritative server: is this key one we made?
            let from = e.get_attr("from").unwrap_or("");
            let to = e.get_attr("to").unwrap_or("");
            let id = e.get_attr("id").unwrap_or("");
            let valid = to.eq_ignore_ascii_case(&s2s.domain)
                && dialback::verify(&s2s.cfg.dialback_secret, from, to, id, &e.text_content());
            let r = Element::new("verify", NS_DIALBACK)
                .attr("from", to.to_string())
                .attr("to", from.to_string())
                .attr("id", id.to_string())
                .attr("type", if valid { "valid" } else { "invalid" });
            if s.send(&dialback::wire(&r)).await.is_err() {
                break;
            }
            continue;
        }
        if e.ns == NS_SM {
            let reply = match e.name.as_str() {
                "enable" if !auth.is_empty() && handled.is_none() => {
                    handled = Some(0);
                    Some(Element::new("enabled", NS_SM))
                }
                "enable" => Some(sm::failed("unexpected-request")),
                "r" => handled.map(sm::answer),
                _ => None,
            };
            if let Some(r) = reply {
                if s.send(&r.to_xml()).await.is_err() {
                    break;
                }
            }
            continue;
        }
        if stanza::kind(&e).is_none() || e.ns != NS_SERVER {
            fail(
                &mut s,
                &s2s,
                true,
                "unsupported-stanza-type",
                "not a stanza",
            )
            .await;
            break;
        }
        // RFC 6120 §13.7.1 / §8.1.2.2: only authenticated domains, only to us.
        let (from, to) = match (stanza::from(&e), stanza::to(&e)) {
            (Ok(Some(f)), Ok(Some(t))) => (f, t),
            _ => {
                fail(
                    &mut s,
                    &s2s,
                    true,
                    "improper-addressing",
                    "stanzas need valid from and to",
                )
                .await;
                break;
            }
        };
        // A domain's own services (service.<domain>) travel on its stream.
        let sender = intercloud_actors::jid::server_of(from.domain());
        if !auth.contains(from.domain()) && !auth.contains(sender) {
            s2s.cloud.metrics.s2s_refused_stanzas.inc();
            tracing::warn!(from = %from, "stanza from a domain this stream did not authenticate");
            fail(
                &mut s,
                &s2s,
                true,
                "invalid-from",
                "that domain is not authenticated on this stream",
            )
            .await;
            break;
        }
        if intercloud_actors::jid::server_of(to.domain()) != s2s.domain {
            s2s.cloud.metrics.s2s_refused_stanzas.inc();
            fail(
                &mut s,
                &s2s,
                true,
                "host-unknown",
                "this server does not serve that domain",
            )
            .await;
            break;
        }
        let mut e = e;
        to_internal_ns(&mut e);
        s2s.cloud.metrics.s2s_in.count(&e.name);
        let first = s2s.dedup.lock().map(|mut d| d.first(&e)).unwrap_or(true);
        if !first {
            // Resent by the peer after a cut: handled already, counted again
            // so the peer's acknowledgements stay right.
            s2s.cloud.metrics.s2s_duplicates.inc();
            tracing::debug!(from = %from, id = ?e.get_attr("id"), "duplicate stanza from a resend dropped");
            if let Some(h) = &mut handled {
                *h = h.wrapping_add(1);
            }
            continue;
        }
        // Builds for tests only: the fault table may discard or forge it.
        #[cfg(feature = "test-faults")]
        let deliver = crate::net::fault::test_only::tamper(s2s.net.faults(), &s2s.domain, &mut e);
        #[cfg(not(feature = "test-faults"))]
        let deliver = true;
        if deliver {
            s2s.cloud.router.do_send(Route(e));
        }
        if let Some(h) = &mut handled {
            *h = h.wrapping_add(1);
        }
    }
    if !auth.is_empty() || counted {
        s2s.cloud.metrics.s2s_links_in.dec();
    }
    if !clean {
        for d in auth {
            tracing::info!(peer_domain = %d, "inbound s2s stream broke");
            s2s.cloud
                .router
                .do_send(intercloud_actors::link::DomainUnreachable(d));
        }
    }
}

/// Asks the authoritative server of `originating` whether `key` is its key
/// for our stream `stream_id` (XEP-0220 §2.3).
async fn verify_with_authoritative(
    s2s: &Arc<S2s>,
    originating: &str,
    stream_id: &str,
    key: &str,
) -> bool {
    let r = tokio::time::timeout(s2s.connect_timeout, async {
        let mut s = open_out(s2s, originating, false).await.ok()?.0;
        let v = Element::new("verify", NS_DIALBACK)
            .attr("from", s2s.domain.clone())
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

// ---------------------------------------------------------------- outbound

type TlsOut = tokio_rustls::client::TlsStream<Stream>;

/// A write that failed while negotiating: the connection broke under us
/// (worth another dial), not a refusal.
fn broke(what: &str, e: impl std::fmt::Display) -> DialError {
    DialError::Broken(format!("{what}: {e}"))
}

/// Not the answer expected while negotiating: a read that failed (the
/// connection broke or timed out) or something else the peer sent (its
/// refusal, which another dial would meet again).
fn unexpected(what: &str, got: Result<Event, WireError>) -> DialError {
    match got {
        Err(WireError::Timeout) => DialError::Timeout(format!("{what}: no answer")),
        Err(e) => broke(what, e),
        // The peer could not read what the network did to our bytes, or
        // is going away: the stream broke, nobody refused us.
        Ok(Event::Stanza(e))
            if e.is("error", super::codec::NS_STREAM)
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
        Ok(other) => DialError::NotFound(format!("{what}: got {other:?}")),
    }
}

/// A TLS handshake that failed: a certificate refused (by either side) is a
/// refusal; anything else is a broken connection.
fn tls_failed(e: std::io::Error) -> DialError {
    use rustls::AlertDescription as A;
    let refused = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .is_some_and(|r| match r {
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => true,
            rustls::Error::AlertReceived(a) => matches!(
                a,
                A::BadCertificate
                    | A::UnsupportedCertificate
                    | A::CertificateRevoked
                    | A::CertificateExpired
                    | A::CertificateUnknown
                    | A::UnknownCA
                    | A::AccessDenied
                    | A::CertificateRequired
                    | A::HandshakeFailure
                    | A::ProtocolVersion
            ),
            _ => false,
        });
    if refused {
        DialError::NotFound(format!("TLS: {e}"))
    } else {
        broke("TLS", e)
    }
}

/// Connects to `remote`, does STARTTLS; returns the stream, the peer's stream
/// header and its features. With `authenticate`, also authenticates us.
async fn open_out(
    s2s: &Arc<S2s>,
    remote: &str,
    authenticate: bool,
) -> Result<(XmlStream<TlsOut>, StreamHeader, Element), DialError> {
    let addrs = match s2s.resolver.resolve(remote).await {
        Ok(a) => a,
        Err(super::resolve::Unresolved::DirectoryUnreachable) => {
            return Err(DialError::Broken(format!(
                "no address for {remote}: the Intercloud directory could not be asked"
            )))
        }
        Err(e) => return Err(DialError::NotFound(format!("{e} for {remote}"))),
    };
    let mut last = String::new();
    let mut tcp = None;
    for a in &addrs {
        match s2s.net.dial(*a, &s2s.domain, remote).await {
            Ok(t) => {
                tcp = Some(t);
                break;
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    let tcp = tcp.ok_or(DialError::NotFound(last))?;
    let local = s2s.domain.clone();
    let nf = |m: String| DialError::NotFound(m);
    let mut s = XmlStream::new(tcp, s2s.limits);
    s.send(&header(&local, Some(remote), None))
        .await
        .map_err(|e| broke("writing", e))?;
    let (_, f) = read_header_features(&mut s, s2s).await?;
    if f.get_child("starttls", NS_TLS).is_none() {
        return Err(nf(format!("{remote} does not offer STARTTLS")));
    }
    s.send(&Element::new("starttls", NS_TLS).to_xml())
        .await
        .map_err(|e| broke("writing", e))?;
    match s.next_event(s2s.negotiation_timeout).await {
        Ok(Event::Stanza(p)) if p.name == "proceed" => {}
        other => return Err(unexpected("STARTTLS", other)),
    }
    let (tcp, _) = s.into_parts();
    let name = ServerName::try_from(remote.to_string()).map_err(|e| nf(e.to_string()))?;
    let tls = s2s
        .client_tls
        .connect(name, tcp)
        .await
        .map_err(tls_failed)?;
    let server_certs: Option<Vec<CertificateDer<'static>>> =
        tls.get_ref().1.peer_certificates().map(|c| c.to_vec());
    let mut s = XmlStream::new(tls, s2s.limits);
    s.send(&header(&local, Some(remote), None))
        .await
        .map_err(|e| broke("writing", e))?;
    let (h, f) = read_header_features(&mut s, s2s).await?;
    if !authenticate {
        return Ok((s, h, f));
    }
    let offers_external = f
        .get_child("mechanisms", NS_SASL)
        .map(|m| m.elements().any(|x| x.text_content().trim() == "EXTERNAL"))
        .unwrap_or(false);
    if s2s.cfg.external()
        && offers_external
        && s2s.peer_verified(server_certs.as_deref(), remote)
        && !s2s.cert_revoked(server_certs.as_deref(), remote).await
    {
        let auth = Element::new("auth", NS_SASL)
            .attr("mechanism", "EXTERNAL")
            .text(B64.encode(local.as_bytes()));
        s.send(&auth.to_xml())
            .await
            .map_err(|e| broke("writing", e))?;
        match s.next_event(s2s.negotiation_timeout).await {
            Ok(Event::Stanza(r)) if r.is("success", NS_SASL) => {}
            other => return Err(unexpected(&format!("SASL EXTERNAL with {remote}"), other)),
        }
        s.decoder.reset();
        s.send(&header(&local, Some(remote), None))
            .await
            .map_err(|e| broke("writing", e))?;
        let (h, f) = read_header_features(&mut s, s2s).await?;
        tracing::info!(%remote, "authenticated to peer with SASL EXTERNAL");
        return Ok((s, h, f));
    }
    let offers_dialback = f.get_child("dialback", NS_DIALBACK_FEATURE).is_some()
        || h.prefixes.iter().any(|(_, ns)| ns == NS_DIALBACK);
    if s2s.cfg.dialback() && offers_dialback {
        let id = h.get("id").unwrap_or("").to_string();
        let key = dialback::key(&s2s.cfg.dialback_secret, remote, &local, &id);
        let r = Element::new("result", NS_DIALBACK)
            .attr("from", local.clone())
            .attr("to", remote.to_string())
            .text(key);
        s.send(&dialback::wire(&r))
            .await
            .map_err(|e| broke("writing", e))?;
        loop {
            match s.next_event(s2s.connect_timeout).await {
                Ok(Event::Stanza(r)) if r.ns == NS_DIALBACK && r.name == "result" => {
                    if r.get_attr("type") == Some("valid") {
                        tracing::info!(%remote, "authenticated to peer with dialback");
                        return Ok((s, h, f));
                    }
                    return Err(nf(format!("{remote} refused our dialback key")));
                }
                Ok(Event::Stanza(_)) => {}
                Err(WireError::Timeout) => {
                    return Err(DialError::Timeout(format!("{remote}: dialback")))
                }
                other => return Err(unexpected(&format!("dialback with {remote}"), other)),
            }
        }
    }
    // Most often, in a federation that is enrolling, one side does not yet
    // trust the other's new certificate (it asks the directory for the
    // trust authorities again): worth another dial, not a refusal.
    Err(broke(
        "authentication",
        format!("no authentication method in common with {remote} (yet)"),
    ))
}

async fn read_header_features<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut XmlStream<S>,
    s2s: &S2s,
) -> Result<(StreamHeader, Element), DialError> {
    let nf = |m: String| DialError::NotFound(m);
    let h = match s.next_event(s2s.negotiation_timeout).await {
        Ok(Event::StreamStart(h)) => h,
        Err(WireError::Timeout) => return Err(DialError::Timeout("no stream header".into())),
        other => return Err(unexpected("expected a stream header", other)),
    };
    if h.default_ns != NS_SERVER {
        return Err(nf("peer does not speak jabber:server".into()));
    }
    match s.next_event(s2s.negotiation_timeout).await {
        Ok(Event::Stanza(f)) if f.name == "features" => Ok((h, f)),
        Err(WireError::Timeout) => Err(DialError::Timeout("no stream features".into())),
        other => Err(unexpected("expected stream features", other)),
    }
}

/// Turns on XEP-0198 acknowledgements on an outgoing stream: true when
/// enabled, false when the peer refused. A stream that breaks meanwhile is a
/// failed dial — not a link without acknowledgements, on which whatever is
/// written could vanish unnoticed.
async fn enable_sm(s: &mut XmlStream<TlsOut>, s2s: &S2s) -> Result<bool, DialError> {
    s.send(&Element::new("enable", NS_SM).to_xml())
        .await
        .map_err(|e| broke("enabling stream management", e))?;
    loop {
        match s.next_event(s2s.negotiation_timeout).await {
            Ok(Event::Stanza(e)) if e.is("enabled", NS_SM) => return Ok(true),
            Ok(Event::Stanza(e)) if e.is("failed", NS_SM) => return Ok(false),
            Ok(Event::Stanza(_)) => {}
            other => return Err(unexpected("enabling stream management", other)),
        }
    }
}

/// Dials authenticated links for the link actors.
pub struct S2sDialer(pub Arc<S2s>);

impl Dialer for S2sDialer {
    fn dial(&self, local: &str, remote: &str) -> DialFuture {
        let s2s = self.0.clone();
        let remote = remote.to_ascii_lowercase();
        let local = local.to_string();
        Box::pin(async move {
            if !s2s.cfg.allows(&remote) {
                return Err(DialError::Forbidden(remote));
            }
            let span = tracing::info_span!("s2s-out", local = %local, remote = %remote);
            let r = tokio::time::timeout(s2s.connect_timeout, open_out(&s2s, &remote, true))
                .instrument(span.clone())
                .await;
            let (mut s, _, features) = match r {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    s2s.cloud.metrics.s2s_dial_failures.inc();
                    return Err(e);
                }
                Err(_) => {
                    s2s.cloud.metrics.s2s_dial_failures.inc();
                    return Err(DialError::Timeout(format!(
                        "{remote} not reached within {:?}",
                        s2s.connect_timeout
                    )));
                }
            };
            let managed = if features.get_child("sm", NS_SM).is_some() {
                match enable_sm(&mut s, &s2s).instrument(span.clone()).await {
                    Ok(m) => m,
                    Err(e) => {
                        s2s.cloud.metrics.s2s_dial_failures.inc();
                        return Err(e);
                    }
                }
            } else {
                false
            };
            let (tx, rx) = mpsc::channel(1024);
            let (closed_tx, closed_rx) = oneshot::channel();
            s2s.cloud.metrics.s2s_links_out.inc();
            let inflight: Arc<std::sync::atomic::AtomicUsize> = Default::default();
            tokio::spawn(
                run_out(s, rx, closed_tx, s2s.clone(), managed, inflight.clone()).instrument(span),
            );
            Ok(LinkSink {
                tx,
                closed: closed_rx,
                inflight,
            })
        })
    }
}

/// Writes the link's stanzas; watches the peer's side for its close and,
/// with XEP-0198, for its acknowledgements.
async fn run_out(
    s: XmlStream<TlsOut>,
    mut rx: mpsc::Receiver<Element>,
    closed: oneshot::Sender<Vec<Element>>,
    s2s: Arc<S2s>,
    managed: bool,
    inflight: Arc<std::sync::atomic::AtomicUsize>,
) {
    let (io, mut decoder) = s.into_parts();
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut out = String::with_capacity(8192);
    let mut buf = vec![0u8; 8192];
    // Sent but not acknowledged (only with stream management).
    // The same XEP-0198 bookkeeping client sessions use (h counts, the
    // queue of what was not acknowledged, its bytes).
    let mut acks = intercloud_actors::sm::StreamManagement::new(false);
    loop {
        tokio::select! {
            m = rx.recv() => {
                let Some(first) = m else {
                    if acks.unacked_len() > 0 {
                        // Wait a moment for the last acknowledgement before closing.
                        let _ = wr.write_all(sm::request().to_xml().as_bytes()).await;
                    }
                    let _ = wr.write_all(b"</stream:stream>").await;
                    let _ = wr.shutdown().await;
                    break;
                };
                let mut batch = vec![first];
                while let Ok(e) = rx.try_recv() {
                    batch.push(e);
                    if batch.len() >= 256 { break; }
                }
                let mut tally = Tally::default();
                for e in &batch {
                    write_server_stanza(e, &mut out);
                    tally.add(&e.name);
                }
                if managed {
                    sm::request().write_to(&mut out, NS_SERVER);
                }
                if managed {
                    for e in batch {
                        // We ask for acks per batch above, not per count.
                        acks.sent(intercloud_actors::sm::Unacked::Stanza(e), u32::MAX);
                    }
                } else {
                    // Written is as far as it is known to go: its bytes are free.
                    let w: usize = batch.iter().map(Element::weight).sum();
                    inflight.fetch_sub(w, Ordering::Relaxed);
                }
                if wr.write_all(out.as_bytes()).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
                s2s.cloud.metrics.s2s_out.add(&tally);
                out.clear();
            }
            r = tokio::io::AsyncReadExt::read(&mut rd, &mut buf) => {
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(k) => {
                        decoder.feed(&buf[..k]);
                        let mut end = false;
                        loop {
                            match decoder.next_event() {
                                Ok(Some(Event::StreamEnd)) | Err(_) => { end = true; break; }
                                Ok(Some(Event::Stanza(e))) if e.is("a", NS_SM) => {
                                    // h counts what the peer handled; the rest stays for a resend.
                                    if let Some(h) = sm::h_of(&e) {
                                        let before = acks.unacked_bytes();
                                        match acks.ack(h) {
                                            Ok(()) => {
                                                inflight.fetch_sub(before - acks.unacked_bytes(), Ordering::Relaxed);
                                            }
                                            Err(err) => tracing::warn!(error = %err, "peer acknowledged more than was sent"),
                                        }
                                    }
                                }
                                Ok(Some(Event::Stanza(e))) if e.is("r", NS_SM) => {}
                                Ok(Some(Event::Stanza(e))) if e.name == "error" => {
                                    tracing::warn!(error = %e.to_xml(), "peer sent a stream error");
                                }
                                Ok(Some(_)) => {}
                                Ok(None) => break,
                            }
                        }
                        if end {
                            let _ = wr.write_all(b"</stream:stream>").await;
                            break;
                        }
                    }
                }
            }
        }
    }
    s2s.cloud.metrics.s2s_links_out.dec();
    // What the peer did not acknowledge, and what is still queued, goes to
    // the next link. (Without stream management nothing is known about
    // what was written; only the queue is handed back.)
    let mut rest: Vec<Element> = acks
        .take_unacked()
        .into_iter()
        .filter_map(|u| match u {
            intercloud_actors::sm::Unacked::Stanza(e) => Some(e),
            _ => None,
        })
        .collect();
    rx.close();
    while let Ok(e) = rx.try_recv() {
        rest.push(e);
    }
    if !rest.is_empty() {
        s2s.cloud.metrics.sm_resends.inc_by(rest.len() as u64);
        tracing::info!(n = rest.len(), "s2s link lost with stanzas to resend");
    }
    let _ = closed.send(rest);
}
