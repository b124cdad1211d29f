//! What a directory host asks others: registrations, lookups, enrollments and authority records sent to a root (failing over to the next), referrals followed to a delegated zone's exchanges, and their answers.

use super::*;

impl State {
    /// The referral a root gives for a name in a delegated zone (not for the
    /// zone's own exchanges, whose records the root keeps as glue).
    pub(super) fn referral(&self, domain: &str) -> Option<Response> {
        let d = self.zone.delegation_for(domain)?;
        let Body::Delegation { exchanges } = &d.record.body else {
            return None;
        };
        if exchanges.iter().any(|e| e == domain) {
            return None;
        }
        Some(Response::Referral {
            delegation: d.clone(),
            exchanges: exchanges
                .iter()
                .filter_map(|e| self.zone.get(e).cloned())
                .collect(),
        })
    }

    /// Follows a referral: checks that a root signed the delegation and that
    /// it covers `domain`, learns where the exchanges listen, asks the first.
    pub(super) fn follow(
        &mut self,
        domain: String,
        ask: Delegated,
        delegation: &SignedRecord,
        exchanges: &[SignedRecord],
    ) {
        let valid = delegation.verify().is_ok()
            && self.zone.is_root_key(&delegation.record.key)
            && below(&domain, &delegation.record.domain);
        let named = match &delegation.record.body {
            Body::Delegation { exchanges } => exchanges.clone(),
            _ => Vec::new(),
        };
        let mut left = Vec::new();
        if valid {
            for x in exchanges {
                let Body::Cloud { peer_id, p2p, .. } = &x.record.body else {
                    continue;
                };
                if x.verify().is_err() || !named.contains(&x.record.domain) {
                    continue;
                }
                let Ok(peer) = peer_id.parse::<PeerId>() else {
                    continue;
                };
                for a in p2p.iter().filter_map(|a| a.parse::<Multiaddr>().ok()) {
                    self.swarm.add_peer_address(peer, a);
                }
                left.push(peer);
            }
        } else {
            tracing::warn!(%domain, "referral with a delegation no root signed; ignored");
        }
        self.ask_exchange(domain, ask, left);
    }

    /// Sends the request to the next exchange in `left`, or gives up.
    pub(super) fn ask_exchange(&mut self, domain: String, ask: Delegated, mut left: Vec<PeerId>) {
        if left.is_empty() {
            match ask {
                Delegated::Resolve(reply) => {
                    let _ = reply.send(Err(Unreachable));
                }
                Delegated::Register(_, reply) => {
                    let _ = reply.send(Err(Refusal::NoExchange(domain.clone())));
                }
            }
            return;
        }
        let p = left.remove(0);
        let req = match &ask {
            Delegated::Resolve(_) => Request::Resolve(domain.clone()),
            Delegated::Register(r, _) => Request::Register((**r).clone()),
        };
        let id = self.swarm.behaviour_mut().rr.send_request(&p, req);
        self.pending
            .insert(id, Pending::Delegated { domain, ask, left });
    }

    /// Sends `req` to a connected root not in `tried`: the request id and
    /// `tried` with that root added, or None when no root is left.
    pub(super) fn ask_root(
        &mut self,
        req: Request,
        mut tried: Vec<PeerId>,
    ) -> Option<(OutboundRequestId, Vec<PeerId>)> {
        let p = self.next_root(&tried)?;
        tried.push(p);
        Some((self.swarm.behaviour_mut().rr.send_request(&p, req), tried))
    }

    pub(super) fn send_register(
        &mut self,
        record: SignedRecord,
        reply: oneshot::Sender<Result<(), Refusal>>,
        tried: Vec<PeerId>,
    ) {
        match self.ask_root(Request::Register(record.clone()), tried) {
            None => {
                let _ = reply.send(Err(Refusal::NoRoot));
            }
            Some((id, tried)) => {
                let p = Pending::Register {
                    record,
                    reply,
                    tried,
                };
                self.pending.insert(id, p);
            }
        }
    }

    pub(super) fn send_resolve(
        &mut self,
        domain: String,
        reply: oneshot::Sender<Lookup>,
        tried: Vec<PeerId>,
        revocation: bool,
    ) {
        let req = if revocation {
            Request::Revocation(domain.clone())
        } else {
            Request::Resolve(domain.clone())
        };
        match self.ask_root(req, tried) {
            None => {
                let _ = reply.send(Err(Unreachable));
            }
            Some((id, tried)) => {
                let p = Pending::Resolve {
                    domain,
                    reply,
                    tried,
                    revocation,
                };
                self.pending.insert(id, p);
            }
        }
    }

    pub(super) fn send_enroll(
        &mut self,
        req: SignedEnrollment,
        reply: oneshot::Sender<Result<Enrolled, Refusal>>,
        tried: Vec<PeerId>,
    ) {
        match self.ask_root(Request::Enroll(req.clone()), tried) {
            None => {
                let _ = reply.send(Err(Refusal::NoRoot));
            }
            Some((id, tried)) => {
                self.pending
                    .insert(id, Pending::Enroll { req, reply, tried });
            }
        }
    }

    pub(super) fn send_authorities(
        &mut self,
        reply: oneshot::Sender<Vec<SignedRecord>>,
        tried: Vec<PeerId>,
    ) {
        match self.ask_root(Request::Authorities, tried) {
            None => {
                let _ = reply.send(Vec::new());
            }
            Some((id, tried)) => {
                self.pending
                    .insert(id, Pending::Authorities { reply, tried });
            }
        }
    }

    pub(super) fn response(&mut self, peer: PeerId, id: OutboundRequestId, resp: Response) {
        match (self.pending.remove(&id), resp) {
            (
                Some(Pending::Resolve {
                    domain,
                    reply,
                    revocation: false,
                    ..
                }),
                Response::Referral {
                    delegation,
                    exchanges,
                },
            ) => self.follow(domain, Delegated::Resolve(reply), &delegation, &exchanges),
            (
                Some(Pending::Register { record, reply, .. }),
                Response::Referral {
                    delegation,
                    exchanges,
                },
            ) => {
                let domain = record.record.domain.clone();
                self.follow(
                    domain,
                    Delegated::Register(Box::new(record), reply),
                    &delegation,
                    &exchanges,
                )
            }
            (
                Some(Pending::Delegated {
                    domain,
                    ask: Delegated::Resolve(reply),
                    left,
                }),
                Response::Record(r),
            ) => match r {
                Some(r) if r.record.domain == domain && r.verify().is_ok() => {
                    let ttl = Duration::from_secs(r.record.ttl as u64);
                    self.cache_record(domain, r.clone(), ttl);
                    let _ = reply.send(Ok(Some(r)));
                }
                Some(_) => {
                    tracing::warn!(%peer, %domain, "an exchange answered with a record that does not verify");
                    self.ask_exchange(domain, Delegated::Resolve(reply), left);
                }
                None => {
                    let _ = reply.send(Ok(None));
                }
            },
            (
                Some(Pending::Delegated {
                    domain,
                    ask: Delegated::Register(record, reply),
                    left,
                }),
                Response::Accepted,
            ) => {
                // The other exchanges of the zone get it too; the first answer decides.
                let _ = reply.send(Ok(()));
                for p in left {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .rr
                        .send_request(&p, Request::Register((*record).clone()));
                    self.pending.insert(id, Pending::Sync);
                }
                tracing::debug!(%domain, "registered with the zone's exchanges");
            }
            (
                Some(Pending::Delegated {
                    ask: Delegated::Register(_, reply),
                    ..
                }),
                Response::Refused(e),
            ) => {
                let _ = reply.send(Err(Refusal::Refused(e)));
            }
            (Some(Pending::Register { reply, .. }), Response::Accepted) => {
                let _ = reply.send(Ok(()));
            }
            (Some(Pending::Register { reply, .. }), Response::Refused(e)) => {
                let _ = reply.send(Err(Refusal::Refused(e)));
            }
            (
                Some(Pending::Resolve {
                    domain,
                    reply,
                    tried,
                    revocation,
                }),
                Response::Record(r),
            ) => match r {
                Some(r) if r.record.domain == domain && r.verify().is_ok() => {
                    if !revocation {
                        let ttl = Duration::from_secs(r.record.ttl as u64);
                        self.cache_record(domain, r.clone(), ttl);
                    }
                    let _ = reply.send(Ok(Some(r)));
                }
                Some(_) => {
                    tracing::warn!(%peer, %domain, "a root answered with a record that does not verify");
                    self.send_resolve(domain, reply, tried, revocation);
                }
                None => {
                    let _ = reply.send(Ok(None));
                }
            },
            (Some(p @ (Pending::Sync | Pending::Summary)), Response::Sync { records, digest }) => {
                let answered_summary = matches!(p, Pending::Summary);
                for r in records {
                    self.replicate(r);
                }
                let theirs = protocol::from_wire(&digest);
                let push = self.zone.missing_from(&theirs);
                if !push.is_empty() {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .rr
                        .send_request(&peer, Request::Push(push));
                    self.pending.insert(id, Pending::Sync);
                }
                // They hold records we lack: ask for them with our digest.
                let ours = self.zone.digest();
                if answered_summary && theirs.iter().any(|(k, h)| ours.get(k) != Some(h)) {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .rr
                        .send_request(&peer, Request::Digest(protocol::to_wire(&ours)));
                    self.pending.insert(id, Pending::Sync);
                }
            }
            (
                Some(Pending::Enroll { reply, .. }),
                Response::Enrolled {
                    chain_pem,
                    authorities,
                },
            ) => {
                let _ = reply.send(Ok(Enrolled::Issued {
                    chain_pem,
                    authorities,
                }));
            }
            (Some(Pending::Enroll { reply, .. }), Response::Pending(m)) => {
                let _ = reply.send(Ok(Enrolled::Pending(m)));
            }
            (Some(Pending::Enroll { reply, .. }), Response::Refused(m)) => {
                let _ = reply.send(Ok(Enrolled::Refused(m)));
            }
            (Some(Pending::Authorities { reply, .. }), Response::Records(rs)) => {
                let _ = reply.send(rs);
            }
            (Some(Pending::Waiting(reply)), Response::Enrollments(list)) => {
                let _ = reply.send(list);
            }
            _ => {}
        }
    }
}
