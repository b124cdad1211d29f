//! The s2s link actor: one per remote domain — dials, queues while connecting, reuses the link, closes it when idle, and bounces what cannot be delivered.

use crate::element::Element;
use crate::messages::{Report, Route};
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
    /// The connection broke while the streams were negotiated (reset,
    /// closed, garbled): the peer is there, the network is not reliable.
    #[error("connection broke: {0}")]
    Broken(String),
    /// Policy forbids talking to that domain.
    #[error("refused by policy: {0}")]
    Forbidden(String),
}

impl DialError {
    /// The stanza error condition senders get.
    pub fn condition(&self) -> &'static str {
        match self {
            DialError::NotFound(_) => "remote-server-not-found",
            DialError::Timeout(_) | DialError::Broken(_) => "remote-server-timeout",
            DialError::Forbidden(_) => "not-allowed",
        }
    }
}

/// An established, authenticated outgoing stream, as the actors see it.
pub struct LinkSink {
    /// Stanzas to write.
    pub tx: mpsc::Sender<Element>,
    /// Bytes handed to the writer and not yet written (or, with stream
    /// management, not yet acknowledged): the link adds, the writer takes
    /// off. The link hands over no more while it holds `queue_bytes`.
    pub inflight: Arc<std::sync::atomic::AtomicUsize>,
    /// Fires when the stream ends, with the stanzas the peer did not acknowledge.
    pub closed: oneshot::Receiver<Vec<Element>>,
}

pub type DialFuture = Pin<Box<dyn Future<Output = Result<LinkSink, DialError>> + Send>>;

/// Opens outgoing server-to-server streams (implemented by the wire layer).
pub trait Dialer: Send + Sync + 'static {
    fn dial(&self, local: &str, remote: &str) -> DialFuture;
}

/// Link settings.
#[derive(Clone, Debug)]
pub struct LinkSettings {
    /// Stanzas held while connecting; more are bounced.
    pub queue: usize,
    /// Bytes held while connecting (and, again, handed to the writer and
    /// not yet acknowledged); more are bounced with `resource-constraint`.
    pub queue_bytes: usize,
    /// Remote domains with a link at once (the router's bound).
    pub max_domains: usize,
    /// Domains dialed for the first time at once, in all and per sender.
    pub max_pending: usize,
    pub max_pending_per_sender: usize,
    /// Failed dials taken as transient — any failure once the domain has
    /// been reached, and a connection that broke while negotiating always —
    /// are tried again (backing off from 200 ms to 2 s) for this long after
    /// the first failure in a row before what is queued bounces. Otherwise
    /// (no address, refused) what is queued bounces at once.
    pub redial_window: Duration,
    /// A link with no traffic for this long is closed.
    pub idle: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
}

enum State {
    Idle,
    Connecting,
    /// Backing off before the next dial.
    Waiting,
    Up(mpsc::Sender<Element>, Arc<std::sync::atomic::AtomicUsize>),
}

/// Lines a burst of failing dials (made-up domains, a flood) would repeat.
static DIAL_FAILED: crate::lograte::LogRate =
    crate::lograte::LogRate::new(20, Duration::from_secs(10));
static UNREACHABLE: crate::lograte::LogRate =
    crate::lograte::LogRate::new(20, Duration::from_secs(10));
static QUEUE_FULL: crate::lograte::LogRate =
    crate::lograte::LogRate::new(5, Duration::from_secs(10));

/// The longest wait between two dials of a failing domain.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The link to one remote domain.
pub struct Link {
    local: String,
    remote: String,
    dialer: Arc<dyn Dialer>,
    router: LinkEvents,
    settings: LinkSettings,
    state: State,
    queue: VecDeque<Element>,
    /// The weight of `queue`.
    queue_bytes: usize,
    /// Links whose close notice has not come yet.
    open: u32,
    /// The router let this link go: it stops once nothing is in flight.
    retiring: bool,
    last_use: Instant,
    /// Counts links, so a late close notice of an old one is ignored.
    generation: u64,
    /// Attempts in a row that failed (for the metrics and the logs).
    pub failures: u32,
    /// Queue length last reported to the metrics.
    reported: usize,
    /// A dial to this domain has succeeded before.
    reached: bool,
    /// When dials began failing in a row.
    failing_since: Option<Instant>,
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
        router: LinkEvents,
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
            queue_bytes: 0,
            open: 0,
            retiring: false,
            last_use: Instant::now(),
            generation: 0,
            failures: 0,
            reported: 0,
            reached: false,
            failing_since: None,
        }
    }

    fn push_back(&mut self, st: Element) {
        self.queue_bytes += st.weight();
        self.queue.push_back(st);
    }

    fn push_front(&mut self, st: Element) {
        self.queue_bytes += st.weight();
        self.queue.push_front(st);
    }

    fn pop_front(&mut self) -> Option<Element> {
        let st = self.queue.pop_front()?;
        self.queue_bytes -= st.weight();
        Some(st)
    }

    fn take_queue(&mut self) -> VecDeque<Element> {
        self.queue_bytes = 0;
        std::mem::take(&mut self.queue)
    }

    /// Reports the queue length to the shared gauge.
    fn gauge(&mut self) {
        let now = self.queue.len();
        let delta = now as i64 - self.reported as i64;
        if delta != 0 {
            self.settings.metrics.s2s_queued.inc_by(delta);
            self.reported = now;
        }
    }

    fn bounce(&self, st: &Element, condition: &str) {
        self.settings.metrics.bounced(condition);
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
                act.reached = true;
                act.failing_since = None;
                tracing::info!(remote = %act.remote, micros = started.elapsed().as_micros() as u64, "s2s link up");
                act.state = State::Up(sink.tx, sink.inflight);
                act.router
                    .do_send(DomainReachable(act.remote.clone()));
                act.flush(ctx);
                act.open += 1;
                ctx.spawn(
                    sink.closed
                        .into_actor(act)
                        .map(move |unacked, act, ctx| act.closed(generation, unacked.unwrap_or_default(), ctx)),
                );
            }
            Err(e) => act.dial_failed(e, ctx),
        }));
    }

    /// A link ended with `unacked` stanzas the peer did not acknowledge.
    /// They go first on the next link — also when the link was already
    /// replaced (a write found it closed and dialed again before this notice
    /// came): dropping them then would lose what was sent and never
    /// acknowledged.
    fn closed(&mut self, generation: u64, unacked: Vec<Element>, ctx: &mut Context<Self>) {
        let current = self.generation == generation;
        self.open = self.open.saturating_sub(1);
        tracing::info!(remote = %self.remote, unacked = unacked.len(), current, "s2s link down");
        for st in unacked.into_iter().rev() {
            self.push_front(st);
        }
        if current {
            self.state = State::Idle;
        }
        if self.retiring && matches!(self.state, State::Idle) {
            return self.try_retire(ctx);
        }
        if !self.queue.is_empty() {
            match self.state {
                State::Idle => self.dial(ctx),
                State::Up(..) => self.flush_queue(ctx),
                State::Connecting | State::Waiting => {}
            }
        }
        self.gauge();
    }

    fn dial_failed(&mut self, e: DialError, ctx: &mut Context<Self>) {
        self.failures += 1;
        self.settings.metrics.s2s_dial_failures.inc();
        if let Some(held_back) = DIAL_FAILED.allow() {
            tracing::warn!(remote = %self.remote, error = %e, failures = self.failures, held_back, "s2s dial failed");
        }
        if self.queue.is_empty() {
            self.state = State::Idle;
            self.router.do_send(LinkIdle {
                domain: self.remote.clone(),
                link: ctx.address(),
            });
            return self.try_retire(ctx);
        }
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        let transient = match e {
            DialError::Forbidden(_) => false,
            DialError::Broken(_) => true,
            DialError::NotFound(_) | DialError::Timeout(_) => self.reached,
        };
        if transient && since.elapsed() < self.settings.redial_window {
            // Reached before, or there and unreliable: back off, dial again.
            let backoff = (Duration::from_millis(200) * (1u32 << (self.failures - 1).min(5)))
                .min(MAX_BACKOFF)
                .min(self.settings.redial_window.saturating_sub(since.elapsed()));
            self.state = State::Waiting;
            ctx.run_later(backoff, |act, ctx| {
                if matches!(act.state, State::Waiting) {
                    act.dial(ctx);
                }
            });
            return;
        }
        if let Some(held_back) = UNREACHABLE.allow() {
            tracing::warn!(remote = %self.remote, queued = self.queue.len(), error = %e, held_back, "s2s domain unreachable: bouncing what is queued");
        }
        // Nothing left to do: the router may let this link go.
        self.router.do_send(LinkIdle {
            domain: self.remote.clone(),
            link: ctx.address(),
        });
        self.failing_since = None;
        self.router.do_send(DomainUnreachable(self.remote.clone()));
        self.state = State::Idle;
        let cond = e.condition();
        for st in self.take_queue() {
            self.bounce(&st, cond);
        }
        self.gauge();
        self.try_retire(ctx);
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_queue(ctx);
        self.gauge();
    }

    fn flush_queue(&mut self, ctx: &mut Context<Self>) {
        use std::sync::atomic::Ordering::Relaxed;
        let State::Up(tx, inflight) = &self.state else {
            return;
        };
        let (tx, inflight) = (tx.clone(), inflight.clone());
        while let Some(st) = self.pop_front() {
            let w = st.weight();
            // The writer holds its share of the byte bound: wait for it.
            let busy = inflight.load(Relaxed);
            if busy > 0 && busy + w > self.settings.queue_bytes {
                self.push_front(st);
                ctx.run_later(Duration::from_millis(5), |act, ctx| act.flush(ctx));
                return;
            }
            inflight.fetch_add(w, Relaxed);
            match tx.try_send(st) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(st)) => {
                    inflight.fetch_sub(w, Relaxed);
                    self.push_front(st);
                    // Try again shortly; the writer is busy.
                    ctx.run_later(Duration::from_millis(5), |act, ctx| act.flush(ctx));
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(st)) => {
                    inflight.fetch_sub(w, Relaxed);
                    self.push_front(st);
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
        ctx.run_interval(every, |act, ctx| {
            if act.queue.is_empty()
                && !matches!(act.state, State::Connecting | State::Waiting)
                && act.last_use.elapsed() >= act.settings.idle
            {
                if let State::Up(..) = act.state {
                    tracing::info!(remote = %act.remote, "s2s link idle: closing");
                    // Dropping the sender ends the stream; the router lets
                    // the actor go (a later stanza starts a new one).
                    act.state = State::Idle;
                    act.generation += 1;
                    act.router.do_send(LinkIdle {
                        domain: act.remote.clone(),
                        link: ctx.address(),
                    });
                }
            }
        });
    }
}

impl Handler<Outgoing> for Link {
    type Result = ();
    fn handle(&mut self, msg: Outgoing, ctx: &mut Context<Self>) {
        self.last_use = Instant::now();
        let w = msg.0.weight();
        if self.queue.len() >= self.settings.queue
            || (!self.queue.is_empty() && self.queue_bytes + w > self.settings.queue_bytes)
        {
            if let Some(held_back) = QUEUE_FULL.allow() {
                tracing::warn!(remote = %self.remote, stanzas = self.queue.len(), bytes = self.queue_bytes, held_back, "s2s queue full");
            }
            return self.bounce(&msg.0, "resource-constraint");
        }
        self.push_back(msg.0);
        match self.state {
            State::Idle => self.dial(ctx),
            State::Connecting | State::Waiting => {}
            State::Up(..) => self.flush(ctx),
        }
        self.gauge();
    }
}

impl Handler<IsUp> for Link {
    type Result = bool;
    fn handle(&mut self, _: IsUp, _: &mut Context<Self>) -> bool {
        matches!(self.state, State::Up(..))
    }
}

/// The router let this link go (its domain was unreachable, or it was
/// idle): what arrived since goes back to the router, and the actor stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Handler<Retire> for Link {
    type Result = ();
    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.retiring = true;
        self.try_retire(ctx);
    }
}

impl Link {
    /// Stops a retiring link once no stream of it is open or being dialed
    /// (its close notice may still hand back unacknowledged stanzas).
    fn try_retire(&mut self, ctx: &mut Context<Self>) {
        if !self.retiring || self.open > 0 || !matches!(self.state, State::Idle | State::Waiting) {
            return;
        }
        let queued = self.take_queue();
        if !queued.is_empty() {
            tracing::debug!(remote = %self.remote, n = queued.len(), "retired link hands back its queue");
        }
        for st in queued {
            self.router.do_send(Route(st));
        }
        self.gauge();
        ctx.stop();
    }
}

// ------------------------------------------- what a link tells the router

crate::recipients! {
    /// Where a link reports: the router, seen only through the messages it
    /// takes (so that this module does not depend on the router's).
    pub struct LinkEvents {
        route: Route,
        idle: LinkIdle,
        reachable: DomainReachable,
        unreachable: DomainUnreachable,
    }
}

/// A remote domain cannot be reached or its stream broke: presence from it is void.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DomainUnreachable(pub String);

/// A link to a domain came up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DomainReachable(pub String);

/// A link has nothing to do (idle, or its domain unreachable and its queue
/// bounced): the router lets it go.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkIdle {
    pub domain: String,
    pub link: Addr<Link>,
}

#[cfg(test)]
mod tests;
