//! Outgoing s2s streams: dialing a domain (resolution, TLS, authentication, XEP-0198), and the writer that carries a link's queue with acknowledgements.

use super::connect::{self, Action, Connect, Input};
use super::*;
use intercloud_actors::stanza;

type TlsOut = tokio_rustls::client::TlsStream<Stream>;

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
        connect::broke("TLS", e)
    }
}

/// Connects to `remote`, does STARTTLS; returns the stream, the peer's stream
/// header and features, and whether acknowledgements are on. With
/// `authenticate`, also authenticates us and enables XEP-0198.
pub(super) async fn open_out(
    s2s: &S2s,
    remote: &str,
    authenticate: bool,
) -> Result<(XmlStream<TlsOut>, StreamHeader, Element, bool), DialError> {
    let addrs = match s2s.resolver.resolve(remote).await {
        Ok(a) => a,
        Err(super::super::resolve::Unresolved::DirectoryUnreachable) => {
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
    let (mut core, hello) = Connect::new(connect::Settings {
        local: s2s.domain.clone(),
        remote: remote.to_string(),
        authenticate,
        external: s2s.cfg.external(),
        dialback: s2s.cfg.dialback(),
        dialback_secret: s2s.cfg.dialback_secret.clone(),
    });
    let mut env = NodeEnv { s2s, certs: None };
    let mut s = XmlStream::new(tcp, s2s.limits);
    let Driven::StartTls = drive(&mut s, &mut core, &env, Step::Act(hello)).await? else {
        return Err(DialError::NotFound(format!("{remote}: no STARTTLS")));
    };
    let (tcp, _) = s.into_parts();
    let name =
        ServerName::try_from(remote.to_string()).map_err(|e| DialError::NotFound(e.to_string()))?;
    let tls = s2s
        .client_tls
        .connect(name, tcp)
        .await
        .map_err(tls_failed)?;
    env.certs = tls.get_ref().1.peer_certificates().map(|c| c.to_vec());
    let mut s = XmlStream::new(tls, s2s.limits);
    match drive(&mut s, &mut core, &env, Step::Feed(Input::TlsReady)).await? {
        Driven::Ready(h, f, managed) => Ok((s, h, f, managed)),
        Driven::StartTls => Err(DialError::NotFound(format!("{remote}: STARTTLS twice"))),
    }
}

/// The node's side of what the dial asks: whether the certificate proves the peer.
struct NodeEnv<'a> {
    s2s: &'a S2s,
    certs: Option<Vec<CertificateDer<'static>>>,
}

impl connect::Env for NodeEnv<'_> {
    fn cert_proves(&self, domain: &str) -> bool {
        self.s2s.peer_verified(self.certs.as_deref(), domain)
    }
}

/// Where driving the dial over one transport stopped.
enum Driven {
    StartTls,
    Ready(StreamHeader, Element, bool),
}

/// What to give the core next.
enum Step {
    Act(Action),
    Feed(Input),
}

/// Carries out the core's actions and feeds it what `s` reads, until it
/// asks for TLS or the stream is ready.
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut XmlStream<S>,
    core: &mut Connect,
    env: &NodeEnv<'_>,
    first: Step,
) -> Result<Driven, DialError> {
    let mut pending: std::collections::VecDeque<Action> = match first {
        Step::Act(a) => [a].into(),
        Step::Feed(i) => core.handle(i, env).into(),
    };
    loop {
        while let Some(action) = pending.pop_front() {
            match action {
                Action::Send(xml) => s
                    .send(&xml)
                    .await
                    .map_err(|e| connect::broke("writing", e))?,
                Action::StartTls => return Ok(Driven::StartTls),
                Action::Restart => s.decoder.reset(),
                Action::CheckRevoked => {
                    let remote = core.remote().to_string();
                    let r = env.s2s.cert_revoked(env.certs.as_deref(), &remote).await;
                    pending.extend(core.handle(Input::Revoked(r), env));
                }
                Action::Ready {
                    header,
                    features,
                    managed,
                } => return Ok(Driven::Ready(*header, features, managed)),
                Action::Fail(e) => return Err(e),
            }
        }
        let input = match s.next_event(env.s2s.negotiation_timeout).await {
            Ok(Event::StreamStart(h)) => Input::Header(h),
            Ok(Event::Stanza(e)) => Input::Element(e),
            Ok(Event::StreamEnd) => Input::End,
            Err(e) => Input::Broken(e),
        };
        pending.extend(core.handle(input, env));
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
            let (s, header, features, managed) = match r {
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
            // With a peer that does dialback, services of ours may send on this
            // stream once it authorizes their domains (XEP-0220 §2.5).
            let offers_dialback = features
                .get_child("dialback", super::dialback::NS_DIALBACK_FEATURE)
                .is_some()
                || header.prefixes.iter().any(|(_, ns)| ns == NS_DIALBACK);
            let dialback_id = (s2s.cfg.dialback() && offers_dialback)
                .then(|| header.get("id").unwrap_or("").to_string());
            let (tx, rx) = mpsc::channel(1024);
            let (closed_tx, closed_rx) = oneshot::channel();
            s2s.cloud.metrics.s2s_links_out.inc();
            let inflight: Arc<std::sync::atomic::AtomicUsize> = Default::default();
            tokio::spawn(
                run_out(
                    s,
                    rx,
                    closed_tx,
                    s2s.clone(),
                    managed,
                    inflight.clone(),
                    super::piggyback::Piggyback::new(
                        &s2s.domain,
                        &remote,
                        dialback_id,
                        &s2s.cfg.dialback_secret,
                    ),
                )
                .instrument(span),
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
    mut piggyback: super::piggyback::Piggyback,
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
                // Stanzas of a service of ours wait for dialback to authorize its domain.
                let mut ready = Vec::with_capacity(batch.len());
                for e in batch {
                    let o = piggyback.outgoing(e);
                    if let Some(r) = o.request {
                        out.push_str(&r);
                    }
                    ready.extend(o.write);
                }
                if !emit(&mut wr, &mut out, ready, managed, &mut acks, &inflight, &s2s).await {
                    break;
                }
            }
            r = tokio::io::AsyncReadExt::read(&mut rd, &mut buf) => {
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(k) => {
                        decoder.feed(&buf[..k]);
                        let mut end = false;
                        let mut released = Vec::new();
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
                                Ok(Some(Event::Stanza(e))) if e.ns == NS_DIALBACK => {
                                    match piggyback.answer(&e) {
                                        Some((true, held)) => released.extend(held),
                                        Some((false, held)) => {
                                            tracing::warn!(answer = %e.to_xml(), "peer refused dialback for a service domain");
                                            for st in held.iter().filter(|st| stanza::may_bounce(st)) {
                                                let why = "the peer did not authorize this domain";
                                                s2s.cloud.router.do_send(Route(stanza::error_reply(st, "remote-server-not-found", Some(why))));
                                            }
                                            let w: usize = held.iter().map(Element::weight).sum();
                                            inflight.fetch_sub(w, Ordering::Relaxed);
                                        }
                                        None => {}
                                    }
                                }
                                Ok(Some(Event::Stanza(e))) if e.name == "error" => {
                                    tracing::warn!(error = %e.to_xml(), "peer sent a stream error");
                                }
                                Ok(Some(_)) => {}
                                Ok(None) => break,
                            }
                        }
                        if !released.is_empty()
                            && !emit(&mut wr, &mut out, released, managed, &mut acks, &inflight, &s2s).await
                        {
                            break;
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
    rest.extend(piggyback.take_held());
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

/// Writes what `out` holds (dialback requests) and `batch`, asking for an
/// acknowledgement when the stream is managed; false when the write failed.
async fn emit<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &mut String,
    batch: Vec<Element>,
    managed: bool,
    acks: &mut intercloud_actors::sm::StreamManagement,
    inflight: &std::sync::atomic::AtomicUsize,
    s2s: &S2s,
) -> bool {
    if batch.is_empty() && out.is_empty() {
        return true;
    }
    let mut tally = Tally::default();
    for e in &batch {
        write_server_stanza(e, out);
        tally.add(&e.name);
    }
    if managed && !batch.is_empty() {
        sm::request().write_to(out, NS_SERVER);
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
        return false;
    }
    s2s.cloud.metrics.s2s_out.add(&tally);
    out.clear();
    true
}
