//! Presence churn in a scenario: demo users of some clouds come and go (explicit unavailable presence, dropped connections, new logins) while a subscribed watcher on another cloud follows them; the watcher's final view must match each one's last state, in order.

use crate::federation::Member;
use crate::net::Net;
use crate::xmpp::client::{Client, ClientError};
use crate::xmpp::codec::Event;
use crate::xmpp::stream::WireError;
use intercloud_actors::element::{Element, NS_CLIENT};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the watcher saw of one churning user.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Presence stanzas received from the user (after subscribing).
    pub received: u64,
    /// The user's available resources as the watcher sees them, with their status.
    pub available: BTreeMap<String, String>,
    /// Per resource, the highest "churn N" seen so far.
    high: BTreeMap<String, u64>,
    /// Changes that arrived after a later one of the same resource (later, earlier).
    pub out_of_order: Vec<(u64, u64)>,
    /// Presences whose `from` was not the user's.
    pub bad_from: Vec<String>,
}

/// A user's state as a watcher would show it: its available resources and their status.
pub type View = BTreeMap<String, String>;

/// The outcome of one churn step.
#[derive(Clone, Debug, Default)]
pub struct ChurnTally {
    /// Presence changes made, over all users.
    pub changes: u64,
    /// Per user (bare JID): its state after its last change, and what the watcher saw.
    pub users: BTreeMap<String, (View, Seen)>,
    /// Time from the last change until the watcher's view matched everyone's
    /// last state (None: it never did within the limit).
    pub settled_after: Option<Duration>,
}

impl ChurnTally {
    /// Users whose last state the watcher does not show.
    pub fn wrong(&self) -> Vec<String> {
        self.users
            .iter()
            .filter(|(_, (want, seen))| &seen.available != want)
            .map(|(u, (want, seen))| {
                format!(
                    "{u}: last state {}, watcher shows {}",
                    state(want),
                    state(&seen.available)
                )
            })
            .collect()
    }
}

fn state(v: &View) -> String {
    if v.is_empty() {
        return "unavailable".into();
    }
    let parts: Vec<String> = v.iter().map(|(r, s)| format!("/{r} {s:?}")).collect();
    format!("available {}", parts.join(", "))
}

use crate::scenario::traffic::demo_login as login;

fn bare(m: &Member) -> String {
    format!("{}@{}", m.demo_user, m.domain)
}

fn seq_of(status: &str) -> Option<u64> {
    status.strip_prefix("churn ")?.parse().ok()
}

/// Reads what is waiting on the watcher's stream for up to `wait`,
/// answering subscription requests and recording presences of `users`.
async fn drain(
    w: &mut Client,
    users: &[String],
    seen: &mut BTreeMap<String, Seen>,
    wait: Duration,
) -> Result<(), String> {
    let until = Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match w.next(left).await {
            Ok(Event::Stanza(e)) if e.name == "presence" => record(&e, users, seen),
            Ok(Event::Stanza(_)) => {}
            Ok(other) => return Err(format!("watcher's stream ended: {other:?}")),
            Err(ClientError::Wire(WireError::Timeout)) => return Ok(()),
            Err(e) => return Err(format!("watcher: {e}")),
        }
    }
}

fn record(e: &Element, users: &[String], seen: &mut BTreeMap<String, Seen>) {
    let from = e.get_attr("from").unwrap_or("");
    let from_bare = from.split('/').next().unwrap_or("");
    let Some(user) = users.iter().find(|u| u.as_str() == from_bare) else {
        return;
    };
    let s = seen.entry(user.clone()).or_default();
    let kind = e.get_attr("type");
    if matches!(
        kind,
        Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" | "probe")
    ) {
        return;
    }
    let Some(resource) = from.strip_prefix(&format!("{user}/")) else {
        s.bad_from.push(from.to_string());
        return;
    };
    s.received += 1;
    let status = e.child_text("status", NS_CLIENT).unwrap_or_default();
    if let Some(n) = seq_of(&status) {
        let high = s.high.entry(resource.to_string()).or_insert(0);
        if n < *high {
            s.out_of_order.push((*high, n));
        }
        *high = n.max(*high);
    }
    match kind {
        Some("unavailable") => {
            s.available.remove(resource);
        }
        None => {
            s.available.insert(resource.to_string(), status);
        }
        Some(_) => {}
    }
}

/// Runs the churn: `watcher`'s demo user subscribes to each of `churners`'
/// demo users, which then change presence `flips` times each at `rate` per
/// second — odd changes go offline (alternately an unavailable presence and
/// a dropped connection), even ones come back available with the status
/// "churn N" — and the watcher must end up showing everyone's last state
/// within `within`.
pub async fn run(
    net: &Net,
    watcher: &Member,
    churners: &[Member],
    flips: u64,
    rate: f64,
    within: Duration,
) -> Result<ChurnTally, String> {
    let users: Vec<String> = churners.iter().map(bare).collect();
    let mut w = login(net, watcher, "watch").await?;
    w.send_raw("<presence/>").await.map_err(|e| e.to_string())?;
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    let mut clients: Vec<Option<Client>> = Vec::new();
    for m in churners {
        let mut c = login(net, m, "churn-0").await?;
        c.send_raw("<presence><status>churn 0</status></presence>")
            .await
            .map_err(|e| e.to_string())?;
        clients.push(Some(c));
    }
    for u in &users {
        w.send_raw(&format!("<presence type='subscribe' to='{u}'/>"))
            .await
            .map_err(|e| e.to_string())?;
    }
    // Each churner approves the request when it comes (when the watcher is
    // subscribed already, the server answers for it and none comes); the
    // watcher is ready once it has seen every one of them available.
    let ready = |seen: &BTreeMap<String, Seen>| {
        users
            .iter()
            .all(|u| seen.get(u).is_some_and(|s| !s.available.is_empty()))
    };
    let start = Instant::now();
    while start.elapsed() < within && !ready(&seen) {
        for c in clients.iter_mut().flatten() {
            match c.next(Duration::from_millis(20)).await {
                Ok(Event::Stanza(e))
                    if e.name == "presence" && e.get_attr("type") == Some("subscribe") =>
                {
                    let asker = e.get_attr("from").unwrap_or("").to_string();
                    c.send_raw(&format!("<presence type='subscribed' to='{asker}'/>"))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(Event::Stanza(_)) | Err(ClientError::Wire(WireError::Timeout)) => {}
                Ok(other) => return Err(format!("a churner's stream ended: {other:?}")),
                Err(e) => return Err(format!("churner: {e}")),
            }
        }
        drain(&mut w, &users, &mut seen, Duration::from_millis(50)).await?;
    }
    if let Some(u) = users
        .iter()
        .find(|u| seen.get(*u).is_none_or(|s| s.available.is_empty()))
    {
        return Err(format!(
            "the watcher never saw {u} available within {} s of subscribing",
            within.as_secs()
        ));
    }
    // Counting starts now; the view carries on.
    for s in seen.values_mut() {
        s.received = 0;
    }

    let mut tally = ChurnTally::default();
    // Each login gets a resource of its own (churn-K), so a dropped
    // connection's unavailable presence and the next login's available one
    // are about different resources and may arrive in either order.
    let mut logins: Vec<u64> = vec![0; churners.len()];
    let mut last: Vec<View> =
        vec![View::from([("churn-0".into(), "churn 0".into())]); churners.len()];
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut tick = tokio::time::interval(gap);
    for n in 1..=flips {
        tick.tick().await;
        for (i, m) in churners.iter().enumerate() {
            if n % 2 == 1 {
                // Offline: every other time the connection just drops.
                let c = clients[i].take();
                if let Some(mut c) = c {
                    if n % 4 == 1 {
                        let _ = c
                            .send_raw(&format!(
                                "<presence type='unavailable'><status>churn {n}</status></presence>"
                            ))
                            .await;
                        clients[i] = Some(c);
                    } else {
                        drop(c);
                    }
                }
                last[i] = View::new();
            } else {
                let mut c = match clients[i].take() {
                    Some(c) => c,
                    None => {
                        logins[i] += 1;
                        login(net, m, &format!("churn-{}", logins[i])).await?
                    }
                };
                c.send_raw(&format!("<presence><status>churn {n}</status></presence>"))
                    .await
                    .map_err(|e| e.to_string())?;
                clients[i] = Some(c);
                last[i] = View::from([(format!("churn-{}", logins[i]), format!("churn {n}"))]);
            }
            tally.changes += 1;
        }
        drain(&mut w, &users, &mut seen, Duration::ZERO).await?;
    }
    let done = Instant::now();
    let matches = |seen: &BTreeMap<String, Seen>| {
        users
            .iter()
            .zip(&last)
            .all(|(u, want)| seen.get(u).map(|s| &s.available) == Some(want))
    };
    while done.elapsed() < within && !matches(&seen) {
        drain(&mut w, &users, &mut seen, Duration::from_millis(100)).await?;
    }
    if matches(&seen) {
        tally.settled_after = Some(done.elapsed());
        // Anything still in flight would show up now.
        drain(&mut w, &users, &mut seen, Duration::from_millis(300)).await?;
    }
    for ((u, want), c) in users.iter().zip(last).zip(clients) {
        tally
            .users
            .insert(u.clone(), (want, seen.remove(u).unwrap_or_default()));
        drop(c);
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(from: &str, kind: Option<&str>, status: &str) -> Element {
        let mut e = Element::new("presence", NS_CLIENT).attr("from", from);
        if let Some(k) = kind {
            e.set_attr("type", k);
        }
        if !status.is_empty() {
            e = e.child(Element::new("status", NS_CLIENT).text(status));
        }
        e
    }

    fn tally(user: &str, want: View, seen: Seen) -> ChurnTally {
        ChurnTally {
            users: BTreeMap::from([(user.to_string(), (want, seen))]),
            ..ChurnTally::default()
        }
    }

    #[test]
    fn the_view_follows_resources_and_flags_what_is_wrong() {
        let u = "demo@cloud2.test".to_string();
        let users = vec![u.clone()];
        let mut seen = BTreeMap::new();
        for e in [
            presence("demo@cloud2.test/churn-0", None, "churn 2"),
            // A dropped connection's unavailable, and the next login's
            // available, about two resources.
            presence("demo@cloud2.test/churn-1", None, "churn 4"),
            presence("demo@cloud2.test/churn-0", Some("unavailable"), ""),
            presence("demo@cloud3.test/x", None, "churn 9"),
            presence("demo@cloud2.test", None, "spoofed? no resource"),
            presence("demo@cloud2.test/churn-1", Some("subscribed"), ""),
        ] {
            record(&e, &users, &mut seen);
        }
        let s = seen.get(&u).unwrap().clone();
        assert_eq!(s.received, 3);
        assert_eq!(
            s.available,
            View::from([("churn-1".to_string(), "churn 4".to_string())])
        );
        assert_eq!(s.bad_from, vec!["demo@cloud2.test".to_string()]);
        assert!(s.out_of_order.is_empty());
        let right = View::from([("churn-1".to_string(), "churn 4".to_string())]);
        assert!(tally(&u, right, s.clone()).wrong().is_empty());
        let w = tally(&u, View::new(), s.clone()).wrong();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("last state unavailable"), "{w:?}");

        // A change of one resource arriving after a later one.
        record(
            &presence("demo@cloud2.test/churn-1", None, "churn 3"),
            &users,
            &mut seen,
        );
        assert_eq!(seen[&u].out_of_order, vec![(4, 3)]);
    }
}
