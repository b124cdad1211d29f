//! The XEP-0045 service at `conference.<domain>` as a sans-IO core: a stanza and the time in, the replies, presences and messages to send out; persistent rooms written through to the store.

use super::room::*;
use crate::dataform::Form;
use crate::element::{Element, NS_CLIENT};
use crate::jid::Jid;
use crate::stanza::{self, error_reply, iq_result, NS_DISCO_INFO, NS_DISCO_ITEMS};
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;

mod admin;
mod occupancy;
mod owner;
mod talk;

/// The bounds of one service, from the node's configuration.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_rooms: usize,
    pub max_occupants_per_room: usize,
    pub max_history: usize,
    pub max_affiliations_per_room: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rooms: 10_000,
            max_occupants_per_room: 200,
            max_history: 50,
            max_affiliations_per_room: 1000,
        }
    }
}

/// One multi-user chat service.
pub struct Muc {
    /// The service's JID (`conference.<domain>`).
    host: String,
    /// The domain whose accounts may create rooms.
    domain: String,
    /// By the room's local part.
    rooms: BTreeMap<String, Room>,
    limits: Limits,
    store: Arc<Store>,
}

/// Why a request failed: the stanza condition and a text.
pub(super) struct Refusal(pub &'static str, pub Option<String>);

pub(super) type Answer = Result<Vec<Element>, Refusal>;

pub(super) fn refuse(condition: &'static str) -> Refusal {
    Refusal(condition, None)
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        tracing::error!(error = %e, "room state could not be written");
        Refusal("internal-server-error", None)
    }
}

impl Muc {
    /// The service `host` for accounts of `domain`, with the persistent rooms the store holds.
    pub fn load(
        host: &str,
        domain: &str,
        limits: Limits,
        store: Arc<Store>,
    ) -> Result<Muc, StoreError> {
        let mut rooms = BTreeMap::new();
        for r in store.muc_rooms(host)? {
            let mut config = Config::new(limits.max_occupants_per_room, limits.max_history);
            if let Some(form) = r.config.as_ref().map(Form::parse) {
                if let Err(e) =
                    config.apply(&form, limits.max_occupants_per_room, limits.max_history)
                {
                    tracing::warn!(room = %r.name, error = %e, "stored configuration not taken whole");
                }
            }
            let mut room = Room::new(&format!("{}@{host}", r.name), "", config);
            room.affiliations.clear();
            for (j, a) in r.affiliations {
                if let Some(a) = Affiliation::parse(&a) {
                    room.affiliations.insert(j, a);
                }
            }
            room.subject = r.subject;
            room.locked = false;
            rooms.insert(r.name, room);
        }
        Ok(Muc {
            host: host.to_string(),
            domain: domain.to_string(),
            rooms,
            limits,
            store,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Occupants present in all rooms.
    pub fn occupant_count(&self) -> usize {
        self.rooms.values().map(|r| r.occupants.len()).sum()
    }

    /// Takes one stanza addressed to the service, a room or an occupant, at
    /// `now` (Unix seconds); returns what to send.
    pub fn handle(&mut self, st: &Element, now: u64) -> Vec<Element> {
        let (Ok(Some(from)), Ok(Some(to))) = (stanza::from(st), stanza::to(st)) else {
            return vec![];
        };
        let room = to.local().map(str::to_string);
        let nick = to.resource().map(str::to_string);
        let r = match (st.name.as_str(), room, nick) {
            ("iq", _, _) if !matches!(stanza::stype(st), "get" | "set") => Ok(vec![]),
            ("iq", None, None) => self.service_iq(st),
            ("iq", Some(room), None) => self.room_iq(st, &from, &room),
            ("iq", Some(_), Some(_)) => Err(refuse("feature-not-implemented")),
            ("presence", Some(room), Some(nick)) => self.presence(st, &from, &room, &nick, now),
            ("presence", Some(_), None) if stanza::stype(st) != "error" => Err(Refusal(
                "jid-malformed",
                Some("a nick is needed to join".into()),
            )),
            ("message", _, _) if stanza::stype(st) == "error" => self.bounced(&from, &to),
            ("message", Some(room), None) => self.message(st, &from, &room, now),
            ("message", Some(room), Some(nick)) => self.private(st, &from, &room, &nick),
            _ => Ok(vec![]),
        };
        match r {
            Ok(out) => out,
            Err(Refusal(condition, text)) if stanza::may_bounce(st) => {
                vec![error_reply(st, condition, text.as_deref())]
            }
            Err(_) => vec![],
        }
    }

    /// disco#info and #items on the service itself.
    fn service_iq(&self, iq: &Element) -> Answer {
        if iq.get_child("query", NS_DISCO_INFO).is_some() {
            let q = Element::new("query", NS_DISCO_INFO)
                .child(
                    Element::new("identity", NS_DISCO_INFO)
                        .attr("category", "conference")
                        .attr("type", "text")
                        .attr("name", "Chatrooms"),
                )
                .child(Element::new("feature", NS_DISCO_INFO).attr("var", NS_MUC))
                .child(Element::new("feature", NS_DISCO_INFO).attr("var", NS_DISCO_INFO))
                .child(Element::new("feature", NS_DISCO_INFO).attr("var", NS_DISCO_ITEMS));
            return Ok(vec![iq_result(iq).child(q)]);
        }
        if iq.get_child("query", NS_DISCO_ITEMS).is_some() {
            let mut q = Element::new("query", NS_DISCO_ITEMS);
            for r in self.rooms.values().filter(|r| r.config.public && !r.locked) {
                let mut item = Element::new("item", NS_DISCO_ITEMS).attr("jid", r.jid.clone());
                if !r.config.name.is_empty() {
                    item = item.attr("name", r.config.name.clone());
                }
                q = q.child(item);
            }
            return Ok(vec![iq_result(iq).child(q)]);
        }
        Err(refuse("service-unavailable"))
    }

    /// disco, muc#admin and muc#owner on a room.
    fn room_iq(&mut self, iq: &Element, from: &Jid, name: &str) -> Answer {
        let get = stanza::stype(iq) == "get";
        let Some(room) = self.rooms.get(name) else {
            return Err(refuse("item-not-found"));
        };
        if get && iq.get_child("query", NS_DISCO_INFO).is_some() {
            let mut q = Element::new("query", NS_DISCO_INFO).child(
                Element::new("identity", NS_DISCO_INFO)
                    .attr("category", "conference")
                    .attr("type", "text")
                    .attr("name", room.config.name.clone()),
            );
            for f in room.config.features() {
                q = q.child(Element::new("feature", NS_DISCO_INFO).attr("var", f));
            }
            let info = Form::new("result")
                .with_type(ROOMINFO)
                .field(
                    crate::dataform::Field::new("muc#roominfo_description", "text-single")
                        .value(room.config.description.clone()),
                )
                .field(
                    crate::dataform::Field::new("muc#roominfo_occupants", "text-single")
                        .value(room.occupants.len().to_string()),
                );
            return Ok(vec![iq_result(iq).child(q.child(info.to_element()))]);
        }
        if get && iq.get_child("query", NS_DISCO_ITEMS).is_some() {
            // Occupants are not listed to strangers (XEP-0045 §6.5).
            return Ok(vec![
                iq_result(iq).child(Element::new("query", NS_DISCO_ITEMS))
            ]);
        }
        if let Some(q) = iq.get_child("query", NS_ADMIN) {
            return if get {
                self.admin_list(iq, from, name, q)
            } else {
                self.admin_set(iq, from, name, q)
            };
        }
        if let Some(q) = iq.get_child("query", NS_OWNER) {
            return if get {
                self.owner_get(iq, from, name)
            } else {
                self.owner_set(iq, from, name, q)
            };
        }
        Err(refuse("feature-not-implemented"))
    }

    /// A remote domain became unreachable: its users leave every room, with
    /// status 333 (removed because of a technical problem, XEP-0045 §9.8).
    pub fn domain_gone(&mut self, domain: &str) -> Vec<Element> {
        let mut gone = Vec::new();
        for (name, room) in &self.rooms {
            for o in room.occupants.values() {
                if let Some(j) = o.jids.iter().find(|j| {
                    let host = bare_of(j).rsplit('@').next().unwrap_or("");
                    crate::jid::server_of(host) == domain
                }) {
                    gone.push((name.clone(), j.clone()));
                }
            }
        }
        let mut out = Vec::new();
        for (name, jid) in gone {
            out.extend(self.depart(&name, &jid, None, &["333"], None));
        }
        // Nothing goes to the departed: their domain is out of reach.
        out.retain(|e| {
            let to = e.get_attr("to").unwrap_or("");
            let host = bare_of(to).rsplit('@').next().unwrap_or("");
            crate::jid::server_of(host) != domain
        });
        out
    }

    /// An error came back for something the room sent: the occupant it went
    /// to is gone (XEP-0045 §7.2.11 leaves this to the service; we remove it).
    fn bounced(&mut self, from: &Jid, to: &Jid) -> Answer {
        let (Some(name), None) = (to.local(), to.resource()) else {
            return Ok(vec![]);
        };
        let name = name.to_string();
        let full = from.to_string();
        if self
            .rooms
            .get(&name)
            .and_then(|r| r.nick_of(&full))
            .is_some()
        {
            return Ok(self.depart(&name, &full, None, &[], None));
        }
        Ok(vec![])
    }

    /// Writes a persistent room's configuration, subject and affiliations.
    fn save(&self, name: &str) -> Result<(), StoreError> {
        let Some(r) = self.rooms.get(name) else {
            return Ok(());
        };
        if !r.config.persistent {
            return self.store.muc_delete_room(&self.host, name);
        }
        let affs: Vec<(String, String)> = r
            .affiliations
            .iter()
            .map(|(j, a)| (j.clone(), a.as_str().to_string()))
            .collect();
        self.store.muc_put_room(
            &self.host,
            name,
            &r.config.form("submit").to_element(),
            r.subject.as_ref(),
            &affs,
        )
    }

    /// The occupant's presence as others see it: from its room nick, with
    /// its muc#user item (the real JID to those allowed to see it) and `codes`.
    pub(super) fn occupant_presence(
        &self,
        room: &Room,
        o: &Occupant,
        to: &str,
        sees_jid: bool,
        codes: &[&str],
        unavailable: bool,
    ) -> Element {
        let mut p = Element::new("presence", NS_CLIENT)
            .attr("from", format!("{}/{}", room.jid, o.nick))
            .attr("to", to);
        if unavailable {
            p = p.attr("type", "unavailable");
        } else {
            for c in o.presence.elements().filter(|c| c.ns == NS_CLIENT) {
                p = p.child(c.clone());
            }
        }
        let bare = o
            .jids
            .first()
            .map(|j| bare_of(j).to_string())
            .unwrap_or_default();
        let mut item = Element::new("item", NS_USER)
            .attr("affiliation", room.affiliation(&bare).as_str())
            .attr("role", if unavailable { "none" } else { o.role.as_str() });
        if sees_jid {
            if let Some(j) = o.jids.first() {
                item = item.attr("jid", j.clone());
            }
        }
        let mut x = Element::new("x", NS_USER).child(item);
        for c in codes {
            x = x.child(Element::new("status", NS_USER).attr("code", *c));
        }
        p.child(x)
    }

    /// Whether `viewer` (an occupant's role) may see real JIDs in `room`.
    pub(super) fn sees_jids(room: &Room, viewer: Role) -> bool {
        room.config.whois_anyone || viewer == Role::Moderator
    }

    /// `o`'s presence to every occupant (to `o` itself with status 110 and `self_codes`).
    pub(super) fn broadcast_presence(
        &self,
        room: &Room,
        o: &Occupant,
        codes: &[&str],
        self_codes: &[&str],
        unavailable: bool,
    ) -> Vec<Element> {
        let mut out = Vec::new();
        for other in room.occupants.values().filter(|x| x.nick != o.nick) {
            for j in &other.jids {
                out.push(self.occupant_presence(
                    room,
                    o,
                    j,
                    Self::sees_jids(room, other.role),
                    codes,
                    unavailable,
                ));
            }
        }
        let mut mine: Vec<&str> = vec!["110"];
        mine.extend_from_slice(codes);
        mine.extend_from_slice(self_codes);
        for j in &o.jids {
            out.push(self.occupant_presence(room, o, j, true, &mine, unavailable));
        }
        out
    }

    /// A message from the room (bare) to every occupant.
    pub(super) fn to_all(&self, room: &Room, m: Element) -> Vec<Element> {
        room.occupants
            .values()
            .flat_map(|o| o.jids.iter())
            .map(|j| {
                let mut e = m.clone();
                e.set_attr("to", j.clone());
                e
            })
            .collect()
    }

    /// Removes `full` from room `name` (leaving, kicked, banned, gone): its
    /// unavailable presence with `codes` goes to all and `extra` (e.g. a
    /// reason or `<destroy/>`) to the one leaving. An empty temporary room goes.
    pub(super) fn depart(
        &mut self,
        name: &str,
        full: &str,
        status: Option<Element>,
        codes: &[&str],
        extra: Option<Element>,
    ) -> Vec<Element> {
        let Some(room) = self.rooms.get_mut(name) else {
            return vec![];
        };
        let Some(nick) = room.nick_of(full).map(str::to_string) else {
            return vec![];
        };
        let mut gone = room.occupants.remove(&nick).expect("found by nick");
        let others: Vec<String> = gone.jids.iter().filter(|j| *j != full).cloned().collect();
        if !others.is_empty() && codes.is_empty() {
            // The same person is still here from another client: only this one leaves.
            gone.jids = others.clone();
            room.occupants.insert(nick.clone(), gone.clone());
            gone.jids = vec![full.to_string()];
            let room = &self.rooms[name];
            return vec![self.occupant_presence(room, &gone, full, true, &["110"], true)];
        }
        if let Some(s) = status {
            gone.presence = Element::new("presence", NS_CLIENT).child(s);
        }
        let room = &self.rooms[name];
        let mut out = Vec::new();
        for other in room.occupants.values() {
            for j in &other.jids {
                let mut p = self.occupant_presence(
                    room,
                    &gone,
                    j,
                    Self::sees_jids(room, other.role),
                    codes,
                    true,
                );
                copy_status(&gone.presence, &mut p);
                out.push(p);
            }
        }
        let mut mine: Vec<&str> = vec!["110"];
        mine.extend_from_slice(codes);
        for j in &gone.jids {
            let mut p = self.occupant_presence(room, &gone, j, true, &mine, true);
            copy_status(&gone.presence, &mut p);
            if let Some(e) = &extra {
                if let Some(x) = p.get_child_mut("x", NS_USER) {
                    x.children.push(crate::element::Node::Element(e.clone()));
                }
            }
            out.push(p);
        }
        if room.is_empty() && !room.config.persistent {
            tracing::debug!(room = %room.jid, "empty temporary room destroyed");
            self.rooms.remove(name);
        }
        out
    }
}

/// Copies a `<status/>` text into an unavailable presence.
fn copy_status(from: &Element, to: &mut Element) {
    if let Some(s) = from.get_child("status", NS_CLIENT) {
        to.children
            .insert(0, crate::element::Node::Element(s.clone()));
    }
}

#[cfg(test)]
mod tests;
