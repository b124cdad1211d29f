//! Persistent multi-user chat rooms in the store: configuration form, subject and affiliations, per service (`conference.<domain>`).

use super::*;
use crate::element::Element;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS muc_rooms (service TEXT NOT NULL, room TEXT NOT NULL,
    config TEXT NOT NULL, subject TEXT, subject_by TEXT, PRIMARY KEY (service, room));
CREATE TABLE IF NOT EXISTS muc_affiliations (service TEXT NOT NULL, room TEXT NOT NULL,
    jid TEXT NOT NULL, affiliation TEXT NOT NULL, PRIMARY KEY (service, room, jid));
";

/// A persistent room as stored.
#[derive(Debug, Default)]
pub struct StoredRoom {
    pub name: String,
    pub config: Option<Element>,
    /// The subject and the nick that set it.
    pub subject: Option<(String, String)>,
    pub affiliations: Vec<(String, String)>,
}

impl Store {
    /// The persistent rooms of `service`.
    pub fn muc_rooms(&self, service: &str) -> Result<Vec<StoredRoom>, StoreError> {
        let db = self.db();
        let mut rooms: std::collections::BTreeMap<String, StoredRoom> = Default::default();
        let mut st = db.prepare_cached(
            "SELECT room, config, subject, subject_by FROM muc_rooms WHERE service = ?1",
        )?;
        let rows = st.query_map([service], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        for row in rows {
            let (name, config, subject, by) = row?;
            rooms.insert(
                name.clone(),
                StoredRoom {
                    name,
                    config: serde_json::from_str(&config).ok(),
                    subject: subject.map(|s| (s, by.unwrap_or_default())),
                    affiliations: Vec::new(),
                },
            );
        }
        let mut st = db.prepare_cached(
            "SELECT room, jid, affiliation FROM muc_affiliations WHERE service = ?1",
        )?;
        let rows = st.query_map([service], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (room, jid, a) = row?;
            if let Some(r) = rooms.get_mut(&room) {
                r.affiliations.push((jid, a));
            }
        }
        Ok(rooms.into_values().collect())
    }

    /// Writes a room whole (configuration, subject, affiliations) in one transaction.
    pub fn muc_put_room(
        &self,
        service: &str,
        room: &str,
        config: &Element,
        subject: Option<&(String, String)>,
        affiliations: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO muc_rooms (service, room, config, subject, subject_by) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                service,
                room,
                serde_json::to_string(config).unwrap_or_default(),
                subject.map(|s| s.0.as_str()),
                subject.map(|s| s.1.as_str())
            ],
        )?;
        tx.execute(
            "DELETE FROM muc_affiliations WHERE service = ?1 AND room = ?2",
            params![service, room],
        )?;
        for (jid, a) in affiliations {
            tx.execute(
                "INSERT INTO muc_affiliations (service, room, jid, affiliation) VALUES (?1, ?2, ?3, ?4)",
                params![service, room, jid, a],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn muc_delete_room(&self, service: &str, room: &str) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "DELETE FROM muc_rooms WHERE service = ?1 AND room = ?2",
            params![service, room],
        )?;
        tx.execute(
            "DELETE FROM muc_affiliations WHERE service = ?1 AND room = ?2",
            params![service, room],
        )?;
        tx.commit()?;
        Ok(())
    }
}
