//! What a directory host answers: swarm events, peers' requests (register, resolve, sync, enroll) and, on a root, the trust authority's decision on an enrollment.

use super::*;

impl State {
    /// The trust authority's answer to an enrollment request.
    pub(super) fn enroll(&mut self, req: SignedEnrollment) -> Response {
        let r = self.decide_enrollment(req);
        let outcome = match &r {
            Response::Enrolled { .. } => "issued",
            Response::Pending(_) => "pending",
            _ => "refused",
        };
        self.metrics
            .directory_enrollments
            .get_or_create(&Metrics::label("outcome", outcome))
            .inc();
        r
    }

    pub(super) fn decide_enrollment(&mut self, req: SignedEnrollment) -> Response {
        let Some(a) = &self.authority else {
            return Response::Refused("not a trust authority".into());
        };
        let now = crate::p2p::authority::now();
        let domain = req.enrollment.domain.clone();
        let (issued, record) = match a.decide(&self.zone, &req, now) {
            Decision::Refuse(m) => {
                tracing::info!(%domain, reason = %m, "enrollment refused");
                return Response::Refused(m);
            }
            Decision::Pending => {
                tracing::info!(%domain, key = %req.enrollment.key, "enrollment waits for approval (intercloud directory approve)");
                if !self.waiting.contains_key(&domain)
                    && self.waiting.len() >= self.max_waiting_enrollments
                {
                    tracing::warn!(%domain, waiting = self.waiting.len(), "enrollment refused: too many waiting for approval");
                    return Response::Refused(format!(
                        "{} enrollments are waiting for approval; try again later",
                        self.waiting.len()
                    ));
                }
                self.waiting.insert(domain, req.enrollment.key);
                return Response::Pending("waiting for an administrator's approval".into());
            }
            Decision::Issue { renewal } => match a.issue(&req, now) {
                Ok(i) => {
                    let rec = a.certificate_record(&req, &i, renewal);
                    (i, rec)
                }
                Err(e) => return Response::Refused(e.to_string()),
            },
        };
        if let Err(e) = self.accept(record, true) {
            return Response::Refused(format!("could not record the certificate: {e}"));
        }
        self.waiting.remove(&domain);
        tracing::info!(%domain, not_after = issued.not_after, "certificate issued");
        Response::Enrolled {
            chain_pem: issued.chain_pem,
            authorities: self.zone.authorities().cloned().collect(),
        }
    }

    pub(super) fn respond(&mut self, ch: ResponseChannel<Response>, r: Response) {
        let _ = self.swarm.behaviour_mut().rr.send_response(ch, r);
    }

    pub(super) fn event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                let me = *self.swarm.local_peer_id();
                self.listening.push(address.with(Protocol::P2p(me)));
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. }
                if self.blocked.contains(&peer_id) =>
            {
                let _ = self.swarm.disconnect_peer_id(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.roots.retain(|p| *p != peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if self.blocked.contains(&peer_id) {
                    return;
                }
                if info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL) {
                    for a in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, a);
                    }
                }
                if info.agent_version == ROOT_AGENT && !self.roots.contains(&peer_id) {
                    tracing::debug!(%peer_id, "root found");
                    self.roots.push(peer_id);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result:
                    kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                        providers,
                        ..
                    })),
                ..
            })) => {
                let me = *self.swarm.local_peer_id();
                for p in providers {
                    if p != me && !self.blocked.contains(&p) && !self.swarm.is_connected(&p) {
                        // The query still holds the provider's addresses.
                        if let Err(e) = self.swarm.dial(p) {
                            tracing::debug!(peer = %p, error = %e, "cannot dial a root found in the DHT");
                        } else {
                            tracing::debug!(peer = %p, "dialing a root found in the DHT");
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                message,
                ..
            })) => {
                if !self.root
                    || message
                        .source
                        .map(|s| self.blocked.contains(&s))
                        .unwrap_or(false)
                {
                    return;
                }
                if let Ok(r) = std::str::from_utf8(&message.data)
                    .map_err(|e| e.to_string())
                    .and_then(|s| SignedRecord::from_json(s).map_err(|e| e.to_string()))
                {
                    self.replicate(r);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.response(peer, request_id, response),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Rr(
                request_response::Event::OutboundFailure {
                    request_id,
                    peer,
                    error,
                    ..
                },
            )) => {
                tracing::debug!(%peer, %error, "directory request failed; trying another root");
                match self.pending.remove(&request_id) {
                    Some(Pending::Register {
                        record,
                        reply,
                        tried,
                    }) => self.send_register(record, reply, tried),
                    Some(Pending::Resolve {
                        domain,
                        reply,
                        tried,
                        revocation,
                    }) => self.send_resolve(domain, reply, tried, revocation),
                    Some(Pending::Enroll { req, reply, tried }) => {
                        self.send_enroll(req, reply, tried)
                    }
                    Some(Pending::Authorities { reply, tried }) => {
                        self.send_authorities(reply, tried)
                    }
                    Some(Pending::Delegated { domain, ask, left }) => {
                        self.ask_exchange(domain, ask, left)
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    pub(super) fn request(&mut self, peer: PeerId, req: Request, ch: ResponseChannel<Response>) {
        if self.blocked.contains(&peer) {
            return;
        }
        let resp = match req {
            Request::Register(r) => {
                let referral = self.root.then(|| self.referral(&r.record.domain)).flatten();
                // Roots gossip what they take; exchanges hold their zones quietly.
                let taken = match referral {
                    Some(refer) => return self.respond(ch, refer),
                    None if self.serves(&r.record.domain) => self.accept(r, false),
                    None if self.root => self.accept(r, true),
                    None => return self.respond(ch, Response::Refused("not a root".into())),
                };
                match taken {
                    Ok(_) => Response::Accepted,
                    Err(e) => Response::Refused(e.to_string()),
                }
            }
            Request::Resolve(d) if self.root => self
                .referral(&d)
                .unwrap_or_else(|| Response::Record(self.zone.get(&d).cloned())),
            Request::Resolve(d) => Response::Record(self.zone.get(&d).cloned()),
            Request::Revocation(d) => Response::Record(self.zone.revocation(&d).cloned()),
            Request::Summary(theirs) if theirs == hex(&self.zone.summary()) => Response::Accepted,
            Request::Summary(_) => Response::Sync {
                records: Vec::new(),
                digest: protocol::to_wire(&self.zone.digest()),
            },
            Request::Digest(theirs) => Response::Sync {
                records: self.zone.missing_from(&protocol::from_wire(&theirs)),
                digest: protocol::to_wire(&self.zone.digest()),
            },
            Request::Push(rs) => {
                if self.root {
                    for r in rs {
                        self.replicate(r);
                    }
                }
                Response::Accepted
            }
            Request::Enroll(req) => self.enroll(req),
            Request::Authorities => Response::Records(self.zone.authorities().cloned().collect()),
            Request::PendingEnrollments => {
                Response::Enrollments(self.waiting.clone().into_iter().collect())
            }
        };
        self.respond(ch, resp);
    }

    /// Whether this node is an exchange holding `domain`'s delegated zone.
    pub(super) fn serves(&self, domain: &str) -> bool {
        self.zones.iter().any(|z| below(domain, z))
    }
}
