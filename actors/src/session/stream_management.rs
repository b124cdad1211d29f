//! XEP-0198 for a session: enable, acknowledgements, detaching when the connection is lost, resumption, and what was never acknowledged going back to the router.

use super::*;

impl Session {
    /// What the client never acknowledged is not lost: messages go back to
    /// the router (another resource, or offline storage), iq requests are
    /// answered with an error, offline messages return to the store.
    pub(super) fn requeue_unacked(&mut self) {
        let Some(sm) = &mut self.sm else {
            return;
        };
        let items = sm.take_unacked();
        if items.is_empty() {
            return;
        }
        tracing::info!(jid = %self.jid, n = items.len(), "re-routing unacknowledged stanzas");
        let bare = self.jid.to_bare().to_string();
        for it in items {
            match it {
                Unacked::Stanza(e) => match e.name.as_str() {
                    "message" => self.cloud.router.do_send(Route(e)),
                    "iq" if matches!(stanza::stype(&e), "get" | "set") => {
                        self.cloud.router.do_send(Route(error_reply(
                            &e,
                            "recipient-unavailable",
                            None,
                        )));
                    }
                    _ => {}
                },
                // Routed again only if no other resource got or holds a copy.
                Unacked::Copy(e, c) => {
                    if c.given_up() {
                        self.cloud.router.do_send(Route(e));
                    } else {
                        tracing::debug!(jid = %self.jid, id = ?e.get_attr("id"), "copy not routed again: another resource has the message");
                    }
                }
                Unacked::Offline { stored, .. } => {
                    if let Err(e) = self.cloud.store.push_offline(&bare, &stored, usize::MAX) {
                        tracing::error!(error = %e, "could not return an offline message to storage");
                    }
                }
            }
        }
    }

    pub(super) fn handle_sm(&mut self, e: Element, ctx: &mut Context<Self>) {
        match e.name.as_str() {
            "enable" => {
                if !self.bound || self.sm.is_some() {
                    return self.send(ctx, Outbound::stanza(sm::failed("unexpected-request")));
                }
                let resumable = matches!(e.get_attr("resume"), Some("true") | Some("1"));
                let state = StreamManagement::new(resumable);
                if resumable {
                    self.cloud.remember_resumable(&state.id, ctx.address());
                }
                let reply = sm::enabled(&state, self.cloud.settings.sm_resume_timeout.as_secs());
                self.sm = Some(state);
                tracing::debug!(jid = %self.jid, resumable, "stream management enabled");
                self.send(ctx, Outbound::stanza(reply));
            }
            "r" => {
                if let Some(sm) = &self.sm {
                    let a = sm::answer(sm.h_in);
                    self.send(ctx, Outbound::stanza(a));
                }
            }
            "a" => {
                let Some(sm) = &mut self.sm else {
                    return;
                };
                let Some(h) = sm::h_of(&e) else {
                    return self.stream_error(ctx, "bad-format", "<a/> without a valid h");
                };
                if let Err(err) = sm.ack(h) {
                    let text = err.to_string();
                    self.stream_error(ctx, "undefined-condition", &text);
                }
            }
            _ => self.send(ctx, Outbound::stanza(sm::failed("unexpected-request"))),
        }
    }

    /// The connection is gone: a resumable session waits for the client to come back.
    pub(super) fn detach(&mut self, ctx: &mut Context<Self>) {
        let resumable = self.bound && self.sm.as_ref().map(|s| s.resumable).unwrap_or(false);
        if !resumable || self.ending {
            self.ending = true;
            ctx.stop();
            return;
        }
        tracing::info!(jid = %self.jid, "connection lost; session kept for resumption");
        self.tx = None;
        self.cloud.router.do_send(Detached {
            full: self.jid.clone(),
            session: ctx.address(),
        });
        let conn = self.conn;
        ctx.run_later(self.cloud.settings.sm_resume_timeout, move |act, ctx| {
            if act.tx.is_none() && act.conn == conn {
                tracing::info!(jid = %act.jid, "not resumed in time; ending the session");
                act.ending = true;
                ctx.stop();
            }
        });
    }
}

impl Handler<Closed> for Session {
    type Result = ();
    fn handle(&mut self, msg: Closed, ctx: &mut Context<Self>) {
        if msg.conn == self.conn {
            if !msg.resumable {
                self.ending = true;
                ctx.stop();
                return;
            }
            self.detach(ctx);
        }
    }
}

impl Handler<Resume> for Session {
    type Result = Result<u32, &'static str>;
    fn handle(&mut self, msg: Resume, ctx: &mut Context<Self>) -> Self::Result {
        if self.ending || self.jid.to_bare() != msg.account {
            return Err("item-not-found");
        }
        let Some(sm) = &mut self.sm else {
            return Err("item-not-found");
        };
        if let Err(e) = sm.ack(msg.h) {
            tracing::warn!(jid = %self.jid, error = %e, "resume with a bad count");
            return Err("unexpected-request");
        }
        let h_in = sm.h_in;
        let id = sm.id.clone();
        let resend: Vec<Outbound> = sm
            .unacked()
            .map(|u| match u {
                Unacked::Stanza(e) | Unacked::Copy(e, _) => Outbound::stanza(e.clone()),
                Unacked::Offline { xml, .. } => Outbound::Raw(xml.clone()),
            })
            .collect();
        self.cloud.metrics.sm_resends.inc_by(resend.len() as u64);
        if let Some(old) = self.tx.take() {
            // The old connection may not have noticed it is dead yet.
            let _ = old.try_send(Outbound::Error {
                condition: "conflict",
                text: Some("session resumed elsewhere".into()),
            });
        }
        self.tx = Some(msg.tx);
        self.conn = msg.conn;
        self.cloud.router.do_send(Attached {
            full: self.jid.clone(),
            session: ctx.address(),
        });
        tracing::info!(jid = %self.jid, resent = resend.len(), "session resumed");
        self.send(
            ctx,
            Outbound::stanza(
                Element::new("resumed", NS_SM)
                    .attr("h", h_in.to_string())
                    .attr("previd", id),
            ),
        );
        for o in resend {
            self.send(ctx, o);
        }
        self.send(ctx, Outbound::stanza(sm::request()));
        Ok(h_in)
    }
}
