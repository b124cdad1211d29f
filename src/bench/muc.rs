//! `bench muc`: R fresh XEP-0045 rooms of M occupants each; every occupant sends K groupchat messages (with a window in flight, its own reflections as acknowledgements) carrying its sequence number and send time; deliveries per second to all occupants, latency, losses and duplicates. Standard XEP-0045 only, so it runs unchanged against Prosody and ejabberd.

use super::conn::Target;
use super::load::login_range;
use super::wire::{request, send, Stanzas};
use super::{percentiles, Latency};
use intercloud_actors::element::Element;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
const WAIT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct MucArgs {
    pub server: Target,
    /// The multi-user chat service's JID (e.g. `conference.<domain>`).
    pub service: String,
    pub rooms: usize,
    pub occupants: usize,
    /// Messages each occupant sends.
    pub messages: u64,
    /// Messages an occupant may have in flight (sent, not yet reflected back).
    pub window: u64,
    pub password: String,
    pub register: bool,
    pub concurrency: usize,
    pub drain: Duration,
}

#[derive(Debug, Serialize)]
pub struct MucReport {
    pub mode: String,
    pub server: String,
    pub service: String,
    pub rooms: usize,
    /// Occupants that logged in and joined.
    pub occupants: usize,
    pub login_errors: usize,
    pub sent: u64,
    /// Each message to every occupant of its room (the sender's reflection included).
    pub expected: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub lost: u64,
    pub errors: u64,
    pub send_secs: f64,
    pub delivered_per_sec: f64,
    pub latency: Latency,
    pub first_error: Option<String>,
}

struct Shared {
    t0: Instant,
    stop: AtomicBool,
    /// By occupant (global index): sent, and its own messages reflected to it.
    sent: Vec<AtomicU64>,
    reflected: Vec<AtomicU64>,
    wake: Vec<Notify>,
    last: AtomicU64,
}

/// The room, sender, sequence and send time a groupchat body carries.
fn bench_body(m: &Element) -> Option<(usize, usize, u64, u64)> {
    let body = m.child_text("body", intercloud_actors::element::NS_CLIENT)?;
    let mut it = body.split_whitespace();
    if it.next()? != "bench" {
        return None;
    }
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

#[derive(Default)]
struct Seen {
    latencies_us: Vec<u32>,
    got: u64,
    duplicates: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Reads what occupant `me` of `room` (whose occupants are `members`) hears.
async fn listen(
    mut s: Stanzas,
    room: usize,
    me: usize,
    members: std::ops::Range<usize>,
    messages: u64,
    sh: Arc<Shared>,
    drain: Duration,
) -> Seen {
    let mut seen = Seen::default();
    let mut bits: Vec<super::SeqSet> = members
        .clone()
        .map(|_| super::SeqSet::new(messages))
        .collect();
    let expected = messages * members.len() as u64;
    let mut stop_at = None;
    while seen.got < expected {
        if sh.stop.load(Ordering::Relaxed) {
            let at = *stop_at.get_or_insert_with(|| Instant::now() + drain);
            if Instant::now() >= at {
                break;
            }
        }
        let m = match s.next(Duration::from_millis(50)).await {
            Ok(Some(m)) if m.name == "message" => m,
            Ok(_) => continue,
            Err(e) => {
                seen.errors += 1;
                seen.first_error.get_or_insert(e);
                break;
            }
        };
        if m.get_attr("type") == Some("error") {
            seen.errors += 1;
            seen.first_error.get_or_insert_with(|| m.to_xml());
            continue;
        }
        let Some((r, from, seq, t)) = bench_body(&m) else {
            continue;
        };
        if r != room || !members.contains(&from) || seq >= messages {
            seen.errors += 1;
            continue;
        }
        if !bits[from - members.start].insert(seq) {
            seen.duplicates += 1;
            continue;
        }
        seen.got += 1;
        let now = sh.t0.elapsed().as_micros() as u64;
        seen.latencies_us
            .push(now.saturating_sub(t).min(u32::MAX as u64) as u32);
        sh.last.fetch_max(now, Ordering::Relaxed);
        if from == me {
            sh.reflected[me].fetch_add(1, Ordering::Relaxed);
            sh.wake[me].notify_one();
        }
    }
    seen
}

async fn talk(
    mut w: super::conn::Writer,
    room: usize,
    me: usize,
    jid: String,
    a: MucArgs,
    sh: Arc<Shared>,
) -> super::conn::Writer {
    let mut seq = 0u64;
    let mut out = String::with_capacity(8 * 1024);
    let end = Instant::now() + WAIT;
    while seq < a.messages && Instant::now() < end {
        let inflight = seq - sh.reflected[me].load(Ordering::Relaxed);
        if inflight >= a.window {
            let _ = tokio::time::timeout(Duration::from_millis(20), sh.wake[me].notified()).await;
            continue;
        }
        let n = (a.window - inflight).min(16).min(a.messages - seq);
        out.clear();
        let t = sh.t0.elapsed().as_micros() as u64;
        for k in seq..seq + n {
            out.push_str(&format!(
                "<message to='{jid}' type='groupchat' id='m{me}-{k}'><body>bench {room} {me} {k} {t}</body></message>"
            ));
        }
        if send(&mut w, &out).await.is_err() {
            break;
        }
        seq += n;
        sh.sent[me].store(seq, Ordering::Relaxed);
    }
    w
}

/// Joins `room` as `nick`; the first in a room accepts it as an instant
/// room when the service made it locked (status 201).
async fn join(
    w: &mut super::conn::Writer,
    s: &mut Stanzas,
    room: &str,
    nick: &str,
) -> Result<(), String> {
    send(
        w,
        &format!(
            "<presence to='{room}/{nick}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>"
        ),
    )
    .await?;
    let me = format!("{room}/{nick}");
    let p = s
        .until(WAIT, |e| {
            e.name == "presence" && e.get_attr("from") == Some(me.as_str())
        })
        .await?;
    if p.get_attr("type") == Some("error") {
        return Err(format!("joining {room}: {}", p.to_xml()));
    }
    let created = p.get_child("x", NS_MUC_USER).is_some_and(|x| {
        x.elements()
            .any(|c| c.name == "status" && c.get_attr("code") == Some("201"))
    });
    if created {
        request(
            w,
            s,
            "instant",
            &format!(
                "<iq type='set' id='instant' to='{room}'><query xmlns='{NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
            ),
            WAIT,
        )
        .await
        .map_err(|e| format!("making {room} an instant room: {e}"))?;
    }
    Ok(())
}

pub async fn run(a: MucArgs, progress: &dyn Fn(&str)) -> Result<MucReport, String> {
    let (rooms, m) = (a.rooms.max(1), a.occupants.max(1));
    let total = rooms * m;
    progress(&format!("logging in {total} occupants"));
    let (conns, login_errors, _) =
        login_range(&a.server, 0..total, &a.password, a.register, a.concurrency).await;
    let run_id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let room_jid = |r: usize| format!("bench-{run_id}-{r}@{}", a.service);
    let mut first_error = login_errors.first().cloned();
    // The first occupant of each room makes it; the others join after.
    let mut slots: Vec<Option<(Stanzas, super::conn::Writer)>> = conns
        .into_iter()
        .map(|c| c.map(|c| (Stanzas::new(c.reader, c.decoder), c.writer)))
        .collect();
    progress(&format!("joining {rooms} rooms of {m}"));
    for r in 0..rooms {
        if let Some((s, w)) = slots[r * m].as_mut() {
            if let Err(e) = join(w, s, &room_jid(r), &format!("o{}", r * m)).await {
                first_error.get_or_insert(e);
                slots[r * m] = None;
            }
        }
    }
    let mut joining = Vec::new();
    for (i, slot) in slots.into_iter().enumerate() {
        let room = room_jid(i / m);
        joining.push(tokio::spawn(async move {
            let (mut s, mut w) = slot.ok_or_else(|| "not logged in".to_string())?;
            if i % m != 0 {
                join(&mut w, &mut s, &room, &format!("o{i}")).await?;
            }
            Ok::<_, String>((s, w))
        }));
    }
    let mut joined = Vec::new();
    for (i, t) in joining.into_iter().enumerate() {
        match t.await {
            Ok(Ok(sw)) => joined.push((i, sw)),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let sh = Arc::new(Shared {
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        sent: (0..total).map(|_| AtomicU64::new(0)).collect(),
        reflected: (0..total).map(|_| AtomicU64::new(0)).collect(),
        wake: (0..total).map(|_| Notify::new()).collect(),
        last: AtomicU64::new(0),
    });
    // Occupants present per room: the deliveries expected are per room.
    let mut present = vec![0u64; rooms];
    for (i, _) in &joined {
        present[i / m] += 1;
    }
    let count = joined.len();
    progress(&format!(
        "{count} occupants send {} messages each",
        a.messages
    ));
    let mut listeners = Vec::new();
    let mut talkers = Vec::new();
    for (i, (s, w)) in joined {
        let r = i / m;
        listeners.push(tokio::spawn(listen(
            s,
            r,
            i,
            r * m..(r + 1) * m,
            a.messages,
            sh.clone(),
            a.drain,
        )));
        talkers.push(tokio::spawn(talk(
            w,
            r,
            i,
            room_jid(r),
            a.clone(),
            sh.clone(),
        )));
    }
    let mut writers = Vec::new();
    for t in talkers {
        if let Ok(w) = t.await {
            writers.push(w);
        }
    }
    progress("all sent; waiting for the last deliveries");
    sh.stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let (mut delivered, mut duplicates, mut errors) = (0, 0, 0);
    for l in listeners {
        if let Ok(seen) = l.await {
            lat.extend(seen.latencies_us);
            delivered += seen.got;
            duplicates += seen.duplicates;
            errors += seen.errors;
            if let Some(e) = seen.first_error {
                first_error.get_or_insert(e);
            }
        }
    }
    for mut w in writers {
        let _ = send(&mut w, "</stream:stream>").await;
    }
    let sent: u64 = sh.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum();
    // Each message reaches every occupant present in its room.
    let expected: u64 = (0..total)
        .map(|i| sh.sent[i].load(Ordering::Relaxed) * present[i / m])
        .sum();
    let send_secs = sh.last.load(Ordering::Relaxed) as f64 / 1e6;
    Ok(MucReport {
        mode: "muc".into(),
        server: a.server.addr.to_string(),
        service: a.service.clone(),
        rooms,
        occupants: count,
        login_errors: login_errors.len(),
        sent,
        expected,
        delivered,
        duplicates,
        lost: expected.saturating_sub(delivered),
        errors,
        send_secs,
        delivered_per_sec: delivered as f64 / send_secs.max(1e-9),
        latency: percentiles(&mut lat),
        first_error,
    })
}
