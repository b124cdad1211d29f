//! Client-to-server streams (RFC 6120): the tokio driver of the negotiation core (`negotiation.rs`: STARTTLS, SASL), then a session actor fed with the client's stanzas and a writer for what it queues.

use super::codec::{self, Event, Limits};
use super::sasl::{self, Authenticator};
use super::stream::{accept_starttls, Upgrade, XmlStream};
use crate::net::Stream;
use intercloud_actors::element::{Element, NS_CLIENT};
use intercloud_actors::jid::Jid;
use intercloud_actors::metrics::{Metrics, Tally};
use intercloud_actors::outbox::{Outbox, OutboxReader};
use intercloud_actors::session::{Closed, Inbound, Outbound, Resume, Session};
use intercloud_actors::sm::{self, NS_SM};
use intercloud_actors::Cloud;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tracing::Instrument;

pub mod negotiation;
use negotiation::{Action, Input, Negotiation};

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

/// The node's side of what negotiation asks: accounts, registration, the throttle.
struct NodeEnv<'a> {
    c2s: &'a C2s,
    ip: IpAddr,
}

impl negotiation::Env for NodeEnv<'_> {
    fn start(&self, name: &str) -> Option<sasl::Mechanism> {
        self.c2s.auth.start(name)
    }
    fn step(&self, m: &mut sasl::Mechanism, data: &[u8]) -> sasl::Step {
        self.c2s.auth.step(m, data)
    }
    fn register(&self, request: &Element) -> Element {
        match &self.c2s.registration {
            Some(r) => r.answer(request),
            None => intercloud_actors::stanza::error_reply(request, "service-unavailable", None),
        }
    }
    fn throttled(&self) -> bool {
        self.c2s
            .throttle
            .check(Some(self.ip), None, std::time::Instant::now())
            .is_some()
    }
    fn login_failed(&self) {
        self.c2s
            .throttle
            .failed(Some(self.ip), None, std::time::Instant::now());
    }
}

/// Where driving the negotiation over one transport stopped.
enum Driven {
    StartTls,
    Ready(Jid, bool),
}

/// Feeds `core` the events read from `s` and carries out its actions, until
/// it asks for TLS or offers binding (Some) or the stream ended (None).
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut XmlStream<S>,
    core: &mut Negotiation,
    env: &NodeEnv<'_>,
) -> Option<Driven> {
    loop {
        let input = read(s, env.c2s.negotiation_timeout).await;
        for action in core.handle(input, env) {
            match act(s, env.c2s, action).await? {
                Some(d) => return Some(d),
                None => continue,
            }
        }
    }
}

/// The next event as the negotiation's input.
async fn read<S: AsyncRead + AsyncWrite + Unpin>(s: &mut XmlStream<S>, timeout: Duration) -> Input {
    match s.next_event(timeout).await {
        Ok(Event::StreamStart(h)) => Input::Header(h),
        Ok(Event::Stanza(e)) => Input::Element(e),
        Ok(Event::StreamEnd) => Input::End,
        Err(e) => Input::Broken(e.stream_condition()),
    }
}

/// Carries out one action: Some(None) to go on, Some(Some(d)) when driving
/// stops here, None when the stream is over.
async fn act<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut XmlStream<S>,
    c2s: &C2s,
    action: Action,
) -> Option<Option<Driven>> {
    match action {
        Action::Send(xml) => s.send(&xml).await.ok().map(|_| None),
        Action::StartTls => Some(Some(Driven::StartTls)),
        Action::Restart => {
            s.decoder.reset();
            Some(None)
        }
        Action::Ready { jid, anonymous } => Some(Some(Driven::Ready(jid, anonymous))),
        Action::Close {
            header,
            condition,
            text,
        } => {
            tracing::info!(condition, text, "closing client stream with stream error");
            c2s.cloud.metrics.stream_error(condition);
            s.close_with_error(header, condition, &text).await;
            None
        }
        Action::End => {
            let _ = s.send("</stream:stream>").await;
            None
        }
        Action::Stop => None,
    }
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
    let env = NodeEnv { c2s, ip };
    let mut core = Negotiation::new(negotiation::Settings {
        domain: c2s.domain().to_string(),
        allow_anonymous: c2s.allow_anonymous,
        registration: c2s.registration.is_some(),
        max_auth_attempts: c2s.max_auth_attempts,
    });
    let mut s = XmlStream::new(tcp, c2s.limits);
    let Driven::StartTls = drive(&mut s, &mut core, &env).await? else {
        return None;
    };
    let tls = match accept_starttls(s, &c2s.tls, c2s.negotiation_timeout).await {
        Upgrade::Tls(t) => *t,
        Upgrade::Pipelined(mut s) => {
            for action in core.handle(Input::Pipelined, &env) {
                act(&mut s, c2s, action).await?;
            }
            return None;
        }
        Upgrade::Failed => return None,
    };
    core.handle(Input::TlsReady, &env);
    let mut s = XmlStream::new(tls, c2s.limits);
    match drive(&mut s, &mut core, &env).await? {
        Driven::Ready(jid, anonymous) => Some((s, jid, anonymous)),
        Driven::StartTls => None,
    }
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
