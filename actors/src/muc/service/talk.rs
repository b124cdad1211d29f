//! Talking in rooms (XEP-0045 §7.4, §7.5, §7.8, §8.1): groupchat messages to everyone in order, the subject, private messages between occupants, and mediated invitations.

use super::*;

impl Muc {
    /// A message to the room's bare JID.
    pub(super) fn message(&mut self, m: &Element, from: &Jid, name: &str, now: u64) -> Answer {
        let full = from.to_string();
        let Some(room) = self.rooms.get(name) else {
            return Err(refuse("item-not-found"));
        };
        if stanza::stype(m) != "groupchat" {
            return self.invite(m, from, name);
        }
        let Some(o) = room.occupant_of(&full) else {
            return Err(Refusal(
                "not-acceptable",
                Some("only occupants talk in the room".into()),
            ));
        };
        let (nick, role) = (o.nick.clone(), o.role);
        let subject = m.get_child("subject", NS_CLIENT).map(|s| s.text_content());
        let body = m.get_child("body", NS_CLIENT);
        if role == Role::Visitor {
            return Err(Refusal(
                "forbidden",
                Some("visitors have no voice here".into()),
            ));
        }
        if let (Some(subject), None) = (&subject, body) {
            if role != Role::Moderator && !room.config.change_subject {
                return Err(Refusal(
                    "forbidden",
                    Some("only moderators change the subject".into()),
                ));
            }
            let room = self.rooms.get_mut(name).expect("found above");
            room.subject = Some((subject.clone(), nick.clone()));
            self.save(name)?;
        }
        // What everyone gets: the message from the sender's room nick.
        let mut out_msg = Element::new("message", NS_CLIENT)
            .attr("from", format!("{}@{}/{nick}", name, self.host))
            .attr("type", "groupchat");
        // The sender's id; one of ours when it gave none, so that a server
        // receiving a copy resent after a broken s2s link can tell it from
        // a new message (and drop it).
        let id = m
            .get_attr("id")
            .map(str::to_string)
            .unwrap_or_else(|| format!("gc-{:x}", rand::random::<u64>()));
        out_msg = out_msg.attr("id", id);
        for c in m.elements() {
            out_msg = out_msg.child(c.clone());
        }
        let room = self.rooms.get_mut(name).expect("found above");
        if subject.is_none() || body.is_some() {
            room.remember(out_msg.clone(), now);
        }
        let room = &self.rooms[name];
        Ok(self.to_all(room, out_msg))
    }

    /// A private message to `room/nick` (XEP-0045 §7.5).
    pub(super) fn private(&mut self, m: &Element, from: &Jid, name: &str, nick: &str) -> Answer {
        let full = from.to_string();
        let room = self.rooms.get(name).ok_or(refuse("item-not-found"))?;
        let sender = room
            .nick_of(&full)
            .ok_or(Refusal(
                "not-acceptable",
                Some("only occupants send private messages".into()),
            ))?
            .to_string();
        if stanza::stype(m) == "groupchat" {
            return Err(refuse("bad-request"));
        }
        let target = room.occupants.get(nick).ok_or(refuse("item-not-found"))?;
        let out = target
            .jids
            .iter()
            .map(|j| {
                let mut e = m.clone();
                e.set_attr("from", format!("{}/{sender}", room.jid));
                e.set_attr("to", j.clone());
                e.child(Element::new("x", NS_USER))
            })
            .collect();
        Ok(out)
    }

    /// A mediated invitation (XEP-0045 §7.8.2): the room passes it on, and
    /// in a members-only room the invitee becomes a member.
    fn invite(&mut self, m: &Element, from: &Jid, name: &str) -> Answer {
        let Some(inv) = m
            .get_child("x", NS_USER)
            .and_then(|x| x.get_child("invite", NS_USER))
        else {
            return Err(refuse("bad-request"));
        };
        let full = from.to_string();
        let bare = from.to_bare().to_string();
        let room = &self.rooms[name];
        let Some(o) = room.occupant_of(&full) else {
            return Err(Refusal(
                "not-acceptable",
                Some("only occupants invite".into()),
            ));
        };
        let may = room.affiliation(&bare) >= Affiliation::Admin
            || o.role == Role::Moderator
            || (room.config.allow_invites && o.role >= Role::Participant);
        if room.config.members_only && !may {
            return Err(refuse("forbidden"));
        }
        let Some(to) = inv.get_attr("to").and_then(|t| t.parse::<Jid>().ok()) else {
            return Err(refuse("jid-malformed"));
        };
        if room.config.members_only
            && room.affiliation(&to.to_bare().to_string()) < Affiliation::Member
        {
            if room.affiliations.len() >= self.limits.max_affiliations_per_room {
                return Err(refuse("resource-constraint"));
            }
            let room = self.rooms.get_mut(name).expect("found above");
            room.affiliations
                .insert(to.to_bare().to_string(), Affiliation::Member);
            self.save(name)?;
        }
        let room = &self.rooms[name];
        let mut passed = Element::new("invite", NS_USER).attr("from", bare);
        for c in inv.elements() {
            passed = passed.child(c.clone());
        }
        let mut x = Element::new("x", NS_USER).child(passed);
        if !room.config.password.is_empty() {
            x = x.child(Element::new("password", NS_USER).text(room.config.password.clone()));
        }
        Ok(vec![Element::new("message", NS_CLIENT)
            .attr("from", room.jid.clone())
            .attr("to", to.to_string())
            .attr("id", format!("inv-{:x}", rand::random::<u64>()))
            .child(x)])
    }
}
