//! Client-to-server streams (RFC 6120): STARTTLS, SASL, then a session actor fed with the client's stanzas.

use super::codec::{self, Event, Limits};
use super::sasl::{self, Authenticator, Step, NS_SASL};
use super::stream::{accept_starttls, new_id, Upgrade, XmlStream, NS_TLS};
use crate::net::Stream;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use intercloud_actors::element::{Element, NS_CLIENT};
use intercloud_actors::jid::Jid;
use intercloud_actors::metrics::{Metrics, Tally};
use intercloud_actors::outbox::{Outbox, OutboxReader};
use intercloud_actors::session::{Closed, Inbound, Outbound, Resume, Session};
use intercloud_actors::sm::{self, NS_SM};
use intercloud_actors::stanza::{NS_BIND, NS_SESSION};
use intercloud_actors::Cloud;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tracing::Instrument;

/// What every client connection of a node shares.
pub struct C2s {
    pub cloud: Arc<Cloud>,
    pub tls: tokio_rustls::TlsAcceptor,
    pub auth: Authenticator,
    pub limits: Limits,
    pub allow_anonymous: bool,
    pub negotiation_timeout: Duration,
    pub idle_timeout: Duration,
    pub keepalive: Duration,
    pub max_auth_attempts: u32,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// XEP-0077 in-band registration, when allowed.
    pub registration: Option<super::register::Registration>,
    /// Failed logins per address and per account, across connections.
    pub throttle: Arc<super::auth_throttle::AuthThrottle>,
    conns: Mutex<(usize, std::collections::HashMap<IpAddr, usize>)>,
}

/// Counts a connection while it lives.
pub struct ConnSlot {
    c2s: Arc<C2s>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut g = self.c2s.conns.lock().unwrap_or_else(|p| p.into_inner());
        g.0 -= 1;
        if let Some(n) = g.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&self.ip);
            }
        }
    }
}

impl C2s {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cloud: Arc<Cloud>,
        tls: Arc<rustls::ServerConfig>,
        limits: &crate::config::Limits,
        cfg: &crate::config::C2sSection,
    ) -> Arc<C2s> {
        let allow_anonymous = cfg.allow_anonymous;
        let registration = cfg.allow_registration.then(|| {
            super::register::Registration::new(
                cloud.store.clone(),
                cloud.settings.domain.clone(),
                limits.scram_iterations,
                cfg.registrations_per_minute,
            )
        });
        let throttle = Arc::new(super::auth_throttle::AuthThrottle::new(
            super::auth_throttle::ThrottleSettings {
                per_address: limits.auth_failures_per_address.max(1),
                per_account: limits.auth_failures_per_account.max(1),
                window: Duration::from_secs(limits.auth_window_secs),
                max_entries: limits.auth_throttle_entries.max(1),
            },
        ));
        Arc::new(C2s {
            auth: Authenticator {
                store: cloud.store.clone(),
                domain: cloud.settings.domain.clone(),
                iterations: limits.scram_iterations,
                throttle: Some(throttle.clone()),
            },
            throttle,
            cloud,
            tls: tokio_rustls::TlsAcceptor::from(tls),
            limits: Limits {
                max_stanza_bytes: limits.max_stanza_bytes,
                max_depth: limits.max_depth,
            },
            allow_anonymous,
            negotiation_timeout: Duration::from_secs(limits.negotiation_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(limits.idle_timeout_secs.max(1)),
            keepalive: Duration::from_secs(limits.keepalive_secs.max(1)),
            max_auth_attempts: limits.max_auth_attempts.max(1),
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            registration,
            conns: Mutex::new((0, Default::default())),
        })
    }

    /// Takes a connection slot for `ip`, or None when a limit is reached.
    /// Sessions waiting to be resumed hold slots too: when they fill the
    /// node, the one detached longest ends to make room for the newcomer.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        let mut g = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let per_ip = g.1.get(&ip).copied().unwrap_or(0);
        if g.0 >= self.max_connections || per_ip >= self.max_connections_per_ip {
            return None;
        }
        let detached = self
            .cloud
            .detached
            .load(std::sync::atomic::Ordering::Relaxed);
        if g.0 + detached >= self.max_connections {
            self.cloud
                .router
                .do_send(intercloud_actors::router::EndOldestDetached);
        }
        g.0 += 1;
        *g.1.entry(ip).or_insert(0) += 1;
        Some(ConnSlot {
            c2s: self.clone(),
            ip,
        })
    }

    fn domain(&self) -> &str {
        &self.cloud.settings.domain
    }
}

/// Ends a stream: our header first if it was not sent, then the error.
async fn fail<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut XmlStream<S>,
    c2s: &C2s,
    header_sent: bool,
    condition: &str,
    text: &str,
) {
    tracing::info!(condition, text, "closing client stream with stream error");
    c2s.cloud.metrics.stream_error(condition);
    let header = (!header_sent)
        .then(|| codec::stream_header(NS_CLIENT, Some(c2s.domain()), None, Some(&new_id()), &[]));
    s.close_with_error(header, condition, text).await;
}

/// Reads the peer's stream header and answers with ours plus `features`.
/// On failure the stream was already closed with the right error.
async fn open_stream<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut XmlStream<S>,
    c2s: &C2s,
    features: &[Element],
) -> Option<()> {
    let ev = match s.next_event(c2s.negotiation_timeout).await {
        Ok(ev) => ev,
        Err(e) => {
            if let Some((c, t)) = e.stream_condition() {
                fail(s, c2s, false, c, &t).await;
            }
            return None;
        }
    };
    let Event::StreamStart(h) = ev else {
        fail(s, c2s, false, "not-well-formed", "expected a stream header").await;
        return None;
    };
    if h.default_ns != NS_CLIENT {
        fail(
            s,
            c2s,
            false,
            "invalid-namespace",
            "this port serves jabber:client",
        )
        .await;
        return None;
    }
    if let Some(to) = h.get("to") {
        if !to.eq_ignore_ascii_case(c2s.domain()) {
            fail(
                s,
                c2s,
                false,
                "host-unknown",
                "this server does not serve that domain",
            )
            .await;
            return None;
        }
    }
    match h.get("version") {
        Some(v) if v.split('.').next() == Some("1") => {}
        _ => {
            fail(
                s,
                c2s,
                false,
                "unsupported-version",
                "version 1.0 is required",
            )
            .await;
            return None;
        }
    }
    let mut out = codec::stream_header(
        NS_CLIENT,
        Some(c2s.domain()),
        h.get("from"),
        Some(&new_id()),
        &[],
    );
    out.push_str(&codec::features(features));
    s.send(&out).await.ok()
}

/// Serves one client connection from accept to close.
pub async fn serve(tcp: Stream, peer: SocketAddr, c2s: Arc<C2s>, slot: ConnSlot) {
    let span = tracing::info_span!("c2s", domain = %c2s.domain(), peer = %peer);
    let Some((s, jid, anonymous)) = negotiate(tcp, peer.ip(), &c2s)
        .instrument(span.clone())
        .await
    else {
        return;
    };
    // The session runs as a task of its own: the negotiation's future (TLS
    // handshake, SASL) is freed, and an idle session keeps only what it uses.
    actix_rt::spawn(
        async move {
            let _slot = slot;
            run_session(s, c2s, jid, anonymous).await
        }
        .instrument(span),
    );
}

/// `fail`, for functions that answer None.
async fn fail_none<S: AsyncRead + AsyncWrite + Unpin, T>(
    s: &mut XmlStream<S>,
    c2s: &C2s,
    header_sent: bool,
    condition: &str,
    text: &str,
) -> Option<T> {
    fail(s, c2s, header_sent, condition, text).await;
    None
}

/// Stream negotiation up to binding: the TLS stream and the authenticated account.
async fn negotiate(
    tcp: Stream,
    ip: IpAddr,
    c2s: &Arc<C2s>,
) -> Option<(
    XmlStream<tokio_rustls::server::TlsStream<Stream>>,
    Jid,
    bool,
)> {
    let c2s = c2s.clone();
    let mut s = XmlStream::new(tcp, c2s.limits);
    let starttls = Element::new("starttls", NS_TLS).child(Element::new("required", NS_TLS));
    open_stream(&mut s, &c2s, &[starttls]).await?;
    // Plain phase: only STARTTLS moves on.
    loop {
        match s.next_event(c2s.negotiation_timeout).await {
            Ok(Event::Stanza(e)) if e.is("starttls", NS_TLS) => break,
            Ok(Event::Stanza(e)) if e.ns == NS_SASL && e.name == "auth" => {
                tracing::info!("refused SASL before TLS");
                let f = Element::new("failure", NS_SASL)
                    .child(Element::new("encryption-required", NS_SASL));
                if s.send(&f.to_xml()).await.is_err() {
                    return None;
                }
            }
            Ok(Event::Stanza(_)) => {
                return fail_none(
                    &mut s,
                    &c2s,
                    true,
                    "policy-violation",
                    "STARTTLS is required",
                )
                .await
            }
            Ok(Event::StreamEnd) => {
                let _ = s.send("</stream:stream>").await;
                return None;
            }
            Ok(Event::StreamStart(_)) => {
                return fail_none(
                    &mut s,
                    &c2s,
                    true,
                    "not-well-formed",
                    "second stream header",
                )
                .await
            }
            Err(e) => {
                if let Some((c, t)) = e.stream_condition() {
                    fail(&mut s, &c2s, true, c, &t).await;
                }
                return None;
            }
        }
    }
    let tls = match accept_starttls(s, &c2s.tls, c2s.negotiation_timeout).await {
        Upgrade::Tls(t) => *t,
        Upgrade::Pipelined(mut s) => {
            return fail_none(
                &mut s,
                &c2s,
                true,
                "policy-violation",
                "data after <starttls/>",
            )
            .await
        }
        Upgrade::Failed => return None,
    };
    let mut s = XmlStream::new(tls, c2s.limits);
    let mut mechs = Element::new("mechanisms", NS_SASL);
    for m in sasl::offered(true, c2s.allow_anonymous) {
        mechs = mechs.child(Element::new("mechanism", NS_SASL).text(m));
    }
    let mut features = vec![mechs];
    if c2s.registration.is_some() {
        features.push(super::register::feature());
    }
    open_stream(&mut s, &c2s, &features).await?;
    let (jid, anonymous) = authenticate(&mut s, ip, &c2s).await?;
    tracing::info!(jid = %jid, "authenticated");
    s.decoder.reset();
    let bind = Element::new("bind", NS_BIND);
    let session = Element::new("session", NS_SESSION).child(Element::new("optional", NS_SESSION));
    let sm = Element::new("sm", NS_SM);
    open_stream(&mut s, &c2s, &[bind, session, sm]).await?;
    Some((s, jid, anonymous))
}

/// The SASL exchange; Some((account, anonymous)) on success.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut XmlStream<S>,
    ip: IpAddr,
    c2s: &C2s,
) -> Option<(Jid, bool)> {
    let offered = sasl::offered(true, c2s.allow_anonymous);
    let mut failures = 0u32;
    let mut mech: Option<sasl::Mechanism> = None;
    loop {
        let ev = match s.next_event(c2s.negotiation_timeout).await {
            Ok(ev) => ev,
            Err(e) => {
                if let Some((c, t)) = e.stream_condition() {
                    fail(s, c2s, true, c, &t).await;
                }
                return None;
            }
        };
        let e = match ev {
            Event::Stanza(e) => e,
            Event::StreamEnd => {
                let _ = s.send("</stream:stream>").await;
                return None;
            }
            Event::StreamStart(_) => {
                fail(s, c2s, true, "not-well-formed", "second stream header").await;
                return None;
            }
        };
        if let (Some(reg), true) = (&c2s.registration, super::register::is_request(&e)) {
            let reply = reg.answer(&e);
            s.send(&reply.to_xml_in(NS_CLIENT)).await.ok()?;
            continue;
        }
        if e.ns != NS_SASL {
            fail(s, c2s, true, "not-authorized", "authenticate first").await;
            return None;
        }
        let refused = (e.name == "auth")
            .then(|| {
                c2s.throttle
                    .check(Some(ip), None, std::time::Instant::now())
            })
            .flatten();
        let step = match e.name.as_str() {
            // Too many failed logins from this address: refused for now.
            "auth" if refused.is_some() => Step::Failure("temporary-auth-failure"),
            "auth" => {
                let name = e.get_attr("mechanism").unwrap_or("");
                match offered
                    .contains(&name)
                    .then(|| c2s.auth.start(name))
                    .flatten()
                {
                    None => Step::Failure("invalid-mechanism"),
                    Some(mut m) => {
                        let text = e.text_content();
                        let step = match decode_b64(&text) {
                            Err(()) => Step::Failure("incorrect-encoding"),
                            Ok(None)
                                if matches!(
                                    m,
                                    sasl::Mechanism::Scram(_) | sasl::Mechanism::Plain
                                ) =>
                            {
                                Step::Challenge(Vec::new())
                            }
                            Ok(data) => c2s.auth.step(&mut m, &data.unwrap_or_default()),
                        };
                        mech = Some(m);
                        step
                    }
                }
            }
            "response" => match (&mut mech, decode_b64(&e.text_content())) {
                (Some(m), Ok(data)) => c2s.auth.step(m, &data.unwrap_or_default()),
                (Some(_), Err(())) => Step::Failure("incorrect-encoding"),
                (None, _) => Step::Failure("malformed-request"),
            },
            "abort" => Step::Failure("aborted"),
            _ => Step::Failure("malformed-request"),
        };
        match step {
            Step::Challenge(c) => {
                let el = Element::new("challenge", NS_SASL).text(B64.encode(c));
                s.send(&el.to_xml()).await.ok()?;
            }
            Step::Success {
                jid,
                additional,
                anonymous,
            } => {
                let mut el = Element::new("success", NS_SASL);
                if let Some(a) = additional {
                    el = el.text(B64.encode(a));
                }
                s.send(&el.to_xml()).await.ok()?;
                return Some((jid, anonymous));
            }
            Step::Failure(cond) => {
                mech = None;
                failures += 1;
                if cond == "not-authorized" {
                    c2s.throttle
                        .failed(Some(ip), None, std::time::Instant::now());
                }
                tracing::info!(condition = cond, failures, "SASL failure");
                let el = Element::new("failure", NS_SASL).child(Element::new(cond, NS_SASL));
                s.send(&el.to_xml()).await.ok()?;
                if failures >= c2s.max_auth_attempts {
                    fail(
                        s,
                        c2s,
                        true,
                        "policy-violation",
                        "too many failed authentication attempts",
                    )
                    .await;
                    return None;
                }
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

/// After binding is offered: a session actor, a writer task, and this task reading.
async fn run_session<S>(s: XmlStream<S>, c2s: Arc<C2s>, jid: Jid, anonymous: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use actix::Actor;
    let (io, mut decoder) = s.into_parts();
    let (mut rd, wr) = tokio::io::split(io);
    let (tx, rx) = intercloud_actors::outbox::outbox(
        c2s.cloud.settings.session_queue,
        c2s.cloud.settings.session_queue_bytes,
    );
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let writer = tokio::spawn(
        write_loop(wr, rx, c2s.keepalive, stop_tx, c2s.cloud.metrics.clone()).in_current_span(),
    );
    let conn = NEXT_CONN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The session is created by the first stanza, or found again by <resume/>.
    let mut session: Option<actix::Addr<Session>> = None;
    // Whether the client may resume after this connection ends.
    let mut resumable = true;
    // Small: an idle session should cost little; reads under load just come more often.
    let mut buf = vec![0u8; 4 * 1024];
    'read: loop {
        loop {
            match decoder.next_event() {
                Ok(Some(Event::Stanza(e))) => {
                    c2s.cloud.metrics.c2s_in.count(&e.name);
                    let addr = match &session {
                        Some(a) => a.clone(),
                        None if e.is("resume", NS_SM) => {
                            match resume(&c2s, &jid, &e, conn, tx.clone()).await {
                                Some(a) => session = Some(a),
                                None => {
                                    let _ = tx
                                        .send(Outbound::stanza(sm::failed("item-not-found")))
                                        .await;
                                }
                            }
                            continue;
                        }
                        None => {
                            let a = Session::new(
                                c2s.cloud.clone(),
                                jid.clone(),
                                anonymous,
                                tx.clone(),
                                conn,
                            )
                            .start();
                            session = Some(a.clone());
                            a
                        }
                    };
                    if addr.send(Inbound { conn, stanza: e }).await.is_err() {
                        break 'read;
                    }
                }
                Ok(Some(Event::StreamEnd)) => {
                    tracing::debug!("client closed its stream");
                    resumable = false;
                    let _ = tx.send(Outbound::Close).await;
                    break 'read;
                }
                Ok(Some(Event::StreamStart(_))) => {
                    resumable = false;
                    let _ = tx
                        .send(Outbound::Error {
                            condition: "not-well-formed",
                            text: Some("second stream header".into()),
                        })
                        .await;
                    break 'read;
                }
                Ok(None) => break,
                Err(e) => {
                    resumable = false;
                    tracing::info!(error = %e, "closing client stream with stream error");
                    let _ = tx
                        .send(Outbound::Error {
                            condition: e.condition(),
                            text: Some(e.to_string()),
                        })
                        .await;
                    break 'read;
                }
            }
        }
        let read = tokio::select! {
            r = tokio::time::timeout(c2s.idle_timeout, tokio::io::AsyncReadExt::read(&mut rd, &mut buf)) => r,
            _ = &mut stop_rx => break 'read,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => decoder.feed(&buf[..n]),
            Err(_) => {
                let _ = tx
                    .send(Outbound::Error {
                        condition: "connection-timeout",
                        text: Some("idle for too long".into()),
                    })
                    .await;
                break;
            }
        }
    }
    if let Some(a) = session {
        a.do_send(Closed { conn, resumable });
    }
    drop(tx);
    let _ = writer.await;
}

static NEXT_CONN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// XEP-0198 §5: attaches this connection to the session `<resume/>` names.
async fn resume(
    c2s: &C2s,
    account: &Jid,
    e: &Element,
    conn: u64,
    tx: Outbox,
) -> Option<actix::Addr<Session>> {
    let previd = e.get_attr("previd")?;
    let h = sm::h_of(e)?;
    let addr = c2s.cloud.find_resumable(previd)?;
    match addr
        .send(Resume {
            account: account.clone(),
            h,
            conn,
            tx,
        })
        .await
    {
        Ok(Ok(_)) => Some(addr),
        _ => None,
    }
}

/// Writes what the session queues, batching, with whitespace keepalives when idle.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: OutboxReader,
    keepalive: Duration,
    stop: oneshot::Sender<()>,
    metrics: Arc<Metrics>,
) {
    let mut out = String::new();
    let mut closing = false;
    loop {
        let first = match tokio::time::timeout(keepalive, rx.recv()).await {
            Ok(Some(item)) => Some(item),
            Ok(None) => {
                out.push_str("</stream:stream>");
                closing = true;
                None
            }
            Err(_) => {
                out.push(' ');
                None
            }
        }
        .into_iter();
        // A batch of up to 256 items or about 64 KiB: what is taken out of
        // the queue stays counted against its byte bound until written.
        let mut batch: Vec<Outbound> = Vec::new();
        let mut weight = 0;
        for (o, w) in first {
            batch.push(o);
            weight += w;
        }
        while batch.len() < 256 && weight < 64 * 1024 {
            match rx.try_recv() {
                Some((o, w)) => {
                    weight += w;
                    batch.push(o);
                }
                None => break,
            }
        }
        let mut tally = Tally::default();
        for o in batch {
            if closing {
                break;
            }
            match o {
                Outbound::Stanza(e) => {
                    tally.add(&e.name);
                    e.write_to(&mut out, NS_CLIENT)
                }
                // Offline messages, kept serialized.
                Outbound::Raw(s) => {
                    tally.add(if s.starts_with("<message") {
                        "message"
                    } else {
                        ""
                    });
                    out.push_str(&s)
                }
                Outbound::Error { condition, text } => {
                    metrics.stream_error(condition);
                    out.push_str(&codec::stream_error(condition, text.as_deref()));
                    closing = true;
                }
                Outbound::Close => {
                    out.push_str("</stream:stream>");
                    closing = true;
                }
            }
        }
        if !out.is_empty() {
            let r =
                tokio::time::timeout(Duration::from_secs(30), wr.write_all(out.as_bytes())).await;
            out.clear();
            rx.written(weight);
            // A burst may have grown the buffer: an idle session gives it back.
            if out.capacity() > 64 * 1024 && rx.is_empty() {
                out.shrink_to(4096);
            }
            if !matches!(r, Ok(Ok(()))) {
                closing = true;
            } else {
                metrics.c2s_out.add(&tally);
                let _ = wr.flush().await;
            }
        }
        if closing {
            let _ = tokio::time::timeout(Duration::from_secs(5), wr.shutdown()).await;
            let _ = stop.send(());
            // Refuse more so the session winds down; what is queued is
            // dropped (and uncounted) with the reader.
            rx.close();
            return;
        }
    }
}
