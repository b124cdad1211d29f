//! RFC 6121 §2 roster management for the presence actor: reading and persisting roster items, roster get/set/remove, and pushes to interested resources.

use super::*;

impl Presence {
    pub(super) fn item(&self, owner: &Jid, contact: &Jid) -> Option<RosterItem> {
        self.store
            .roster_item(&owner.to_string(), &contact.to_string())
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "roster read failed");
                None
            })
    }

    pub(super) fn roster(&self, owner: &Jid) -> Vec<RosterItem> {
        self.store.roster(&owner.to_string()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "roster read failed");
            Vec::new()
        })
    }

    /// Persists `item` and pushes it to the owner's interested resources.
    pub(super) fn save(&self, owner: &Jid, item: &RosterItem) {
        if let Err(e) = self.store.put_roster_item(&owner.to_string(), item) {
            tracing::error!(error = %e, "roster write failed");
            return;
        }
        if item.visible {
            self.router.do_send(RosterPush {
                owner: owner.clone(),
                item: roster::item_element(item),
            });
        }
    }
}

impl Presence {
    pub(super) fn roster_iq(&mut self, from: Jid, iq: Element, reply_to: Recipient<Deliver>) {
        let owner = from.to_bare();
        let reply = match stanza::stype(&iq) {
            "get" => {
                self.router.do_send(SetInterested { full: from.clone() });
                roster::get_result(&iq, &self.store, &owner.to_string())
            }
            "set" => match roster::parse_set(&iq, self.settings.max_roster_item_bytes) {
                Err(e) => e,
                Ok(RosterSet::Update {
                    contact,
                    name,
                    groups,
                }) => {
                    if contact == owner {
                        error_reply(&iq, "not-allowed", Some("your own JID"))
                    } else {
                        let existing = self.item(&owner, &contact);
                        if existing.is_none()
                            && self.roster(&owner).len() >= self.settings.max_roster_items
                        {
                            error_reply(&iq, "not-allowed", Some("roster is full"))
                        } else {
                            let mut item =
                                existing.unwrap_or_else(|| RosterItem::new(&contact.to_string()));
                            item.name = name;
                            item.groups = groups;
                            item.visible = true;
                            self.save(&owner, &item);
                            iq_result(&iq)
                        }
                    }
                }
                Ok(RosterSet::Remove { contact }) => match self.item(&owner, &contact) {
                    None => error_reply(&iq, "item-not-found", None),
                    Some(item) => {
                        if item.subscription.has_to() || item.ask {
                            self.route(presence(Some("unsubscribe"), &owner, &contact));
                        }
                        if item.subscription.has_from() || item.pending_in {
                            self.route(presence(Some("unsubscribed"), &owner, &contact));
                            if item.subscription.has_from() {
                                self.send_unavailable_from(&owner, &contact);
                            }
                        }
                        if let Err(e) = self
                            .store
                            .delete_roster_item(&owner.to_string(), &contact.to_string())
                        {
                            tracing::error!(error = %e, "roster write failed");
                        }
                        if item.visible {
                            self.router.do_send(RosterPush {
                                owner: owner.clone(),
                                item: roster::removed_element(&contact.to_string()),
                            });
                        }
                        iq_result(&iq)
                    }
                },
            },
            _ => return,
        };
        reply_to.do_send(Deliver(reply));
    }
}

impl Handler<RosterIq> for Presence {
    type Result = ();
    fn handle(&mut self, m: RosterIq, _: &mut Context<Self>) {
        self.roster_iq(m.from, m.iq, m.reply_to);
    }
}
