//! Outgoing s2s streams: dialing a domain (resolution, TLS, authentication, XEP-0198), and the writer that carries a link's queue with acknowledgements.

use super::*;

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
pub(super) async fn open_out(
    s2s: &Arc<S2s>,
    remote: &str,
    authenticate: bool,
) -> Result<(XmlStream<TlsOut>, StreamHeader, Element), DialError> {
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
