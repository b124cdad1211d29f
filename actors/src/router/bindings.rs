//! The router's table of bound sessions: binding and unbinding resources (with the per-account limit), availability and priority, detached sessions waiting for resumption, and offline messages delivered on binding.

use super::*;

impl Router {
    /// Marks a session detached or attached, keeping the gauge in step.
    pub(super) fn set_detached(&mut self, full: &Jid, session: &Addr<Session>, on: bool) {
        let Some(res) = full.resource() else {
            return;
        };
        let Some(e) = self
            .sessions
            .get_mut(&full.to_bare())
            .and_then(|m| m.get_mut(res))
            .filter(|e| e.addr == *session)
        else {
            return;
        };
        use std::sync::atomic::Ordering::Relaxed;
        match (e.detached.is_some(), on) {
            (false, true) => {
                e.detached = Some(std::time::Instant::now());
                self.detached.fetch_add(1, Relaxed);
            }
            (true, false) => {
                e.detached = None;
                self.detached.fetch_sub(1, Relaxed);
            }
            _ => {}
        }
        report_detached(&self.metrics, &self.detached);
    }

    /// Ends a detached session and forgets it at once (its own unbind then
    /// finds nothing): the one of `bare` detached longest, or of anyone.
    pub(super) fn end_oldest_detached(&mut self, bare: Option<&Jid>) -> bool {
        let oldest = self
            .sessions
            .iter()
            .filter(|(b, _)| bare.is_none_or(|x| x == *b))
            .flat_map(|(b, m)| m.iter().map(move |(r, e)| (b, r, e)))
            .filter_map(|(b, r, e)| e.detached.map(|t| (t, b.clone(), r.clone())))
            .min_by_key(|(t, _, _)| *t);
        let Some((_, b, r)) = oldest else {
            return false;
        };
        let Some(m) = self.sessions.get_mut(&b) else {
            return false;
        };
        let Some(e) = m.remove(&r) else {
            return false;
        };
        if m.is_empty() {
            self.sessions.remove(&b);
        }
        self.metrics.c2s_sessions.dec();
        self.detached
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        report_detached(&self.metrics, &self.detached);
        tracing::info!(account = %b, resource = %r, "ending a detached session to make room");
        e.addr.do_send(Kick {
            condition: "policy-violation",
            text: Some("too many sessions".into()),
        });
        if let Ok(full) = b.with_resource(&r) {
            self.presence.do_send(ResourceGone { full });
        }
        true
    }
}

impl Router {
    pub(super) fn deliver_offline(&mut self, full: &Jid) {
        let bare = full.to_bare().to_string();
        let msgs = match self.store.offline(&bare) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "offline read failed");
                return;
            }
        };
        if msgs.is_empty() {
            return;
        }
        let Some(entry) = full
            .resource()
            .and_then(|r| self.sessions.get(&full.to_bare())?.get(r))
        else {
            return;
        };
        let mut delivered = Vec::new();
        for m in msgs {
            let xml = offline::stamp_serialized(&m.xml, &self.settings.domain, &m.stamp);
            entry.addr.do_send(DeliverRaw { xml, stored: m.xml });
            delivered.push(m.id);
        }
        tracing::debug!(to = %full, n = delivered.len(), "offline messages delivered");
        if let Err(e) = self.store.delete_offline(&delivered) {
            tracing::error!(error = %e, "offline delete failed");
        }
    }
}

/// Copies the count of detached sessions to the metrics.
fn report_detached(metrics: &crate::metrics::Metrics, detached: &std::sync::atomic::AtomicUsize) {
    metrics
        .c2s_sessions_detached
        .set(detached.load(std::sync::atomic::Ordering::Relaxed) as i64);
}

impl Handler<Bind> for Router {
    type Result = Result<Jid, BindError>;
    fn handle(&mut self, msg: Bind, _: &mut Context<Self>) -> Self::Result {
        let resource = match msg.resource {
            Some(r) => r,
            None => format!("ic-{:016x}", rand::random::<u64>()),
        };
        let full = msg
            .bare
            .with_resource(&resource)
            .map_err(|_| BindError::BadRequest)?;
        let replaces = self
            .sessions
            .get(&msg.bare)
            .is_some_and(|m| m.contains_key(&resource));
        let count = self.sessions.get(&msg.bare).map_or(0, HashMap::len);
        if !replaces
            && count >= self.settings.max_sessions_per_account
            && !self.end_oldest_detached(Some(&msg.bare))
        {
            tracing::warn!(account = %msg.bare, count, "session limit of the account reached");
            return Err(BindError::ResourceConstraint);
        }
        let map = self.sessions.entry(msg.bare.clone()).or_default();
        if let Some(old) = map.remove(&resource) {
            self.metrics.c2s_sessions.dec();
            if old.detached.is_some() {
                self.detached
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                report_detached(&self.metrics, &self.detached);
            }
            // RFC 6120 §7.7.2.2: the new session wins; the old one is told why it ends.
            tracing::info!(jid = %full, "resource conflict: replacing the older session");
            old.addr.do_send(Kick {
                condition: "conflict",
                text: Some("replaced by a new session".into()),
            });
            self.presence.do_send(ResourceGone { full: full.clone() });
        }
        self.metrics.c2s_sessions.inc();
        map.insert(
            resource,
            Entry {
                addr: msg.session,
                priority: None,
                interested: false,
                detached: None,
            },
        );
        Ok(full)
    }
}

impl Handler<Unbind> for Router {
    type Result = ();
    fn handle(&mut self, msg: Unbind, _: &mut Context<Self>) {
        let bare = msg.full.to_bare();
        let Some(res) = msg.full.resource() else {
            return;
        };
        if let Some(map) = self.sessions.get_mut(&bare) {
            if map.get(res).map(|e| e.addr == msg.session).unwrap_or(false) {
                self.metrics.c2s_sessions.dec();
                if map.remove(res).is_some_and(|e| e.detached.is_some()) {
                    self.detached
                        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    report_detached(&self.metrics, &self.detached);
                }
                if map.is_empty() {
                    self.sessions.remove(&bare);
                }
                self.presence.do_send(ResourceGone { full: msg.full });
            }
        }
    }
}

impl Handler<SetPresence> for Router {
    type Result = ();
    fn handle(&mut self, msg: SetPresence, _: &mut Context<Self>) {
        let Some(res) = msg.full.resource() else {
            return;
        };
        let was = match self
            .sessions
            .get_mut(&msg.full.to_bare())
            .and_then(|m| m.get_mut(res))
        {
            Some(e) => std::mem::replace(&mut e.priority, msg.priority),
            None => return,
        };
        let now_ok = msg.priority.map(|p| p >= 0).unwrap_or(false);
        let was_ok = was.map(|p| p >= 0).unwrap_or(false);
        if now_ok && !was_ok {
            self.deliver_offline(&msg.full);
        }
    }
}

impl Handler<Detached> for Router {
    type Result = ();
    fn handle(&mut self, msg: Detached, _: &mut Context<Self>) {
        self.set_detached(&msg.full, &msg.session, true);
    }
}

impl Handler<Attached> for Router {
    type Result = ();
    fn handle(&mut self, msg: Attached, _: &mut Context<Self>) {
        self.set_detached(&msg.full, &msg.session, false);
    }
}

impl Handler<EndOldestDetached> for Router {
    type Result = bool;
    fn handle(&mut self, _: EndOldestDetached, _: &mut Context<Self>) -> bool {
        self.end_oldest_detached(None)
    }
}
