//! The negotiation dialog's answers: what a gateway does with each step it receives (propose, counter, accept, reject, confirm, cancel), replays of closed negotiations, and bounces from unreachable peers.

use super::*;

impl Negotiation {
    pub(super) fn inbound(&mut self, msg: InboundMessage) {
        if msg.message_type == MessageType::Error {
            return self.bounced(msg);
        }
        let p = match Payload::parse(&msg.stanza) {
            Ok(p) => p,
            Err(protocol::ProtocolError::Missing) => return,
            Err(e) => return self.refuse(&msg, &e.to_string()),
        };
        let peer = msg.from.to_bare();
        let key: Key = (peer.to_string(), p.id.clone());
        let me = self.me();
        if p.step == Step::Propose {
            return self.proposal(msg, key, p);
        }
        let Some(o) = self.open.get_mut(&key) else {
            // Not open: a replay of something already settled, or unknown.
            return match (p.step, self.closed.get(&key).cloned(), self.agreement(&key)) {
                (Step::Accept, Some(last), _) if last.step == Step::Confirm => {
                    tracing::info!(%peer, id = %p.id, "replayed accept: confirm sent again");
                    self.send(&msg.from, &last);
                }
                (Step::Accept, _, Some(a)) if a.role == "consumer" => {
                    let confirm = Payload {
                        id: a.id.clone(),
                        step: Step::Confirm,
                        terms: Some(Terms {
                            service: a.service,
                            protocol: a.protocol,
                            transport: a.transport,
                            amount: a.amount,
                            unit: a.unit,
                            duration_secs: a.duration_secs,
                            terms: a.terms,
                        }),
                        reason: None,
                    };
                    self.send(&msg.from, &confirm);
                }
                (Step::Confirm, _, Some(_)) => {
                    tracing::debug!(%peer, id = %p.id, "duplicate confirm");
                }
                (Step::Reject | Step::Cancel, Some(_), _) => {}
                _ => self.refuse(&msg, "no such negotiation with this peer"),
            };
        };
        o.lines.push(Self::line(false, &msg.from, &p, &me));
        let role = o.role;
        let state = o.state;
        match (role, state, p.step) {
            (Role::Consumer, State::Proposed, Step::Accept) => {
                let terms = o.terms.clone();
                let confirm = Payload {
                    id: p.id.clone(),
                    step: Step::Confirm,
                    terms: Some(terms.clone()),
                    reason: None,
                };
                o.lines.push(Self::line(true, &msg.from, &confirm, &me));
                o.last = confirm.clone();
                self.send(&msg.from, &confirm);
                match self.agree(&key, Role::Consumer, &terms) {
                    Some(a) => self.finish(&key, Verdict::Agreed(a)),
                    None => self.finish(&key, Verdict::Rejected("local storage failed".into())),
                }
            }
            (Role::Consumer, State::Proposed, Step::Counter) => {
                let Some(t) = p.terms.clone() else { return };
                let same = t.service.eq_ignore_ascii_case(&o.terms.service)
                    && t.protocol.eq_ignore_ascii_case(&o.terms.protocol)
                    && t.transport.eq_ignore_ascii_case(&o.terms.transport);
                if same && t.amount >= o.min_amount && t.amount <= o.terms.amount {
                    let accept = Payload {
                        id: p.id.clone(),
                        step: Step::Accept,
                        terms: Some(t.clone()),
                        reason: None,
                    };
                    o.lines.push(Self::line(true, &msg.from, &accept, &me));
                    o.terms = t;
                    o.state = State::AcceptedCounter;
                    o.last = accept.clone();
                    o.deadline = Some(self.settings.clock.now() + self.settings.timeout);
                    o.next_send = self.settings.clock.now() + self.settings.retransmit;
                    self.send(&msg.from, &accept);
                } else {
                    let reject = Payload {
                        id: p.id.clone(),
                        step: Step::Reject,
                        terms: None,
                        reason: Some(format!(
                            "the counter-offer ({} {}) is below what we need",
                            t.amount, t.unit
                        )),
                    };
                    o.lines.push(Self::line(true, &msg.from, &reject, &me));
                    o.last = reject.clone();
                    self.send(&msg.from, &reject);
                    self.finish(
                        &key,
                        Verdict::Rejected(format!(
                            "counter-offer of {} {} refused",
                            t.amount, t.unit
                        )),
                    );
                }
            }
            (Role::Consumer, State::AcceptedCounter, Step::Confirm) => {
                let terms = o.terms.clone();
                match self.agree(&key, Role::Consumer, &terms) {
                    Some(a) => self.finish(&key, Verdict::Agreed(a)),
                    None => self.finish(&key, Verdict::Rejected("local storage failed".into())),
                }
            }
            (Role::Consumer, _, Step::Reject | Step::Cancel) => {
                let why = p.reason.clone().unwrap_or_else(|| "rejected".into());
                self.finish(&key, Verdict::Rejected(why));
            }
            (Role::Provider, State::Accepted, Step::Confirm) => {
                let terms = o.terms.clone();
                let reserved = std::mem::take(&mut o.reserved);
                self.release(&terms.service, reserved);
                match self.agree(&key, Role::Provider, &terms) {
                    Some(a) => {
                        *self
                            .committed
                            .entry(terms.service.to_ascii_lowercase())
                            .or_default() += terms.amount;
                        self.finish(&key, Verdict::Agreed(a));
                    }
                    None => self.finish(&key, Verdict::Rejected("local storage failed".into())),
                }
                self.announce();
            }
            (Role::Provider, State::Countered, Step::Accept) => {
                let terms = o.terms.clone();
                // They accept what we offered, not something else.
                if p.terms.as_ref().map(|t| t.amount) != Some(terms.amount) {
                    return self.refuse(&msg, "accept does not match the counter-offer");
                }
                let confirm = Payload {
                    id: p.id.clone(),
                    step: Step::Confirm,
                    terms: Some(terms.clone()),
                    reason: None,
                };
                o.lines.push(Self::line(true, &msg.from, &confirm, &me));
                o.last = confirm.clone();
                let reserved = std::mem::take(&mut o.reserved);
                self.release(&terms.service, reserved);
                self.send(&msg.from, &confirm);
                if let Some(a) = self.agree(&key, Role::Provider, &terms) {
                    *self
                        .committed
                        .entry(terms.service.to_ascii_lowercase())
                        .or_default() += terms.amount;
                    self.finish(&key, Verdict::Agreed(a));
                }
                self.announce();
            }
            (Role::Provider, _, Step::Reject | Step::Cancel) => {
                let why = p.reason.clone().unwrap_or_else(|| "cancelled".into());
                self.finish(&key, Verdict::Rejected(why));
            }
            (_, _, step) => {
                if let Some(o) = self.open.get_mut(&key) {
                    o.lines.pop();
                }
                tracing::warn!(%peer, id = %p.id, step = step.as_str(), ?state, "negotiation step out of order");
                self.refuse(&msg, "step out of order");
            }
        }
    }

    /// A propose: a retransmission gets the same answer; a new one is decided by policy and capacity.
    pub(super) fn proposal(&mut self, msg: InboundMessage, key: Key, p: Payload) {
        if let Some(o) = self.open.get(&key) {
            tracing::debug!(peer = %key.0, id = %key.1, "retransmitted propose: same answer");
            if o.role == Role::Provider {
                let last = o.last.clone();
                self.send(&msg.from, &last);
            }
            return;
        }
        if let Some(last) = self.closed.get(&key).cloned() {
            return self.send(&msg.from, &last);
        }
        let me = self.me();
        let Some(terms) = p.terms.clone() else { return };
        if let Some(a) = self.agreement(&key) {
            // Settled already (e.g. the offline copy arrived after the resent one).
            let accept = Payload {
                id: a.id,
                step: Step::Accept,
                terms: Some(terms),
                reason: None,
            };
            return self.send(&msg.from, &accept);
        }
        let peer = msg.from.to_bare();
        let decision = if self.open.len() >= self.settings.max_open {
            Decision::Reject("too many open negotiations; try later".into())
        } else {
            self.settings
                .policy
                .decide(peer.domain(), &terms, self.free(&terms.service))
        };
        let now = self.settings.clock.now();
        let mut lines = vec![Self::line(false, &msg.from, &p, &me)];
        let (reply, state, reserved, t) = match decision {
            Decision::Accept => (Step::Accept, State::Accepted, terms.amount, terms.clone()),
            Decision::Counter(n) => {
                let t = Terms {
                    amount: n,
                    ..terms.clone()
                };
                (Step::Counter, State::Countered, n, t)
            }
            Decision::Reject(why) => {
                let reject = Payload {
                    id: p.id.clone(),
                    step: Step::Reject,
                    terms: None,
                    reason: Some(why.clone()),
                };
                tracing::info!(%peer, id = %p.id, why, "proposal rejected");
                self.send(&msg.from, &reject);
                self.remember_closed(key, reject);
                return;
            }
        };
        let answer = Payload {
            id: p.id.clone(),
            step: reply,
            terms: Some(t.clone()),
            reason: None,
        };
        lines.push(Self::line(true, &msg.from, &answer, &me));
        self.reserve(&t.service, reserved);
        tracing::info!(%peer, id = %p.id, step = reply.as_str(), amount = t.amount, "proposal answered");
        self.send(&msg.from, &answer);
        self.open.insert(
            key,
            Open {
                role: Role::Provider,
                peer: msg.from.clone(),
                terms: t,
                state,
                last: answer,
                deadline: Some(now + self.settings.timeout),
                next_send: now + self.settings.retransmit,
                reserved,
                min_amount: 0,
                waiter: None,
                lines,
            },
        );
        self.announce();
    }

    /// A bounce of one of our negotiation messages.
    pub(super) fn bounced(&mut self, msg: InboundMessage) {
        let Some(n) = msg.stanza.get_child("negotiation", NS_NEGOTIATION) else {
            return;
        };
        let id = n.get_attr("id").unwrap_or("").to_string();
        let key: Key = (msg.from.to_bare().to_string(), id);
        let cond = msg.error_condition().unwrap_or_else(|| "error".into());
        let Some(o) = self.open.get_mut(&key) else {
            return;
        };
        o.lines.push(format!("← {} error: {cond}", msg.from));
        if o.deadline.is_none() {
            // Waiting for an offline peer: it stays held, and goes again when the peer is back.
            tracing::info!(peer = %key.0, id = %key.1, cond, "held for an offline peer");
            return;
        }
        if o.role == Role::Consumer {
            self.finish(&key, Verdict::Unreachable(cond));
        }
    }
}
