//! The negotiation actor's timers and outgoing proposals: retransmission and deadlines on the injected clock, new proposals, and proposals held for offline peers (kept across restarts).

use super::*;

impl Negotiation {
    /// Resends what waits for an answer; gives up past the deadline.
    pub(super) fn tick(&mut self) {
        let now = self.settings.clock.now();
        let mut expired = Vec::new();
        let mut resend = Vec::new();
        for (k, o) in self.open.iter_mut() {
            let Some(d) = o.deadline else {
                // Held for an offline peer: sent again now and then as well as
                // when its presence comes back (a presence can race a link
                // that is still failing).
                if now >= o.next_send {
                    o.next_send = now + self.settings.timeout;
                    resend.push((o.peer.clone(), o.last.clone()));
                }
                continue;
            };
            if now >= d {
                expired.push(k.clone());
            } else if now >= o.next_send {
                o.next_send = now + self.settings.retransmit;
                resend.push((o.peer.clone(), o.last.clone()));
            }
        }
        for (peer, p) in resend {
            tracing::debug!(%peer, id = %p.id, step = p.step.as_str(), "retransmitting");
            self.send(&peer, &p);
        }
        let me = self.me();
        for k in expired {
            let Some(o) = self.open.get_mut(&k) else {
                continue;
            };
            let (step, why) = match o.role {
                Role::Consumer => (Step::Cancel, "no answer in time"),
                Role::Provider => (Step::Reject, "expired: no confirmation in time"),
            };
            let p = Payload {
                id: k.1.clone(),
                step,
                terms: None,
                reason: Some(why.into()),
            };
            o.lines.push(Self::line(true, &o.peer.clone(), &p, &me));
            o.last = p.clone();
            let peer = o.peer.clone();
            self.send(&peer, &p);
            tracing::info!(%peer, id = %k.1, "negotiation timed out");
            self.finish(&k, Verdict::TimedOut);
        }
    }

    pub(super) fn new_id(&mut self) -> String {
        self.next += 1;
        format!(
            "n-{}-{:08x}-{}",
            self.me().domain(),
            rand::random::<u32>(),
            self.next
        )
    }

    /// Sends a proposal; the outcome comes on the returned channel.
    pub(super) fn propose(
        &mut self,
        peer: Jid,
        terms: Terms,
        min_amount: u64,
        offline: bool,
    ) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        let id = self.new_id();
        let p = Payload {
            id: id.clone(),
            step: Step::Propose,
            terms: Some(terms.clone()),
            reason: None,
        };
        let me = self.me();
        let now = self.settings.clock.now();
        let mut lines = vec![Self::line(true, &peer, &p, &me)];
        if offline {
            let held = serde_json::json!({ "terms": terms, "min_amount": min_amount }).to_string();
            if let Err(e) = self
                .store
                .put_outbox(&id, &peer.to_string(), &held, now_secs())
            {
                tracing::error!(error = %e, "outbox write failed");
            }
            lines.push(format!(
                "   (left offline: {peer}'s server keeps it if it is up (XEP-0160); {} keeps it and sends it again when {peer} is available)",
                me.domain()
            ));
        }
        self.send(&peer, &p);
        let key: Key = (peer.to_bare().to_string(), id.clone());
        self.open.insert(
            key,
            Open {
                role: Role::Consumer,
                peer: peer.clone(),
                terms,
                state: State::Proposed,
                last: p,
                deadline: (!offline).then(|| now + self.settings.timeout),
                next_send: now + self.settings.retransmit,
                reserved: 0,
                min_amount,
                waiter: None,
                lines: lines.clone(),
            },
        );
        if offline {
            let _ = tx.send(Outcome {
                peer: peer.to_string(),
                id,
                result: Verdict::Offline,
                lines,
            });
        } else if let Some(o) = self.open.get_mut(&(peer.to_bare().to_string(), id)) {
            o.waiter = Some(tx);
        }
        rx
    }

    /// Proposals held for peers that were offline, from the store (after a restart).
    pub(super) fn reload_outbox(&mut self) {
        let me = self.me();
        for (id, peer, held, _) in self.store.outbox().unwrap_or_default() {
            let Ok(peer_jid) = peer.parse::<Jid>() else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&held) else {
                continue;
            };
            let Ok(terms) = serde_json::from_value::<Terms>(v["terms"].clone()) else {
                continue;
            };
            let min_amount = v["min_amount"].as_u64().unwrap_or(terms.amount);
            let p = Payload {
                id: id.clone(),
                step: Step::Propose,
                terms: Some(terms.clone()),
                reason: None,
            };
            let now = self.settings.clock.now();
            self.open.insert(
                (peer.clone(), id.clone()),
                Open {
                    role: Role::Consumer,
                    peer: peer_jid.clone(),
                    terms: terms.clone(),
                    state: State::Proposed,
                    last: p.clone(),
                    deadline: None,
                    next_send: now,
                    reserved: 0,
                    min_amount,
                    waiter: None,
                    lines: vec![Self::line(true, &peer_jid, &p, &me)],
                },
            );
            self.gw.send_invite(&peer_jid);
            tracing::info!(%peer, %id, "held proposal reloaded");
        }
    }

    /// A peer came online: what waits for it goes now.
    pub(super) fn peer_available(&mut self, peer: &Jid) {
        let bare = peer.to_bare().to_string();
        let held: Vec<(Jid, Payload)> = self
            .open
            .iter()
            .filter(|((p, _), o)| *p == bare && o.deadline.is_none())
            .map(|(_, o)| (o.peer.clone(), o.last.clone()))
            .collect();
        for (to, p) in held {
            tracing::info!(peer = %to, id = %p.id, "peer is back: sending the held proposal");
            self.send(&to, &p);
        }
    }
}
