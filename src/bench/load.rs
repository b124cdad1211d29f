//! `bench c2s` and `bench s2s`: logged-in users send chat messages carrying a sequence number and a timestamp (a ring on one server, or from one server's users to another's over federation), with a bounded window in flight; throughput, latency percentiles, errors, duplicates and losses.

use super::conn::{login, Conn, Reader, Target, Writer};
use super::{percentiles, Latency};
use crate::xmpp::codec::{Decoder, Event};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore};

/// What to run.
#[derive(Clone)]
pub struct LoadArgs {
    /// The server the senders use.
    pub server: Target,
    /// s2s: the server the receivers use (another domain); None: c2s, a ring on `server`.
    pub peer: Option<Target>,
    /// Users per server (accounts bench0 … bench<N-1>).
    pub users: usize,
    pub password: String,
    pub register: bool,
    /// Messages each sender sends.
    pub messages: u64,
    /// Logins in flight at once.
    pub concurrency: usize,
    /// Sending stops after this long (zero: when all are sent).
    pub duration: Duration,
    /// Messages a sender may have in flight (sent, not yet delivered).
    pub window: u64,
    /// How long to wait for the last deliveries.
    pub drain: Duration,
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub mode: String,
    pub server: String,
    pub peer_server: Option<String>,
    pub users: usize,
    pub logins: usize,
    pub login_errors: usize,
    pub login_secs: f64,
    pub logins_per_sec: f64,
    pub sent: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub lost: u64,
    pub errors: u64,
    pub send_secs: f64,
    pub delivered_per_sec: f64,
    pub latency: Latency,
    pub first_error: Option<String>,
}

/// Logs in bench0 … bench<n-1>, `concurrency` at a time.
pub async fn login_all(
    t: &Target,
    n: usize,
    password: &str,
    register: bool,
    concurrency: usize,
) -> (Vec<Option<Conn>>, Vec<String>, Duration) {
    login_range(t, 0..n, password, register, concurrency).await
}

/// Logs in bench<i> for each i of `users`, `concurrency` at a time.
pub async fn login_range(
    t: &Target,
    users: std::ops::Range<usize>,
    password: &str,
    register: bool,
    concurrency: usize,
) -> (Vec<Option<Conn>>, Vec<String>, Duration) {
    let started = Instant::now();
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(users.len());
    for i in users {
        let (t, pw, sem) = (t.clone(), password.to_string(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await;
            login(&t, &format!("bench{i}"), &pw, register).await
        }));
    }
    let mut conns = Vec::with_capacity(tasks.len());
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(c)) => conns.push(Some(c)),
            Ok(Err(e)) => {
                errors.push(e.to_string());
                conns.push(None)
            }
            Err(e) => {
                errors.push(e.to_string());
                conns.push(None)
            }
        }
    }
    (conns, errors, started.elapsed())
}

struct Shared {
    t0: Instant,
    stop: AtomicBool,
    /// Per sender: sent, and delivered (unique) to its receiver.
    sent: Vec<AtomicU64>,
    delivered: Vec<AtomicU64>,
    wake: Vec<Notify>,
    /// Microseconds since t0 of the last delivery.
    last: AtomicU64,
}

/// What a reader saw.
#[derive(Default)]
struct ReadStats {
    latencies_us: Vec<u32>,
    duplicates: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Reads one connection; counts messages from sender `from` (None: only errors are expected).
async fn read(
    mut r: Reader,
    mut d: Decoder,
    from: Option<usize>,
    messages: u64,
    sh: Arc<Shared>,
    drain: Duration,
) -> ReadStats {
    let mut st = ReadStats::default();
    let mut seen = super::SeqSet::new(messages);
    let mut buf = vec![0u8; 64 * 1024];
    let mut stop_at: Option<Instant> = None;
    loop {
        if sh.stop.load(Ordering::Relaxed) {
            let at = *stop_at.get_or_insert_with(|| Instant::now() + drain);
            let done = match from {
                Some(i) => {
                    sh.delivered[i].load(Ordering::Relaxed) >= sh.sent[i].load(Ordering::Relaxed)
                }
                None => true,
            };
            if done || Instant::now() >= at {
                return st;
            }
        }
        let n = match tokio::time::timeout(Duration::from_millis(50), r.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => {
                if !sh.stop.load(Ordering::Relaxed) || from.is_some() {
                    st.errors += 1;
                    st.first_error
                        .get_or_insert("connection closed by the server".into());
                }
                return st;
            }
            Ok(Ok(n)) => n,
        };
        d.feed(&buf[..n]);
        loop {
            match d.next_event() {
                Ok(Some(Event::Stanza(e))) if e.name == "message" => {
                    if e.get_attr("type") == Some("error") {
                        st.errors += 1;
                        st.first_error.get_or_insert(e.to_xml());
                        continue;
                    }
                    let Some(body) = e.child_text("body", intercloud_actors::element::NS_CLIENT)
                    else {
                        continue;
                    };
                    let mut it = body.split_whitespace();
                    if it.next() != Some("bench") {
                        continue;
                    }
                    let (Some(Ok(i)), Some(Ok(seq)), Some(Ok(t))) = (
                        it.next().map(str::parse::<usize>),
                        it.next().map(str::parse::<u64>),
                        it.next().map(str::parse::<u64>),
                    ) else {
                        continue;
                    };
                    if Some(i) != from || seq >= messages {
                        st.errors += 1;
                        continue;
                    }
                    if !seen.insert(seq) {
                        st.duplicates += 1;
                        continue;
                    }
                    let now = sh.t0.elapsed().as_micros() as u64;
                    st.latencies_us
                        .push(now.saturating_sub(t).min(u32::MAX as u64) as u32);
                    sh.last.fetch_max(now, Ordering::Relaxed);
                    sh.delivered[i].fetch_add(1, Ordering::Relaxed);
                    sh.wake[i].notify_one();
                }
                Ok(Some(Event::Stanza(e))) if e.name == "error" => {
                    st.errors += 1;
                    st.first_error.get_or_insert(e.to_xml());
                }
                Ok(Some(Event::StreamEnd)) => {
                    if !sh.stop.load(Ordering::Relaxed) {
                        st.errors += 1;
                    }
                    return st;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    st.errors += 1;
                    st.first_error.get_or_insert(e.to_string());
                    return st;
                }
            }
        }
    }
}

/// Sends `messages` to `to` as fast as the window allows.
async fn send(
    mut w: Writer,
    i: usize,
    to: String,
    a: LoadArgs,
    sh: Arc<Shared>,
    deadline: Option<Instant>,
) -> (Writer, u64) {
    let mut errors = 0;
    let mut seq = 0u64;
    let mut out = String::with_capacity(8192);
    while seq < a.messages {
        if deadline.map(|d| Instant::now() >= d).unwrap_or(false) {
            break;
        }
        let inflight = seq - sh.delivered[i].load(Ordering::Relaxed);
        if inflight >= a.window {
            let _ = tokio::time::timeout(Duration::from_millis(20), sh.wake[i].notified()).await;
            continue;
        }
        let n = (a.window - inflight).min(32).min(a.messages - seq);
        out.clear();
        let t = sh.t0.elapsed().as_micros() as u64;
        for k in 0..n {
            let s = seq + k;
            out.push_str(&format!(
                "<message to='{to}' type='chat' id='b{i}-{s}'><body>bench {i} {s} {t}</body></message>"
            ));
        }
        if w.write_all(out.as_bytes()).await.is_err() || w.flush().await.is_err() {
            errors += 1;
            break;
        }
        seq += n;
        sh.sent[i].store(seq, Ordering::Relaxed);
    }
    (w, errors)
}

/// Runs the load; `progress` gets a line at each phase.
pub async fn run(a: LoadArgs, progress: &dyn Fn(&str)) -> LoadReport {
    let n = a.users.max(1);
    progress(&format!("logging in {n} users on {}", a.server.addr));
    let (senders, mut login_errors, mut login_time) =
        login_all(&a.server, n, &a.password, a.register, a.concurrency).await;
    let receivers = match &a.peer {
        Some(p) => {
            progress(&format!("logging in {n} users on {}", p.addr));
            let (r, e, t) = login_all(p, n, &a.password, a.register, a.concurrency).await;
            login_errors.extend(e);
            login_time += t;
            Some(r)
        }
        None => None,
    };
    let logins = senders.iter().filter(|c| c.is_some()).count()
        + receivers
            .as_ref()
            .map(|r| r.iter().filter(|c| c.is_some()).count())
            .unwrap_or(0);
    let sh = Arc::new(Shared {
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        sent: (0..n).map(|_| AtomicU64::new(0)).collect(),
        delivered: (0..n).map(|_| AtomicU64::new(0)).collect(),
        wake: (0..n).map(|_| Notify::new()).collect(),
        last: AtomicU64::new(0),
    });
    // Who sends to whom: a ring (i -> i+1) on one server, or i -> i on the peer.
    let target = |i: usize| -> (usize, String) {
        match &a.peer {
            Some(p) => (i, format!("bench{i}@{}", p.domain)),
            None => (
                (i + 1) % n,
                format!("bench{}@{}", (i + 1) % n, a.server.domain),
            ),
        }
    };
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    let mut send_to = Vec::new();
    let up: Vec<bool> = match &receivers {
        Some(r) => r.iter().map(Option::is_some).collect(),
        None => senders.iter().map(Option::is_some).collect(),
    };
    for (i, c) in senders.into_iter().enumerate() {
        let Some(c) = c else { continue };
        let (rcv, to) = target(i);
        if up[rcv] && (n > 1 || a.peer.is_some()) {
            send_to.push((i, to));
        }
        // In the ring, this connection receives from i-1.
        let from = if a.peer.is_none() {
            Some((i + n - 1) % n)
        } else {
            None
        };
        readers.push(tokio::spawn(read(
            c.reader,
            c.decoder,
            from,
            a.messages,
            sh.clone(),
            a.drain,
        )));
        writers.push((i, c.writer));
    }
    let mut peer_writers = Vec::new();
    if let Some(r) = receivers {
        for (j, c) in r.into_iter().enumerate() {
            let Some(c) = c else { continue };
            readers.push(tokio::spawn(read(
                c.reader,
                c.decoder,
                Some(j),
                a.messages,
                sh.clone(),
                a.drain,
            )));
            peer_writers.push(c.writer);
        }
    }
    progress(&format!(
        "{} senders, {} messages each",
        send_to.len(),
        a.messages
    ));
    let deadline = (!a.duration.is_zero()).then(|| Instant::now() + a.duration);
    let mut tasks = Vec::new();
    let mut idle_writers = Vec::new();
    for (i, w) in writers {
        match send_to.iter().find(|(s, _)| *s == i) {
            Some((_, to)) => tasks.push(tokio::spawn(send(
                w,
                i,
                to.clone(),
                a.clone(),
                sh.clone(),
                deadline,
            ))),
            None => idle_writers.push(w),
        }
    }
    let mut errors = 0;
    let mut all_writers = idle_writers;
    for t in tasks {
        if let Ok((w, e)) = t.await {
            errors += e;
            all_writers.push(w);
        }
    }
    progress("all sent; waiting for the last deliveries");
    sh.stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let mut duplicates = 0;
    let mut first_error = login_errors.first().cloned();
    for r in readers {
        if let Ok(st) = r.await {
            lat.extend(st.latencies_us);
            duplicates += st.duplicates;
            errors += st.errors;
            if first_error.is_none() {
                first_error = st.first_error;
            }
        }
    }
    for mut w in all_writers.into_iter().chain(peer_writers) {
        let _ = w.write_all(b"</stream:stream>").await;
        let _ = w.shutdown().await;
    }
    let sent: u64 = sh.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum();
    let delivered: u64 = sh.delivered.iter().map(|s| s.load(Ordering::Relaxed)).sum();
    let send_secs = sh.last.load(Ordering::Relaxed) as f64 / 1e6;
    LoadReport {
        mode: if a.peer.is_some() { "s2s" } else { "c2s" }.into(),
        server: a.server.addr.to_string(),
        peer_server: a.peer.as_ref().map(|p| p.addr.to_string()),
        users: n,
        logins,
        login_errors: login_errors.len(),
        login_secs: login_time.as_secs_f64(),
        logins_per_sec: logins as f64 / login_time.as_secs_f64().max(1e-9),
        sent,
        delivered,
        duplicates,
        lost: sent.saturating_sub(delivered),
        errors,
        send_secs,
        delivered_per_sec: delivered as f64 / send_secs.max(1e-9),
        latency: percentiles(&mut lat),
        first_error,
    }
}
