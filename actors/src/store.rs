//! The node's embedded database (SQLite, WAL): accounts, rosters, offline messages, the directory zone and audit chain, catalog descriptions, agreements, the negotiation outbox, node secrets, publish-subscribe state (store/pubsub.rs) and persistent rooms (store/muc.rs).

use crate::credentials::{ScramHash, ScramKeys};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("account {0} already exists")]
    AlreadyExists(String),
    #[error("no account {0}")]
    NoSuchUser(String),
}

/// The subscription state of a roster item (RFC 6121 §2.1.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscription {
    None,
    To,
    From,
    Both,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }
    pub fn parse(s: &str) -> Subscription {
        match s {
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            _ => Subscription::None,
        }
    }
    /// The contact receives the owner's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }
    /// The owner receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }
    pub fn with_to(self, on: bool) -> Subscription {
        Subscription::from_bits(on, self.has_from())
    }
    pub fn with_from(self, on: bool) -> Subscription {
        Subscription::from_bits(self.has_to(), on)
    }
    fn from_bits(to: bool, from: bool) -> Subscription {
        match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }
}

/// One contact of an owner's roster, with the subscription state machine's flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterItem {
    pub contact: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// The owner asked to subscribe and is waiting (`ask='subscribe'`).
    pub ask: bool,
    /// The contact asked to subscribe and the owner has not answered.
    pub pending_in: bool,
    /// Shown in the roster (an item that exists only as a pending request is not).
    pub visible: bool,
    pub groups: Vec<String>,
}

impl RosterItem {
    pub fn new(contact: &str) -> RosterItem {
        RosterItem {
            contact: contact.to_string(),
            name: None,
            subscription: Subscription::None,
            ask: false,
            pending_in: false,
            visible: false,
            groups: Vec::new(),
        }
    }
}

/// A stored offline message.
#[derive(Clone, Debug)]
pub struct OfflineMessage {
    pub id: i64,
    pub xml: String,
    pub stamp: String,
}

/// An agreement between two clouds, as both keep it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Agreement {
    pub id: String,
    /// The other cloud's gateway (bare JID).
    pub peer: String,
    /// "consumer" (we proposed) or "provider" (we gave the capacity).
    pub role: String,
    pub service: String,
    pub protocol: String,
    pub transport: String,
    pub amount: u64,
    pub unit: String,
    pub duration_secs: u64,
    pub terms: String,
    /// Unix seconds.
    pub created: u64,
}

impl Agreement {
    /// Still in force at `now` (unix seconds).
    pub fn active(&self, now: u64) -> bool {
        self.duration_secs == 0 || self.created.saturating_add(self.duration_secs) > now
    }
}

/// The database. One connection behind a mutex: every call is a short statement.
pub struct Store {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    jid TEXT PRIMARY KEY,
    sha1_salt BLOB NOT NULL, sha1_iter INTEGER NOT NULL, sha1_stored BLOB NOT NULL, sha1_server BLOB NOT NULL,
    sha256_salt BLOB NOT NULL, sha256_iter INTEGER NOT NULL, sha256_stored BLOB NOT NULL, sha256_server BLOB NOT NULL,
    created TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS roster (
    owner TEXT NOT NULL, contact TEXT NOT NULL, name TEXT,
    subscription TEXT NOT NULL, ask INTEGER NOT NULL, pending_in INTEGER NOT NULL,
    visible INTEGER NOT NULL, groups TEXT NOT NULL,
    PRIMARY KEY (owner, contact)
);
CREATE TABLE IF NOT EXISTS offline (
    id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, xml TEXT NOT NULL,
    stamp TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX IF NOT EXISTS offline_owner ON offline(owner, id);
CREATE TABLE IF NOT EXISTS zone (slot TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS catalog (domain TEXT PRIMARY KEY, turtle TEXT NOT NULL,
    updated TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')));
CREATE TABLE IF NOT EXISTS agreements (id TEXT NOT NULL, peer TEXT NOT NULL, role TEXT NOT NULL,
    service TEXT NOT NULL, protocol TEXT NOT NULL, transport TEXT NOT NULL, amount INTEGER NOT NULL,
    unit TEXT NOT NULL, duration_secs INTEGER NOT NULL, terms TEXT NOT NULL, created INTEGER NOT NULL,
    PRIMARY KEY (id, peer));
CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, peer TEXT NOT NULL, xml TEXT NOT NULL,
    created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
";

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(pubsub::SCHEMA)?;
        conn.execute_batch(muc::SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// An in-memory database, for tests.
    pub fn in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(pubsub::SCHEMA)?;
        conn.execute_batch(muc::SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node's secret named `name`: 32 random bytes made the first time
    /// it is asked for and kept from then on (restarts included).
    pub fn secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        let db = self.db();
        let fresh: [u8; 32] = rand::random();
        db.execute(
            "INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)",
            rusqlite::params![name, fresh.as_slice()],
        )?;
        let v: Vec<u8> =
            db.query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| {
                r.get(0)
            })?;
        let mut out = [0u8; 32];
        if v.len() == 32 {
            out.copy_from_slice(&v);
        }
        Ok(out)
    }

    /// Sets a new password for an existing account (roster and offline messages stay).
    pub fn set_password(
        &self,
        jid: &str,
        password: &str,
        iterations: u32,
    ) -> Result<(), StoreError> {
        let k1 = ScramKeys::derive(ScramHash::Sha1, password, iterations);
        let k256 = ScramKeys::derive(ScramHash::Sha256, password, iterations);
        self.db().execute(
            "UPDATE accounts SET sha1_salt=?2, sha1_iter=?3, sha1_stored=?4, sha1_server=?5,
                sha256_salt=?6, sha256_iter=?7, sha256_stored=?8, sha256_server=?9 WHERE jid=?1",
            params![
                jid,
                k1.salt,
                k1.iterations,
                k1.stored_key,
                k1.server_key,
                k256.salt,
                k256.iterations,
                k256.stored_key,
                k256.server_key
            ],
        )?;
        Ok(())
    }

    /// Creates an account, storing only SCRAM keys derived from `password`.
    pub fn add_user(&self, jid: &str, password: &str, iterations: u32) -> Result<(), StoreError> {
        let k1 = ScramKeys::derive(ScramHash::Sha1, password, iterations);
        let k256 = ScramKeys::derive(ScramHash::Sha256, password, iterations);
        let db = self.db();
        let n = db.execute(
            "INSERT OR IGNORE INTO accounts (jid, sha1_salt, sha1_iter, sha1_stored, sha1_server,
                sha256_salt, sha256_iter, sha256_stored, sha256_server) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
            params![
                jid,
                k1.salt,
                k1.iterations,
                k1.stored_key,
                k1.server_key,
                k256.salt,
                k256.iterations,
                k256.stored_key,
                k256.server_key
            ],
        )?;
        if n == 0 {
            return Err(StoreError::AlreadyExists(jid.to_string()));
        }
        Ok(())
    }

    /// Removes an account with its roster and offline messages.
    pub fn remove_user(&self, jid: &str) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let n = tx.execute("DELETE FROM accounts WHERE jid = ?1", [jid])?;
        tx.execute("DELETE FROM roster WHERE owner = ?1", [jid])?;
        tx.execute("DELETE FROM offline WHERE owner = ?1", [jid])?;
        tx.commit()?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(jid.to_string()));
        }
        Ok(())
    }

    pub fn list_users(&self) -> Result<Vec<String>, StoreError> {
        let db = self.db();
        let mut st = db.prepare("SELECT jid FROM accounts ORDER BY jid")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn user_exists(&self, jid: &str) -> Result<bool, StoreError> {
        let db = self.db();
        Ok(db
            .query_row("SELECT 1 FROM accounts WHERE jid = ?1", [jid], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The SCRAM keys of an account for one hash.
    pub fn scram_keys(&self, jid: &str, hash: ScramHash) -> Result<Option<ScramKeys>, StoreError> {
        let sql = match hash {
            ScramHash::Sha1 => {
                "SELECT sha1_salt, sha1_iter, sha1_stored, sha1_server FROM accounts WHERE jid = ?1"
            }
            ScramHash::Sha256 => {
                "SELECT sha256_salt, sha256_iter, sha256_stored, sha256_server FROM accounts WHERE jid = ?1"
            }
        };
        let db = self.db();
        Ok(db
            .query_row(sql, [jid], |r| {
                Ok(ScramKeys {
                    salt: r.get(0)?,
                    iterations: r.get(1)?,
                    stored_key: r.get(2)?,
                    server_key: r.get(3)?,
                })
            })
            .optional()?)
    }

    fn item_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RosterItem> {
        let groups: String = r.get(6)?;
        Ok(RosterItem {
            contact: r.get(0)?,
            name: r.get(1)?,
            subscription: Subscription::parse(&r.get::<_, String>(2)?),
            ask: r.get(3)?,
            pending_in: r.get(4)?,
            visible: r.get(5)?,
            groups: groups
                .split('\n')
                .filter(|g| !g.is_empty())
                .map(String::from)
                .collect(),
        })
    }

    /// Every item of `owner`'s roster, pending-only ones included.
    pub fn roster(&self, owner: &str) -> Result<Vec<RosterItem>, StoreError> {
        let db = self.db();
        let mut st = db.prepare_cached(
            "SELECT contact, name, subscription, ask, pending_in, visible, groups FROM roster WHERE owner = ?1 ORDER BY contact",
        )?;
        let rows = st.query_map([owner], Store::item_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn roster_item(
        &self,
        owner: &str,
        contact: &str,
    ) -> Result<Option<RosterItem>, StoreError> {
        let db = self.db();
        let mut st = db.prepare_cached(
            "SELECT contact, name, subscription, ask, pending_in, visible, groups FROM roster WHERE owner = ?1 AND contact = ?2",
        )?;
        Ok(st
            .query_row([owner, contact], Store::item_from_row)
            .optional()?)
    }

    pub fn put_roster_item(&self, owner: &str, item: &RosterItem) -> Result<(), StoreError> {
        let db = self.db();
        db.prepare_cached(
            "INSERT OR REPLACE INTO roster (owner, contact, name, subscription, ask, pending_in, visible, groups)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
        )?
        .execute(params![
            owner,
            item.contact,
            item.name,
            item.subscription.as_str(),
            item.ask,
            item.pending_in,
            item.visible,
            item.groups.join("\n")
        ])?;
        Ok(())
    }

    pub fn delete_roster_item(&self, owner: &str, contact: &str) -> Result<(), StoreError> {
        self.db().execute(
            "DELETE FROM roster WHERE owner = ?1 AND contact = ?2",
            [owner, contact],
        )?;
        Ok(())
    }

    /// Drops everything an ephemeral (anonymous) user left behind.
    pub fn forget(&self, jid: &str) -> Result<(), StoreError> {
        let db = self.db();
        db.execute("DELETE FROM roster WHERE owner = ?1", [jid])?;
        db.execute("DELETE FROM offline WHERE owner = ?1", [jid])?;
        Ok(())
    }

    /// Stores a message for later delivery, unless `owner` already holds `limit`.
    /// Returns false when the limit was reached.
    pub fn push_offline(&self, owner: &str, xml: &str, limit: usize) -> Result<bool, StoreError> {
        let db = self.db();
        let n: i64 = db
            .prepare_cached("SELECT COUNT(*) FROM offline WHERE owner = ?1")?
            .query_row([owner], |r| r.get(0))?;
        if n as usize >= limit {
            return Ok(false);
        }
        db.prepare_cached("INSERT INTO offline (owner, xml) VALUES (?1, ?2)")?
            .execute([owner, xml])?;
        Ok(true)
    }

    /// The stored messages of `owner`, oldest first.
    pub fn offline(&self, owner: &str) -> Result<Vec<OfflineMessage>, StoreError> {
        let db = self.db();
        let mut st =
            db.prepare_cached("SELECT id, xml, stamp FROM offline WHERE owner = ?1 ORDER BY id")?;
        let rows = st.query_map([owner], |r| {
            Ok(OfflineMessage {
                id: r.get(0)?,
                xml: r.get(1)?,
                stamp: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes delivered offline messages.
    pub fn delete_offline(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        for id in ids {
            tx.execute("DELETE FROM offline WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl Store {
    /// Saves a directory record (JSON) in its zone slot, replacing the old one.
    pub fn put_zone_record(&self, slot: &str, json: &str) -> Result<(), StoreError> {
        self.db()
            .prepare_cached("INSERT OR REPLACE INTO zone (slot, json) VALUES (?1, ?2)")?
            .execute([slot, json])?;
        Ok(())
    }

    /// Removes a zone slot (a record a revocation displaced).
    pub fn delete_zone_record(&self, slot: &str) -> Result<(), StoreError> {
        self.db()
            .execute("DELETE FROM zone WHERE slot = ?1", [slot])?;
        Ok(())
    }

    /// Every stored directory record (JSON).
    pub fn zone_records(&self) -> Result<Vec<String>, StoreError> {
        let db = self.db();
        let mut st = db.prepare("SELECT json FROM zone ORDER BY slot")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keeps a cloud's published resource description (the catalog reloads them at start).
    pub fn put_description(&self, domain: &str, turtle: &str) -> Result<(), StoreError> {
        self.db()
            .prepare_cached("INSERT OR REPLACE INTO catalog (domain, turtle) VALUES (?1, ?2)")?
            .execute([domain, turtle])?;
        Ok(())
    }

    /// Every published description: (domain, Turtle).
    pub fn descriptions(&self) -> Result<Vec<(String, String)>, StoreError> {
        let db = self.db();
        let mut st = db.prepare("SELECT domain, turtle FROM catalog ORDER BY domain")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keeps an agreement; false when one with this id and peer exists already (nothing changes).
    pub fn put_agreement(&self, a: &Agreement) -> Result<bool, StoreError> {
        let n = self
            .db()
            .prepare_cached(
                "INSERT OR IGNORE INTO agreements (id, peer, role, service, protocol, transport, amount, unit, duration_secs, terms, created) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                a.id,
                a.peer,
                a.role,
                a.service,
                a.protocol,
                a.transport,
                a.amount as i64,
                a.unit,
                a.duration_secs as i64,
                a.terms,
                a.created as i64
            ])?;
        Ok(n == 1)
    }

    /// Every agreement, oldest first.
    pub fn agreements(&self) -> Result<Vec<Agreement>, StoreError> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT id, peer, role, service, protocol, transport, amount, unit, duration_secs, terms, created \
             FROM agreements ORDER BY created, id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(Agreement {
                id: r.get(0)?,
                peer: r.get(1)?,
                role: r.get(2)?,
                service: r.get(3)?,
                protocol: r.get(4)?,
                transport: r.get(5)?,
                amount: r.get::<_, i64>(6)?.max(0) as u64,
                unit: r.get(7)?,
                duration_secs: r.get::<_, i64>(8)?.max(0) as u64,
                terms: r.get(9)?,
                created: r.get::<_, i64>(10)?.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keeps a proposal that could not reach its peer, to send again later.
    pub fn put_outbox(
        &self,
        id: &str,
        peer: &str,
        xml: &str,
        created: u64,
    ) -> Result<(), StoreError> {
        self.db()
            .prepare_cached(
                "INSERT OR REPLACE INTO outbox (id, peer, xml, created) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, peer, xml, created as i64])?;
        Ok(())
    }

    pub fn delete_outbox(&self, id: &str) -> Result<(), StoreError> {
        self.db()
            .prepare_cached("DELETE FROM outbox WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    /// Held proposals: (id, peer, xml, created).
    pub fn outbox(&self) -> Result<Vec<(String, String, String, u64)>, StoreError> {
        let db = self.db();
        let mut st =
            db.prepare("SELECT id, peer, xml, created FROM outbox ORDER BY created, id")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get::<_, i64>(3)?.max(0) as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Appends an audit entry (JSON) at `seq`; an existing `seq` is kept (entries never change).
    pub fn append_audit(&self, seq: u64, json: &str) -> Result<(), StoreError> {
        self.db()
            .prepare_cached("INSERT OR IGNORE INTO audit (seq, json) VALUES (?1, ?2)")?
            .execute(params![seq as i64, json])?;
        Ok(())
    }

    /// The audit log, in order (JSON entries).
    pub fn audit_entries(&self) -> Result<Vec<String>, StoreError> {
        let db = self.db();
        let mut st = db.prepare("SELECT json FROM audit ORDER BY seq")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

mod muc;
mod pubsub;
pub use muc::StoredRoom;
pub use pubsub::StoredNode;

#[cfg(test)]
mod tests;
