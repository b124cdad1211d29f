//! Presence of other domains for the presence actor: which remote contacts are available (bounded by max_remote_presences), and what a domain going down or coming back means for them.

use super::*;

/// Remote presences tracked now (tests, status).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountRemote;

impl Handler<CountRemote> for Presence {
    type Result = usize;
    fn handle(&mut self, _: CountRemote, _: &mut Context<Self>) -> usize {
        self.remote_pairs
    }
}

impl Presence {
    pub(super) fn track_remote(&mut self, from: &Jid, local: &Jid, available: bool) {
        if available {
            if self.remote_pairs >= self.settings.max_remote_presences {
                if let Some(held_back) = REMOTE_FULL.allow() {
                    tracing::warn!(%from, pairs = self.remote_pairs, held_back, "remote presences at their bound: not tracked");
                }
                return;
            }
            let d = self.remote.entry(from.domain().to_string()).or_default();
            if d.entry(from.clone()).or_default().insert(local.clone()) {
                self.remote_pairs += 1;
            }
        } else if let Some(d) = self.remote.get_mut(from.domain()) {
            if let Some(seen) = d.get_mut(from) {
                if seen.remove(local) {
                    self.remote_pairs -= 1;
                }
                if seen.is_empty() {
                    d.remove(from);
                }
            }
            if d.is_empty() {
                self.remote.remove(from.domain());
            }
        }
    }

    /// The link with `domain` died: everyone there is unavailable to us now
    /// (they announce themselves again when the link comes back).
    pub(super) fn domain_down(&mut self, domain: &str) {
        let Some(seen) = self.remote.remove(domain) else {
            return;
        };
        tracing::info!(%domain, resources = seen.len(), "link down: remote contacts now unavailable");
        let mut lost = self.lost.remove(domain).unwrap_or_default();
        for (remote, locals) in seen {
            for local in locals {
                self.remote_pairs -= 1;
                let p = presence(Some("unavailable"), &remote, &local);
                if lost.len() < self.settings.max_remote_presences {
                    lost.insert((local.clone(), remote.to_bare()));
                }
                self.to_available(&local, &p);
            }
        }
        self.lost.insert(domain.to_string(), lost);
    }

    /// The domain is reachable again: each local account still online asks
    /// (RFC 6121 §4.3 probe) for the presence its broken link took away —
    /// otherwise nothing would tell it the contact is still there.
    pub(super) fn domain_up(&mut self, domain: &str) {
        let Some(lost) = self.lost.remove(domain) else {
            return;
        };
        tracing::info!(%domain, contacts = lost.len(), "link up again: probing contacts");
        for (local, remote) in lost {
            if !self.online.contains_key(&local) {
                continue;
            }
            if self
                .item(&local, &remote)
                .is_some_and(|i| i.subscription.has_to())
            {
                self.route(presence(Some("probe"), &local, &remote));
            }
        }
    }
}

impl Handler<DomainUp> for Presence {
    type Result = ();
    fn handle(&mut self, m: DomainUp, _: &mut Context<Self>) {
        self.domain_up(&m.0);
    }
}

impl Handler<DomainDown> for Presence {
    type Result = ();
    fn handle(&mut self, m: DomainDown, _: &mut Context<Self>) {
        self.domain_down(&m.0);
    }
}
