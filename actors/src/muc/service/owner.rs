//! Room owners (XEP-0045 §10): the configuration form, instant rooms, unlocking a new room, and destroying a room.

use super::*;

impl Muc {
    pub(super) fn owner_get(&self, iq: &Element, from: &Jid, name: &str) -> Answer {
        let room = &self.rooms[name];
        if room.affiliation(&from.to_bare().to_string()) != Affiliation::Owner {
            return Err(refuse("forbidden"));
        }
        Ok(vec![iq_result(iq).child(
            Element::new("query", NS_OWNER).child(room.config.form("form").to_element()),
        )])
    }

    pub(super) fn owner_set(
        &mut self,
        iq: &Element,
        from: &Jid,
        name: &str,
        q: &Element,
    ) -> Answer {
        let room = &self.rooms[name];
        if room.affiliation(&from.to_bare().to_string()) != Affiliation::Owner {
            return Err(refuse("forbidden"));
        }
        if let Some(d) = q.get_child("destroy", NS_OWNER) {
            return Ok(self.destroy(iq, name, d));
        }
        let Some(form) = Form::find(q) else {
            return Err(refuse("bad-request"));
        };
        match form.kind.as_str() {
            "cancel" => {
                // Cancelling a new room's configuration destroys it (XEP-0045 §10.1.3).
                if room.locked {
                    return Ok(self.destroy(iq, name, &Element::new("destroy", NS_OWNER)));
                }
                Ok(vec![iq_result(iq)])
            }
            "submit" => {
                let mut config = room.config.clone();
                config
                    .apply(
                        &form,
                        self.limits.max_occupants_per_room,
                        self.limits.max_history,
                    )
                    .map_err(|e| Refusal("not-acceptable", Some(e.to_string())))?;
                let was_locked = room.locked;
                let room = self.rooms.get_mut(name).expect("checked");
                room.config = config;
                room.locked = false;
                while room.history.len() > room.config.history_length {
                    room.history.pop_front();
                }
                self.save(name)?;
                let room = &self.rooms[name];
                let mut out = vec![iq_result(iq)];
                if !was_locked {
                    // XEP-0045 §10.2.1: occupants hear that the configuration changed.
                    let note = Element::new("message", NS_CLIENT)
                        .attr("from", room.jid.clone())
                        .attr("type", "groupchat")
                        .child(
                            Element::new("x", NS_USER)
                                .child(Element::new("status", NS_USER).attr("code", "104")),
                        );
                    out.extend(self.to_all(room, note));
                }
                tracing::debug!(room = %room.jid, "room configured");
                Ok(out)
            }
            _ => Err(refuse("bad-request")),
        }
    }

    /// XEP-0045 §10.9: everyone leaves with the `<destroy/>` (and its reason or new room).
    fn destroy(&mut self, iq: &Element, name: &str, d: &Element) -> Vec<Element> {
        let mut destroy = Element::new("destroy", NS_USER);
        if let Some(j) = d.get_attr("jid") {
            destroy = destroy.attr("jid", j);
        }
        for c in d.elements() {
            let mut c = c.clone();
            c.ns = NS_USER.to_string();
            destroy = destroy.child(c);
        }
        let room = self.rooms.remove(name).expect("checked");
        let mut out = vec![iq_result(iq)];
        for o in room.occupants.values() {
            for j in &o.jids {
                let mut p = self.occupant_presence(&room, o, j, true, &[], true);
                if let Some(x) = p.get_child_mut("x", NS_USER) {
                    x.children
                        .push(crate::element::Node::Element(destroy.clone()));
                }
                out.push(p);
            }
        }
        if let Err(e) = self.store.muc_delete_room(&self.host, name) {
            tracing::error!(error = %e, "destroyed room could not be removed from the store");
        }
        tracing::debug!(room = %room.jid, "room destroyed");
        out
    }
}
