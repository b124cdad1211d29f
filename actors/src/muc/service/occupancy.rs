//! Entering and leaving rooms (XEP-0045 §7.2, §7.6, §7.14): creation, the checks at the door, the presences and history a newcomer gets, nick changes, presence updates and departures.

use super::*;

impl Muc {
    /// Presence to `room/nick` from `from`.
    pub(super) fn presence(
        &mut self,
        p: &Element,
        from: &Jid,
        name: &str,
        nick: &str,
        now: u64,
    ) -> Answer {
        let full = from.to_string();
        match stanza::stype(p) {
            "unavailable" => {
                let status = p.get_child("status", NS_CLIENT).cloned();
                return Ok(self.depart(name, &full, status, &[], None));
            }
            "error" => {
                // The occupant's client or server bounced what the room sent.
                return Ok(self.depart(name, &full, None, &[], None));
            }
            "" => {}
            _ => return Ok(vec![]),
        }
        let current = self
            .rooms
            .get(name)
            .and_then(|r| r.nick_of(&full))
            .map(str::to_string);
        match current {
            Some(n) if n == nick => Ok(self.update(name, &full, p)),
            Some(old) => self.change_nick(name, &full, &old, nick, p),
            None => self.join(p, from, name, nick, now),
        }
    }

    fn join(&mut self, p: &Element, from: &Jid, name: &str, nick: &str, now: u64) -> Answer {
        let full = from.to_string();
        let bare = from.to_bare().to_string();
        let x = p.get_child("x", NS_MUC);
        let mut created = false;
        if !self.rooms.contains_key(name) {
            if from.domain() != self.domain {
                return Err(Refusal(
                    "not-allowed",
                    Some("only accounts of this server create rooms".into()),
                ));
            }
            if self.rooms.len() >= self.limits.max_rooms {
                return Err(Refusal(
                    "resource-constraint",
                    Some("the service holds as many rooms as it may".into()),
                ));
            }
            let config = Config::new(self.limits.max_occupants_per_room, self.limits.max_history);
            let room = Room::new(&format!("{name}@{}", self.host), &bare, config);
            self.rooms.insert(name.to_string(), room);
            created = true;
            tracing::debug!(room = %name, owner = %bare, "room created");
        }
        let room = &self.rooms[name];
        let aff = room.affiliation(&bare);
        if room.locked && aff != Affiliation::Owner {
            return Err(Refusal(
                "item-not-found",
                Some("the room is being set up".into()),
            ));
        }
        if aff == Affiliation::Outcast {
            return Err(refuse("forbidden"));
        }
        if room.config.members_only && aff < Affiliation::Member {
            return Err(refuse("registration-required"));
        }
        if !room.config.password.is_empty() && aff < Affiliation::Admin {
            let given = x
                .and_then(|x| x.child_text("password", NS_MUC))
                .unwrap_or_default();
            if given != room.config.password {
                return Err(refuse("not-authorized"));
            }
        }
        let same_person = room
            .occupants
            .get(nick)
            .map(|o| o.jids.iter().any(|j| bare_of(j) == bare));
        match same_person {
            Some(false) => return Err(Refusal("conflict", Some("that nick is taken".into()))),
            Some(true) => {}
            None => {
                let full_room = room.occupants.len()
                    >= room
                        .config
                        .max_users
                        .min(self.limits.max_occupants_per_room);
                let hard_limit = room.occupants.len() >= self.limits.max_occupants_per_room;
                if hard_limit || (full_room && aff < Affiliation::Admin) {
                    return Err(Refusal(
                        "service-unavailable",
                        Some("the room is full".into()),
                    ));
                }
            }
        }
        let role = room.default_role(aff);
        let mut presence = p.clone();
        presence
            .children
            .retain(|c| !matches!(c, crate::element::Node::Element(e) if e.ns == NS_MUC));
        let room = self.rooms.get_mut(name).expect("made or found above");
        let occupant = match room.occupants.get_mut(nick) {
            Some(o) => {
                o.jids.push(full.clone());
                o.presence = presence;
                o.clone()
            }
            None => {
                let o = Occupant {
                    nick: nick.to_string(),
                    jids: vec![full.clone()],
                    role,
                    presence,
                };
                room.occupants.insert(nick.to_string(), o.clone());
                o
            }
        };
        let room = &self.rooms[name];
        let mut out = Vec::new();
        // The others, to the newcomer first (XEP-0045 §7.2.3).
        for other in room.occupants.values().filter(|o| o.nick != nick) {
            out.push(self.occupant_presence(
                room,
                other,
                &full,
                Self::sees_jids(room, role),
                &[],
                false,
            ));
        }
        let mut codes: Vec<&str> = Vec::new();
        if room.config.whois_anyone {
            codes.push("100");
        }
        if created {
            codes.push("201");
        }
        // The newcomer's presence to the others, and to itself with 110.
        for other in room.occupants.values().filter(|o| o.nick != nick) {
            for j in &other.jids {
                out.push(self.occupant_presence(
                    room,
                    &occupant,
                    j,
                    Self::sees_jids(room, other.role),
                    &[],
                    false,
                ));
            }
        }
        let mut mine = vec!["110"];
        mine.extend(codes);
        out.push(self.occupant_presence(room, &occupant, &full, true, &mine, false));
        out.extend(self.history_for(room, &full, x, now));
        // The subject, always, last (XEP-0045 §7.2.15).
        let (subject, by) = room.subject.clone().unwrap_or_default();
        let from = if by.is_empty() {
            room.jid.clone()
        } else {
            format!("{}/{by}", room.jid)
        };
        out.push(
            Element::new("message", NS_CLIENT)
                .attr("from", from)
                .attr("to", full.clone())
                .attr("type", "groupchat")
                .attr("id", format!("subject-{:x}", rand::random::<u64>()))
                .child(Element::new("subject", NS_CLIENT).text(subject)),
        );
        tracing::debug!(room = %room.jid, %nick, jid = %full, "occupant joined");
        Ok(out)
    }

    /// The history a newcomer asked for (XEP-0045 §7.2.14): at most
    /// `maxstanzas`, none older than `seconds`, each with its delay stamp.
    fn history_for(&self, room: &Room, to: &str, x: Option<&Element>, now: u64) -> Vec<Element> {
        let h = x.and_then(|x| x.get_child("history", NS_MUC));
        let max = h
            .and_then(|h| h.get_attr("maxstanzas"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        let since = h
            .and_then(|h| h.get_attr("seconds"))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|s| now.saturating_sub(s));
        let kept: Vec<&Said> = room
            .history
            .iter()
            .filter(|s| since.is_none_or(|t| s.at >= t))
            .collect();
        let skip = kept.len().saturating_sub(max);
        kept.into_iter()
            .skip(skip)
            .map(|s| {
                let mut m = s.message.clone();
                m.set_attr("to", to);
                m.child(
                    Element::new("delay", crate::stanza::NS_DELAY)
                        .attr("from", room.jid.clone())
                        .attr("stamp", crate::clock::xep0082(s.at)),
                )
            })
            .collect()
    }

    /// A present occupant's new presence (show, status) to everyone.
    fn update(&mut self, name: &str, full: &str, p: &Element) -> Vec<Element> {
        let room = self.rooms.get_mut(name).expect("the occupant is in it");
        let nick = room
            .nick_of(full)
            .expect("the occupant is in it")
            .to_string();
        let o = room.occupants.get_mut(&nick).expect("by its nick");
        let mut presence = p.clone();
        presence
            .children
            .retain(|c| !matches!(c, crate::element::Node::Element(e) if e.ns == NS_MUC));
        o.presence = presence;
        let o = o.clone();
        let room = &self.rooms[name];
        self.broadcast_presence(room, &o, &[], &[], false)
    }

    /// XEP-0045 §7.6: unavailable under the old nick (303, with the new one), then available under the new.
    fn change_nick(&mut self, name: &str, full: &str, old: &str, new: &str, p: &Element) -> Answer {
        let room = &self.rooms[name];
        if room.occupants.contains_key(new) {
            return Err(Refusal("conflict", Some("that nick is taken".into())));
        }
        let before = room.occupants[old].clone();
        let mut out = Vec::new();
        for other in room.occupants.values() {
            for j in &other.jids {
                let own = other.nick == old;
                let codes: &[&str] = if own { &["303", "110"] } else { &["303"] };
                let mut pres = self.occupant_presence(
                    room,
                    &before,
                    j,
                    own || Self::sees_jids(room, other.role),
                    codes,
                    true,
                );
                if let Some(item) = pres
                    .get_child_mut("x", NS_USER)
                    .and_then(|x| x.get_child_mut("item", NS_USER))
                {
                    item.set_attr("nick", new);
                    item.set_attr("role", before.role.as_str());
                }
                out.push(pres);
            }
        }
        let room = self.rooms.get_mut(name).expect("found above");
        let mut o = room.occupants.remove(old).expect("found above");
        o.nick = new.to_string();
        let mut presence = p.clone();
        presence
            .children
            .retain(|c| !matches!(c, crate::element::Node::Element(e) if e.ns == NS_MUC));
        o.presence = presence;
        room.occupants.insert(new.to_string(), o.clone());
        let room = &self.rooms[name];
        out.extend(self.broadcast_presence(room, &o, &[], &[], false));
        tracing::debug!(room = %room.jid, %old, %new, jid = %full, "nick changed");
        Ok(out)
    }
}
