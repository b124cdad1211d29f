//! Moderation and administration (XEP-0045 §8, §9): kicking, voice, moderator rights, bans and memberships, and the lists of each, with who may do what.

use super::*;

/// One change asked for in a muc#admin set.
enum Change {
    Role {
        nick: String,
        role: Role,
    },
    Affiliation {
        jid: String,
        affiliation: Affiliation,
    },
}

impl Muc {
    /// muc#admin get: the occupants with a role, or the JIDs with an affiliation.
    pub(super) fn admin_list(&self, iq: &Element, from: &Jid, name: &str, q: &Element) -> Answer {
        let room = &self.rooms[name];
        let bare = from.to_bare().to_string();
        let me = room
            .occupant_of(&from.to_string())
            .map(|o| o.role)
            .unwrap_or(Role::None);
        let Some(item) = q.get_child("item", NS_ADMIN) else {
            return Err(refuse("bad-request"));
        };
        let mut out = Element::new("query", NS_ADMIN);
        if let Some(role) = item.get_attr("role").and_then(Role::parse) {
            if me != Role::Moderator {
                return Err(refuse("forbidden"));
            }
            for o in room.occupants.values().filter(|o| o.role == role) {
                let b = o
                    .jids
                    .first()
                    .map(|j| bare_of(j).to_string())
                    .unwrap_or_default();
                out = out.child(
                    Element::new("item", NS_ADMIN)
                        .attr("nick", o.nick.clone())
                        .attr("role", role.as_str())
                        .attr("affiliation", room.affiliation(&b).as_str())
                        .attr("jid", o.jids.first().cloned().unwrap_or_default()),
                );
            }
        } else if let Some(aff) = item.get_attr("affiliation").and_then(Affiliation::parse) {
            let mine = room.affiliation(&bare);
            let allowed = match aff {
                Affiliation::Owner | Affiliation::Admin => mine >= Affiliation::Admin,
                _ => mine >= Affiliation::Admin || me == Role::Moderator,
            };
            if !allowed {
                return Err(refuse("forbidden"));
            }
            for (j, _) in room.affiliations.iter().filter(|(_, a)| **a == aff) {
                out = out.child(
                    Element::new("item", NS_ADMIN)
                        .attr("jid", j.clone())
                        .attr("affiliation", aff.as_str()),
                );
            }
        } else {
            return Err(refuse("bad-request"));
        }
        Ok(vec![iq_result(iq).child(out)])
    }

    /// muc#admin set: each item a role (by nick) or an affiliation (by JID) change.
    pub(super) fn admin_set(
        &mut self,
        iq: &Element,
        from: &Jid,
        name: &str,
        q: &Element,
    ) -> Answer {
        let mut changes = Vec::new();
        for item in q.elements().filter(|e| e.name == "item") {
            if let Some(role) = item.get_attr("role") {
                let role = Role::parse(role).ok_or(refuse("bad-request"))?;
                let nick = item.get_attr("nick").ok_or(refuse("bad-request"))?;
                changes.push((
                    Change::Role {
                        nick: nick.to_string(),
                        role,
                    },
                    reason(item),
                ));
            } else if let Some(aff) = item.get_attr("affiliation") {
                let affiliation = Affiliation::parse(aff).ok_or(refuse("bad-request"))?;
                let jid = item
                    .get_attr("jid")
                    .and_then(|j| j.parse::<Jid>().ok())
                    .ok_or(refuse("bad-request"))?;
                changes.push((
                    Change::Affiliation {
                        jid: jid.to_bare().to_string(),
                        affiliation,
                    },
                    reason(item),
                ));
            } else {
                return Err(refuse("bad-request"));
            }
        }
        // All are checked before any is applied.
        for (c, _) in &changes {
            self.may_change(from, name, c)?;
        }
        let mut out = vec![iq_result(iq)];
        for (c, why) in changes {
            out.extend(self.apply_change(name, c, why)?);
        }
        Ok(out)
    }

    /// XEP-0045 §8–§10: who may change whose role or affiliation.
    fn may_change(&self, from: &Jid, name: &str, c: &Change) -> Result<(), Refusal> {
        let room = &self.rooms[name];
        let bare = from.to_bare().to_string();
        let mine = room.affiliation(&bare);
        let my_role = room
            .occupant_of(&from.to_string())
            .map(|o| o.role)
            .unwrap_or(Role::None);
        match c {
            Change::Role { nick, role } => {
                let target = room.occupants.get(nick).ok_or(refuse("item-not-found"))?;
                let theirs = target
                    .jids
                    .first()
                    .map(|j| room.affiliation(bare_of(j)))
                    .unwrap_or(Affiliation::None);
                if my_role != Role::Moderator {
                    return Err(refuse("forbidden"));
                }
                // Nobody takes a role from an admin or owner, or kicks them.
                if theirs >= Affiliation::Admin && *role < Role::Moderator {
                    return Err(refuse("not-allowed"));
                }
                // Granting or revoking moderator is for admins and owners.
                if (*role == Role::Moderator || target.role == Role::Moderator)
                    && mine < Affiliation::Admin
                {
                    return Err(refuse("not-allowed"));
                }
                Ok(())
            }
            Change::Affiliation { jid, affiliation } => {
                let theirs = room.affiliation(jid);
                let needed = match (affiliation, theirs) {
                    (Affiliation::Owner, _)
                    | (_, Affiliation::Owner)
                    | (Affiliation::Admin, _)
                    | (_, Affiliation::Admin) => Affiliation::Owner,
                    _ => Affiliation::Admin,
                };
                if mine < needed {
                    return Err(refuse("forbidden"));
                }
                if theirs == Affiliation::Owner
                    && *affiliation != Affiliation::Owner
                    && room
                        .affiliations
                        .values()
                        .filter(|a| **a == Affiliation::Owner)
                        .count()
                        == 1
                {
                    return Err(Refusal("conflict", Some("a room keeps an owner".into())));
                }
                if theirs == Affiliation::None
                    && *affiliation != Affiliation::None
                    && room.affiliations.len() >= self.limits.max_affiliations_per_room
                {
                    return Err(refuse("resource-constraint"));
                }
                Ok(())
            }
        }
    }

    fn apply_change(&mut self, name: &str, c: Change, why: Option<String>) -> Answer {
        match c {
            Change::Role {
                nick,
                role: Role::None,
            } => {
                // A kick (XEP-0045 §8.2).
                let jids = self.rooms[name].occupants[&nick].jids.clone();
                let reason = why.map(|w| Element::new("reason", NS_USER).text(w));
                let mut out = Vec::new();
                for j in jids {
                    out.extend(self.depart(name, &j, None, &["307"], reason.clone()));
                }
                Ok(out)
            }
            Change::Role { nick, role } => {
                let room = self.rooms.get_mut(name).expect("checked");
                let o = room.occupants.get_mut(&nick).expect("checked");
                o.role = role;
                let o = o.clone();
                let room = &self.rooms[name];
                Ok(self.broadcast_presence(room, &o, &[], &[], false))
            }
            Change::Affiliation { jid, affiliation } => {
                let room = self.rooms.get_mut(name).expect("checked");
                if affiliation == Affiliation::None {
                    room.affiliations.remove(&jid);
                } else {
                    room.affiliations.insert(jid.clone(), affiliation);
                }
                self.save(name)?;
                let room = &self.rooms[name];
                let present: Vec<String> = room
                    .occupants
                    .values()
                    .flat_map(|o| o.jids.iter())
                    .filter(|j| bare_of(j) == jid)
                    .cloned()
                    .collect();
                if present.is_empty() {
                    return Ok(vec![]);
                }
                let reason = why.map(|w| Element::new("reason", NS_USER).text(w));
                // Banned (301), or no longer a member of a members-only room (321).
                let removed = if affiliation == Affiliation::Outcast {
                    Some("301")
                } else if room.config.members_only && affiliation < Affiliation::Member {
                    Some("321")
                } else {
                    None
                };
                if let Some(code) = removed {
                    let mut out = Vec::new();
                    for j in present {
                        out.extend(self.depart(name, &j, None, &[code], reason.clone()));
                    }
                    return Ok(out);
                }
                // Still here: the role follows the new affiliation.
                let nick = room.nick_of(&present[0]).expect("present").to_string();
                let role = room.default_role(affiliation);
                let room = self.rooms.get_mut(name).expect("checked");
                let o = room.occupants.get_mut(&nick).expect("present");
                o.role = role;
                let o = o.clone();
                let room = &self.rooms[name];
                Ok(self.broadcast_presence(room, &o, &[], &[], false))
            }
        }
    }
}

fn reason(item: &Element) -> Option<String> {
    item.child_text("reason", NS_ADMIN)
}
