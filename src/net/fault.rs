//! Faults injected at the transport layer: a table (partition into groups, per-link delay, loss, duplication, bandwidth) that the wrapper of every dialed connection consults. In-process it is set directly; node processes reload it from a file.
//!
//! A link is policed by the side that dialed it, in both directions, so a
//! rule needs no cooperation from the peer. Streams carry bytes, not
//! packets: a lost chunk breaks its connection (as TCP does when its
//! retransmissions give up) and the protocols above recover — XEP-0198
//! resends what was not acknowledged, libp2p redials; a duplicated chunk is
//! delivered twice.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What is broken, right now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultTable {
    /// Groups of domains that reach only each other; domains in no group
    /// form one more group. Empty: no partition.
    pub partition: Vec<Vec<String>>,
    /// Per-link faults; a rule holds for both directions of the link.
    pub links: Vec<LinkFault>,
    /// Test only: these domains acknowledge (XEP-0198) the messages they
    /// receive over s2s and then discard them — it proves the
    /// acknowledged-loss invariant can fail. Builds without the
    /// `test-faults` feature refuse a table that has it.
    #[cfg(feature = "test-faults")]
    pub lose_acked: Vec<String>,
    /// Test only: these domains deliver the messages they receive over s2s
    /// with a forged `from` (one the link did not authenticate) — it proves
    /// the from-authenticity invariant can fail.
    #[cfg(feature = "test-faults")]
    pub forge_from: Vec<String>,
    /// Which domain listens on which libp2p port (to police libp2p dials).
    pub p2p_ports: BTreeMap<u16, String>,
}

/// Faults of the links between `a` and `b` ("*" matches every domain).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkFault {
    pub a: String,
    pub b: String,
    /// Each chunk waits this long before it moves on.
    pub delay_ms: u64,
    /// Probability that a chunk is lost (and its connection with it).
    pub loss: f64,
    /// Probability that a chunk is delivered twice.
    pub duplicate: f64,
    /// A slow link: bytes per second (0: unlimited).
    pub bytes_per_sec: u64,
}

impl LinkFault {
    fn active(&self) -> bool {
        self.delay_ms > 0 || self.loss > 0.0 || self.duplicate > 0.0 || self.bytes_per_sec > 0
    }

    fn pause(&self, n: usize) -> Duration {
        let slow = (n as u64 * 1_000_000)
            .checked_div(self.bytes_per_sec)
            .unwrap_or(0);
        Duration::from_millis(self.delay_ms) + Duration::from_micros(slow)
    }

    fn matches(&self, x: &str, y: &str) -> bool {
        let m = |p: &str, d: &str| p == "*" || p.eq_ignore_ascii_case(d);
        (m(&self.a, x) && m(&self.b, y)) || (m(&self.a, y) && m(&self.b, x))
    }
}

impl FaultTable {
    fn group(&self, d: &str) -> usize {
        self.partition
            .iter()
            .position(|g| g.iter().any(|x| x.eq_ignore_ascii_case(d)))
            .unwrap_or(self.partition.len())
    }

    /// Whether a partition separates `a` from `b`.
    pub fn blocked(&self, a: &str, b: &str) -> bool {
        !self.partition.is_empty() && self.group(a) != self.group(b)
    }

    /// The faults of the link between `a` and `b`: the worst of every rule that matches it.
    pub fn link(&self, a: &str, b: &str) -> LinkFault {
        let mut out = LinkFault::default();
        for r in self.links.iter().filter(|r| r.matches(a, b)) {
            out.delay_ms = out.delay_ms.max(r.delay_ms);
            out.loss = out.loss.max(r.loss);
            out.duplicate = out.duplicate.max(r.duplicate);
            if r.bytes_per_sec > 0
                && (out.bytes_per_sec == 0 || r.bytes_per_sec < out.bytes_per_sec)
            {
                out.bytes_per_sec = r.bytes_per_sec;
            }
        }
        out
    }
}

/// What the wrappers did, for the report.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    pub refused: u64,
    pub cut: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub delayed: u64,
}

impl FaultCounts {
    pub fn add(&mut self, o: &FaultCounts) {
        self.refused += o.refused;
        self.cut += o.cut;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.delayed += o.delayed;
    }

    pub fn total(&self) -> u64 {
        self.refused + self.cut + self.lost + self.duplicated + self.delayed
    }
}

#[derive(Default)]
struct Counters {
    refused: AtomicU64,
    cut: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
}

/// The fault table of a node (or of a whole in-process federation), shared by its connections.
pub struct Faults {
    table: RwLock<FaultTable>,
    epoch: AtomicU64,
    wakers: Mutex<HashMap<u64, Waker>>,
    next: AtomicU64,
    rng: Mutex<rand::rngs::StdRng>,
    counters: Counters,
}

impl Faults {
    pub fn new(seed: u64) -> Arc<Faults> {
        Arc::new(Faults {
            table: RwLock::new(FaultTable::default()),
            epoch: AtomicU64::new(1),
            wakers: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
            counters: Counters::default(),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, FaultTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the table; every connection re-reads it at once (a partition cuts the links it separates).
    pub fn set(&self, t: FaultTable) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = t;
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let wakers: Vec<Waker> = self
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, w)| w)
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    pub fn table(&self) -> FaultTable {
        self.read().clone()
    }

    /// Whether `local` may not dial `remote` now (counted as a refusal).
    pub fn blocked(&self, local: &str, remote: &str) -> bool {
        let b = self.read().blocked(local, remote);
        if b {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(local, remote, "fault: partitioned, connection refused");
        }
        b
    }

    /// Test only: whether `domain` delivers s2s messages with a forged `from`.
    #[cfg(feature = "test-faults")]
    pub fn forges_from(&self, domain: &str) -> bool {
        self.read()
            .forge_from
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Test only: whether `domain` loses the messages it acknowledges.
    #[cfg(feature = "test-faults")]
    pub fn loses_acked(&self, domain: &str) -> bool {
        self.read()
            .lose_acked
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// The domain listening on libp2p port `port`.
    pub fn domain_of_p2p_port(&self, port: u16) -> Option<String> {
        self.read().p2p_ports.get(&port).cloned()
    }

    pub fn counts(&self) -> FaultCounts {
        let c = &self.counters;
        FaultCounts {
            refused: c.refused.load(Ordering::Relaxed),
            cut: c.cut.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            duplicated: c.duplicated.load(Ordering::Relaxed),
            delayed: c.delayed.load(Ordering::Relaxed),
        }
    }

    fn roll(&self, p: f64) -> bool {
        p > 0.0
            && self
                .rng
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .gen::<f64>()
                < p
    }

    /// Keeps the table equal to the JSON file at `path` (absent: no faults),
    /// checking every `every`; stops when the last handle is dropped.
    ///
    /// With `counts`, what the wrappers did is kept in that file (JSON,
    /// replaced whole) whenever it changed, so a scenario run can report the
    /// faults its node processes injected.
    pub fn watch_file(self: &Arc<Self>, path: PathBuf, every: Duration, counts: Option<PathBuf>) {
        // The table in force when the node starts applies to its first dials.
        let mut seen = self.reload(&path, None);
        let weak: Weak<Faults> = Arc::downgrade(self);
        let mut written = FaultCounts::default();
        std::thread::Builder::new()
            .name("faults".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(f) = weak.upgrade() else { return };
                seen = f.reload(&path, seen);
                if let Some(out) = &counts {
                    let now = f.counts();
                    if now != written && write_counts(out, &now).is_ok() {
                        written = now;
                    }
                }
            })
            .ok();
    }

    /// Takes the file's table if the file changed since `seen`; its new mtime.
    fn reload(&self, path: &std::path::Path, seen: Option<SystemTime>) -> Option<SystemTime> {
        let m = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if m == seen {
            return seen;
        }
        let t = match std::fs::read_to_string(path) {
            Ok(text) => match serde_json::from_str::<FaultTable>(&text) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "unreadable fault table; keeping the last one");
                    return m;
                }
            },
            Err(_) => FaultTable::default(),
        };
        if t != self.table() {
            tracing::info!(file = %path.display(), partition = ?t.partition, links = t.links.len(), "fault table changed");
            self.set(t);
        }
        m
    }
}

/// Where in its data directory a node process keeps its fault counts.
pub const COUNTS_FILE: &str = "fault-counts.json";

/// Replaces `path` with `c` (a temporary file renamed: a reader sees the old or the new counts).
fn write_counts(path: &std::path::Path, c: &FaultCounts) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(c).unwrap_or_default())?;
    std::fs::rename(&tmp, path)
}

/// The counts a node process kept with `watch_file` (none yet: zero).
pub fn read_counts(path: &std::path::Path) -> FaultCounts {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// A dialed connection under the fault table (tokio I/O).
pub struct Faulty<S> {
    inner: S,
    faults: Arc<Faults>,
    local: String,
    remote: String,
    id: u64,
    epoch: u64,
    link: LinkFault,
    cut: bool,
    wsleep: Option<Pin<Box<tokio::time::Sleep>>>,
    wdelayed: bool,
    dup: Option<(Vec<u8>, usize)>,
    rbuf: Vec<u8>,
    rpos: usize,
    rsleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

fn reset(remote: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        format!("fault: link to {remote} cut"),
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> Faulty<S> {
    pub fn new(inner: S, faults: Arc<Faults>, local: &str, remote: &str) -> Faulty<S> {
        let id = faults.next.fetch_add(1, Ordering::Relaxed);
        // Dialed across a partition (libp2p, which cannot be refused before
        // it connects): born cut, counted as a refusal.
        let cut = faults.read().blocked(local, remote);
        if cut {
            faults.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        Faulty {
            inner,
            faults,
            local: local.to_string(),
            remote: remote.to_string(),
            id,
            epoch: 0,
            link: LinkFault::default(),
            cut,
            wsleep: None,
            wdelayed: false,
            dup: None,
            rbuf: Vec::new(),
            rpos: 0,
            rsleep: None,
        }
    }

    fn refresh(&mut self, cx: &mut Context<'_>) {
        let e = self.faults.epoch.load(Ordering::SeqCst);
        if e != self.epoch {
            self.epoch = e;
            let t = self.faults.read();
            if !self.cut && t.blocked(&self.local, &self.remote) {
                self.cut = true;
                self.faults.counters.cut.fetch_add(1, Ordering::Relaxed);
                tracing::info!(local = %self.local, remote = %self.remote, "fault: partition cuts the link");
            }
            self.link = t.link(&self.local, &self.remote);
        }
        if self.cut {
            let _ = Pin::new(&mut self.inner).poll_shutdown(cx);
        }
    }

    fn lose(&mut self, cx: &mut Context<'_>) {
        self.cut = true;
        self.faults.counters.lost.fetch_add(1, Ordering::Relaxed);
        tracing::info!(local = %self.local, remote = %self.remote, "fault: chunk lost, connection broken");
        let _ = Pin::new(&mut self.inner).poll_shutdown(cx);
    }

    fn flush_dup(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((d, pos)) = &mut self.dup {
            if *pos >= d.len() {
                self.dup = None;
                break;
            }
            let n = match Pin::new(&mut self.inner).poll_write(cx, &d[*pos..]) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *pos += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S> Drop for Faulty<S> {
    fn drop(&mut self) {
        self.faults
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Faulty<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.refresh(cx);
        if this.cut {
            return Poll::Ready(Err(reset(&this.remote)));
        }
        match this.flush_dup(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if !this.link.active() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        let pause = this.link.pause(buf.len());
        if !pause.is_zero() && !this.wdelayed {
            let s = this
                .wsleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
            if s.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.wsleep = None;
            this.wdelayed = true;
            this.faults.counters.delayed.fetch_add(1, Ordering::Relaxed);
        }
        if this.faults.roll(this.link.loss) {
            this.wdelayed = false;
            this.lose(cx);
            return Poll::Ready(Ok(buf.len()));
        }
        let n = match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => n,
            other => return other,
        };
        this.wdelayed = false;
        if n == buf.len() && this.faults.roll(this.link.duplicate) {
            this.faults
                .counters
                .duplicated
                .fetch_add(1, Ordering::Relaxed);
            this.dup = Some((buf.to_vec(), 0));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.refresh(cx);
        if this.cut {
            return Poll::Ready(Err(reset(&this.remote)));
        }
        match this.flush_dup(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Faulty<S> {
    /// A read that waits: a fault table set meanwhile must wake it (a
    /// partition cuts waiting connections). Registered only when waiting,
    /// and checked again after, so a table set in between is not missed.
    fn watch(&self, cx: &mut Context<'_>) {
        self.faults
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.id, cx.waker().clone());
        if self.faults.epoch.load(Ordering::SeqCst) != self.epoch {
            cx.waker().wake_by_ref();
        }
    }

    fn read_faulty(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.rpos >= self.rbuf.len() {
            if !self.link.active() {
                return Pin::new(&mut self.inner).poll_read(cx, buf);
            }
            // One buffer per connection, reused: chunks are held here while delayed.
            self.rbuf.clear();
            self.rbuf.resize(16 * 1024, 0);
            self.rpos = 0;
            let mut rb = ReadBuf::new(&mut self.rbuf);
            let r = Pin::new(&mut self.inner).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            self.rbuf.truncate(if matches!(r, Poll::Ready(Ok(()))) {
                n
            } else {
                0
            });
            match r {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            if self.faults.roll(self.link.loss) {
                self.rbuf.clear();
                self.lose(cx);
                return Poll::Ready(Err(reset(&self.remote)));
            }
            if self.faults.roll(self.link.duplicate) {
                self.faults
                    .counters
                    .duplicated
                    .fetch_add(1, Ordering::Relaxed);
                self.rbuf.extend_from_within(..n);
            }
            let pause = self.link.pause(n);
            if !pause.is_zero() {
                self.faults.counters.delayed.fetch_add(1, Ordering::Relaxed);
                self.rsleep = Some(Box::pin(tokio::time::sleep(pause)));
            }
        }
        if let Some(s) = &mut self.rsleep {
            if s.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.rsleep = None;
        }
        let n = (self.rbuf.len() - self.rpos).min(buf.remaining());
        buf.put_slice(&self.rbuf[self.rpos..self.rpos + n]);
        self.rpos += n;
        if self.rpos >= self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Faulty<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.refresh(cx);
        if this.cut {
            return Poll::Ready(Err(reset(&this.remote)));
        }
        let r = this.read_faulty(cx, buf);
        if r.is_pending() {
            this.watch(cx);
        }
        r
    }
}

/// Faults that break the product's own promises, to prove the checks that
/// guard them can fail. Only in builds with the `test-faults` feature
/// (the test suite's); `cargo build` leaves them out.
#[cfg(feature = "test-faults")]
pub mod test_only {
    use super::Faults;
    use intercloud_actors::element::Element;
    use std::sync::Arc;

    /// The `from` the fault forge_from puts on delivered messages.
    pub const FORGED_FROM: &str = "mallory@forged.invalid/x";

    /// What `domain`'s faults do to a stanza it received over s2s: false
    /// when it is to be discarded (lose_acked: counted as handled, never
    /// delivered); forge_from rewrites its `from`.
    pub fn tamper(faults: Option<&Arc<Faults>>, domain: &str, e: &mut Element) -> bool {
        let Some(f) = faults.filter(|_| e.name == "message") else {
            return true;
        };
        if f.loses_acked(domain) {
            tracing::warn!(from = ?e.get_attr("from"), "fault lose_acked: acknowledged message discarded");
            return false;
        }
        if f.forges_from(domain) {
            // What a server that does not check `from` against the
            // stream's authenticated domains would deliver.
            tracing::warn!(from = ?e.get_attr("from"), "fault forge_from: delivered with a forged from");
            e.set_attr("from", FORGED_FROM);
        }
        true
    }
}

#[cfg(test)]
mod tests;
