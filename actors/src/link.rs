//! The s2s link actor: one per remote domain — dials, queues while connecting, reuses the link, closes it when idle, and bounces what cannot be delivered.

use crate::element::Element;
use crate::router::{Route, Router};
use crate::stanza::error_reply;
use actix::prelude::*;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Why a remote domain could not be reached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DialError {
    /// No address, connection refused, or the peer is not who it should be.
    #[error("remote server not found: {0}")]
    NotFound(String),
    /// The peer did not answer in time.
    #[error("remote server timeout: {0}")]
    Timeout(String),
    /// Policy forbids talking to that domain.
    #[error("refused by policy: {0}")]
    Forbidden(String),
}

impl DialError {
    /// The stanza error condition senders get.
    pub fn condition(&self) -> &'static str {
        match self {
            DialError::NotFound(_) => "remote-server-not-found",
            DialError::Timeout(_) => "remote-server-timeout",
            DialError::Forbidden(_) => "not-allowed",
        }
    }
}

/// An established, authenticated outgoing stream, as the actors see it.
pub struct LinkSink {
    /// Stanzas to write.
    pub tx: mpsc::Sender<Element>,
    /// Fires when the stream ends, with the stanzas the peer did not acknowledge.
    pub closed: oneshot::Receiver<Vec<Element>>,
}

pub type DialFuture = Pin<Box<dyn Future<Output = Result<LinkSink, DialError>> + Send>>;

/// Opens outgoing server-to-server streams (implemented by the wire layer).
pub trait Dialer: Send + Sync + 'static {
    fn dial(&self, local: &str, remote: &str) -> DialFuture;
}

/// Counters shared by all links of a node (for the metrics endpoint).
#[derive(Debug, Default)]
pub struct LinkMetrics {
    /// Stanzas waiting in link queues now.
    pub queued: std::sync::atomic::AtomicI64,
    /// Stanzas bounced because their domain could not be reached.
    pub bounced: std::sync::atomic::AtomicU64,
    /// Dial attempts that failed.
    pub failures: std::sync::atomic::AtomicU64,
}

/// Link settings.
#[derive(Clone, Debug)]
pub struct LinkSettings {
    /// Stanzas held while connecting; more are bounced.
    pub queue: usize,
    /// After a link broke with stanzas in flight: dials tried again (backing
    /// off) before they bounce. A first dial that fails bounces at once.
    pub redials: u32,
    /// A link with no traffic for this long is closed.
    pub idle: Duration,
    pub metrics: Arc<LinkMetrics>,
}

enum State {
    Idle,
    Connecting,
    Up(mpsc::Sender<Element>),
}

/// The link to one remote domain.
pub struct Link {
    local: String,
    remote: String,
    dialer: Arc<dyn Dialer>,
    router: Addr<Router>,
    settings: LinkSettings,
    state: State,
    queue: VecDeque<Element>,
    last_use: Instant,
    /// Counts links, so a late close notice of an old one is ignored.
    generation: u64,
    /// Attempts in a row that failed (for the metrics and the logs).
    pub failures: u32,
    /// Queue length last reported to the metrics.
    reported: usize,
    /// Redials left since the link last broke.
    redials_left: u32,
}

/// A stanza for the remote domain.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Outgoing(pub Element);

/// Whether the link is up (for tests and metrics).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsUp;

impl Link {
    pub fn new(
        local: String,
        remote: String,
        dialer: Arc<dyn Dialer>,
        router: Addr<Router>,
        settings: LinkSettings,
    ) -> Link {
        Link {
            local,
            remote,
            dialer,
            router,
            settings,
            state: State::Idle,
            queue: VecDeque::new(),
            last_use: Instant::now(),
            generation: 0,
            failures: 0,
            reported: 0,
            redials_left: 0,
        }
    }

    /// Reports the queue length to the shared gauge.
    fn gauge(&mut self) {
        let now = self.queue.len();
        let delta = now as i64 - self.reported as i64;
        if delta != 0 {
            self.settings
                .metrics
                .queued
                .fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
            self.reported = now;
        }
    }

    fn bounce(&self, st: &Element, condition: &str) {
        self.settings
            .metrics
            .bounced
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if crate::stanza::may_bounce(st) && st.get_attr("from").is_some() {
            self.router.do_send(Route(error_reply(st, condition, None)));
        }
    }

    fn dial(&mut self, ctx: &mut Context<Self>) {
        self.state = State::Connecting;
        self.generation += 1;
        let generation = self.generation;
        let started = Instant::now();
        let fut = self.dialer.dial(&self.local, &self.remote);
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(sink) => {
                act.failures = 0;
                act.redials_left = 0;
                tracing::info!(remote = %act.remote, micros = started.elapsed().as_micros() as u64, "s2s link up");
                let tx = sink.tx.clone();
                act.state = State::Up(tx);
                act.flush(ctx);
                let closed = sink.closed;
                ctx.spawn(closed.into_actor(act).map(move |unacked, act, ctx| {
                    let unacked = unacked.unwrap_or_default();
                    if act.generation != generation {
                        return;
                    }
                    tracing::info!(remote = %act.remote, unacked = unacked.len(), "s2s link down");
                    act.state = State::Idle;
                    // Unacknowledged stanzas go first, on the next link.
                    for st in unacked.into_iter().rev() {
                        act.queue.push_front(st);
                    }
                    act.gauge();
                    if !act.queue.is_empty() {
                        act.redials_left = act.settings.redials;
                        act.dial(ctx);
                    }
                }));
            }
            Err(e) => {
                act.failures += 1;
                act.settings
                    .metrics
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(remote = %act.remote, error = %e, "s2s dial failed");
                if act.redials_left > 0 && !act.queue.is_empty() {
                    // The link was up a moment ago: a transient failure, most likely.
                    let backoff = Duration::from_millis(200 << (act.settings.redials - act.redials_left).min(6));
                    act.redials_left -= 1;
                    ctx.run_later(backoff, |act, ctx| act.dial(ctx));
                    return;
                }
                act.router.do_send(crate::router::DomainUnreachable(act.remote.clone()));
                act.state = State::Idle;
                let cond = e.condition();
                for st in std::mem::take(&mut act.queue) {
                    act.bounce(&st, cond);
                }
                act.gauge();
            }
        }));
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_queue(ctx);
        self.gauge();
    }

    fn flush_queue(&mut self, ctx: &mut Context<Self>) {
        let State::Up(tx) = &self.state else {
            return;
        };
        while let Some(st) = self.queue.pop_front() {
            match tx.try_send(st) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(st)) => {
                    self.queue.push_front(st);
                    // Try again shortly; the writer is busy.
                    ctx.run_later(Duration::from_millis(5), |act, ctx| act.flush(ctx));
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(st)) => {
                    self.queue.push_front(st);
                    self.state = State::Idle;
                    self.dial(ctx);
                    return;
                }
            }
        }
    }
}

impl Actor for Link {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = (self.settings.idle / 4).max(Duration::from_millis(100));
        ctx.run_interval(every, |act, _| {
            if act.queue.is_empty()
                && !matches!(act.state, State::Connecting)
                && act.last_use.elapsed() >= act.settings.idle
            {
                if let State::Up(_) = act.state {
                    tracing::info!(remote = %act.remote, "s2s link idle: closing");
                    // Dropping the sender ends the stream; the actor stays for the next stanza.
                    act.state = State::Idle;
                    act.generation += 1;
                }
            }
        });
    }
}

impl Handler<Outgoing> for Link {
    type Result = ();
    fn handle(&mut self, msg: Outgoing, ctx: &mut Context<Self>) {
        self.last_use = Instant::now();
        if self.queue.len() >= self.settings.queue {
            tracing::warn!(remote = %self.remote, "s2s queue full");
            return self.bounce(&msg.0, "resource-constraint");
        }
        self.queue.push_back(msg.0);
        match self.state {
            State::Idle => self.dial(ctx),
            State::Connecting => {}
            State::Up(_) => self.flush(ctx),
        }
        self.gauge();
    }
}

impl Handler<IsUp> for Link {
    type Result = bool;
    fn handle(&mut self, _: IsUp, _: &mut Context<Self>) -> bool {
        matches!(self.state, State::Up(_))
    }
}
