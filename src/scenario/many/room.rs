//! The room step of a scenario: clouds' users join a room at an exchange and talk; each occupant's own reflections acknowledge what it said.

use super::*;
use crate::xmpp::codec::Event;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// XEP-0045 status codes of an occupant the room let go (banned, kicked,
/// affiliation change, members-only, shutdown, its server unreachable).
const REMOVED: [&str; 6] = ["301", "307", "321", "322", "332", "333"];

/// Joins `room` as `nick` and waits for the room's presence for it; the
/// room's creator accepts it as an instant room (status 201).
async fn join(c: &mut Client, room: &str, nick: &str, within: Duration) -> Result<(), String> {
    // Through a bad link the join or its answer may be bounced; joining
    // again is harmless (the room answers with the occupant's presence).
    let me = format!("{room}/{nick}");
    let deadline = Instant::now() + within.max(T);
    let p = loop {
        c.send_raw(&format!(
            "<presence to='{room}/{nick}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>"
        ))
        .await
        .map_err(|e| e.to_string())?;
        let wait = Duration::from_secs(10).min(deadline.saturating_duration_since(Instant::now()));
        match c
            .wait_for(wait, |e| {
                e.name == "presence" && e.get_attr("from") == Some(me.as_str())
            })
            .await
        {
            // The room's server could not be reached for now (the error is
            // of type wait): try again until the deadline.
            Ok(p)
                if p.get_attr("type") == Some("error")
                    && p.get_child("error", NS_CLIENT)
                        .and_then(|e| e.get_attr("type"))
                        == Some("wait")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok(p) => break p,
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("joining {room} as {nick}: {e}"))
            }
            Err(_) => continue,
        }
    };
    if p.get_attr("type") == Some("error") {
        return Err(format!("joining {room} as {nick}: {}", p.to_xml()));
    }
    let created = p.get_child("x", NS_MUC_USER).is_some_and(|x| {
        x.elements()
            .any(|s| s.name == "status" && s.get_attr("code") == Some("201"))
    });
    if created {
        let iq = format!(
            "<iq type='set' id='instant' to='{room}'><query xmlns='{NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
        );
        request(c, "instant", &iq).await?;
    }
    Ok(())
}

/// The `room` step: the exchange's user opens `room` at its conference
/// service and stays; each cloud's user joins (nick: its domain) and says
/// `count` things at `rate`; a message the room reflected to its sender
/// was acknowledged, and must reach every occupant present throughout,
/// once, in its sender's order.
pub async fn room(
    net: &Net,
    exchange: &Member,
    room: &str,
    clouds: &[Member],
    count: u64,
    rate: f64,
    within: Duration,
) -> Result<ManyTally, String> {
    let room = format!("{room}@conference.{}", exchange.domain);
    let tag = format!("r{:x}", rand::random::<u32>());
    let tally = Arc::new(Mutex::new(ManyTally::default()));
    let clock = Arc::new(Clock::default());
    let mut host = login(net, exchange, "room").await?;
    join(&mut host, &room, &exchange.domain, within).await?;
    let mut occupants = vec![(exchange.domain.clone(), host)];
    for m in clouds {
        let mut c = login(net, m, "room").await?;
        join(&mut c, &room, &m.domain, within).await?;
        occupants.push((m.domain.clone(), c));
    }
    let parse = {
        let (room, tag) = (room.clone(), tag.clone());
        move |e: &Element| -> Option<(String, u64)> {
            if e.name != "message" || e.get_attr("type") != Some("groupchat") {
                return None;
            }
            let nick = e
                .get_attr("from")?
                .strip_prefix(room.as_str())?
                .strip_prefix('/')?;
            let body = e.child_text("body", NS_CLIENT)?;
            let mut w = body.split_whitespace();
            if w.next()? != tag {
                return None;
            }
            Some((nick.to_string(), w.next()?.parse().ok()?))
        }
    };
    // Each occupant reads, and the clouds' occupants talk between reads;
    // a sender's own reflections acknowledge what it said.
    let talkers = Arc::new(std::sync::atomic::AtomicUsize::new(clouds.len()));
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut tasks = Vec::new();
    for (nick, c) in occupants {
        tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .got
            .insert(nick.clone(), BTreeMap::new());
        let talks = nick != exchange.domain;
        let (room, tag, tally, clock, talkers, parse) = (
            room.clone(),
            tag.clone(),
            tally.clone(),
            clock.clone(),
            talkers.clone(),
            parse.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut c = c;
            let mut next_send = Instant::now();
            let mut sent = 0u64;
            let mut talking = talks;
            loop {
                if talking && Instant::now() >= next_send {
                    let xml = format!(
                        "<message to='{room}' type='groupchat' id='{tag}-{nick}-{sent}'><body>{tag} {sent}</body></message>"
                    );
                    let failed = c.send_raw(&xml).await.is_err();
                    if !failed {
                        sent += 1;
                    }
                    next_send += gap;
                    if failed || sent == count {
                        talking = false;
                        let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                        t.sent.insert(nick.clone(), sent);
                        t.acked.entry(nick.clone()).or_default();
                        drop(t);
                        if talkers.fetch_sub(1, Ordering::SeqCst) == 1 {
                            *clock.done_at.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(Instant::now());
                        }
                    }
                    continue;
                }
                // Final once every sender said all and saw all it said
                // reflected: only then is "every acknowledged one" known.
                let done = clock.done_at.lock().ok().and_then(|d| *d);
                let complete = tally
                    .lock()
                    .map(|t| t.left.contains(&nick) || (t.all_acked() && t.complete(&nick)))
                    .unwrap_or(true);
                if (talkers.load(Ordering::SeqCst) == 0 && complete)
                    || done.is_some_and(|d| d.elapsed() >= within)
                {
                    break;
                }
                let wait = if talking {
                    next_send.saturating_duration_since(Instant::now())
                } else {
                    Duration::from_millis(300)
                };
                match c.next(wait.max(Duration::from_millis(1))).await {
                    Ok(Event::Stanza(e)) => {
                        let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                        // An occupant the room let go (its server could not
                        // be reached: 333), seen by anyone, was not there throughout.
                        let removed = e.get_child("x", NS_MUC_USER).is_some_and(|x| {
                            x.elements().any(|c| {
                                c.name == "status"
                                    && c.get_attr("code").is_some_and(|k| REMOVED.contains(&k))
                            })
                        });
                        let gone = (e.name == "presence"
                            && e.get_attr("type") == Some("unavailable")
                            && removed)
                        .then(|| e.get_attr("from"))
                        .flatten()
                        .and_then(|f| f.strip_prefix(room.as_str()))
                        .and_then(|f| f.strip_prefix('/'));
                        if let Some(who) = gone {
                            t.left.insert(who.to_string());
                        } else if let Some((sender, seq)) = parse(&e) {
                            if sender == nick {
                                t.acked.entry(nick.clone()).or_default().insert(seq);
                            }
                            t.got
                                .entry(nick.clone())
                                .or_default()
                                .entry(sender)
                                .or_default()
                                .push(seq);
                        }
                    }
                    Ok(_) => break,
                    Err(e) if timeout(&e) => {}
                    Err(e) => {
                        tracing::warn!(occupant = %nick, error = %e, "room occupant ended");
                        tally
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .left
                            .insert(nick.clone());
                        break;
                    }
                }
            }
            if talking {
                // Ended before saying everything: it no longer holds the others back.
                let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                t.sent.insert(nick.clone(), sent);
                drop(t);
                if talkers.fetch_sub(1, Ordering::SeqCst) == 1 {
                    *clock.done_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                }
            }
            let _ = c.send_raw("</stream:stream>").await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let t = tally.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(t)
}
