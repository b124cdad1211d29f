//! Incoming s2s streams: STARTTLS, SASL EXTERNAL or dialback (answering for our domain, asking the authoritative server), then stanzas checked against the domains the stream authenticated.

use super::*;

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
