//! Publish-subscribe state in the store: nodes (with their configuration form), affiliations, subscriptions and items, per service (`pubsub.<domain>`, or an account for PEP).

use super::*;
use crate::element::Element;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pubsub_nodes (service TEXT NOT NULL, node TEXT NOT NULL,
    config TEXT NOT NULL, PRIMARY KEY (service, node));
CREATE TABLE IF NOT EXISTS pubsub_affiliations (service TEXT NOT NULL, node TEXT NOT NULL,
    jid TEXT NOT NULL, affiliation TEXT NOT NULL, PRIMARY KEY (service, node, jid));
CREATE TABLE IF NOT EXISTS pubsub_subscriptions (service TEXT NOT NULL, node TEXT NOT NULL,
    subid TEXT NOT NULL, jid TEXT NOT NULL, state TEXT NOT NULL, deliver INTEGER NOT NULL,
    PRIMARY KEY (service, node, subid));
CREATE TABLE IF NOT EXISTS pubsub_items (service TEXT NOT NULL, node TEXT NOT NULL,
    id TEXT NOT NULL, publisher TEXT NOT NULL, payload TEXT, seq INTEGER NOT NULL,
    PRIMARY KEY (service, node, id));
";

/// A node as stored: its configuration form and what hangs off it.
#[derive(Debug, Default)]
pub struct StoredNode {
    pub name: String,
    pub config: Option<Element>,
    pub affiliations: Vec<(String, String)>,
    /// (subid, jid, state, deliver)
    pub subscriptions: Vec<(String, String, String, bool)>,
    /// (id, publisher, payload, seq), oldest first.
    pub items: Vec<(String, String, Option<Element>, u64)>,
}

fn to_json(e: &Element) -> String {
    serde_json::to_string(e).unwrap_or_default()
}

fn from_json(s: &str) -> Option<Element> {
    serde_json::from_str(s).ok()
}

impl Store {
    /// Every node of `service`, with its affiliations, subscriptions and items.
    pub fn pubsub_nodes(&self, service: &str) -> Result<Vec<StoredNode>, StoreError> {
        let db = self.db();
        let mut nodes: std::collections::BTreeMap<String, StoredNode> = Default::default();
        let mut st =
            db.prepare_cached("SELECT node, config FROM pubsub_nodes WHERE service = ?1")?;
        for r in st.query_map([service], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })? {
            let (name, config) = r?;
            nodes.insert(
                name.clone(),
                StoredNode {
                    name,
                    config: from_json(&config),
                    ..StoredNode::default()
                },
            );
        }
        let mut st = db.prepare_cached(
            "SELECT node, jid, affiliation FROM pubsub_affiliations WHERE service = ?1",
        )?;
        for r in st.query_map([service], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })? {
            let (node, jid, a) = r?;
            if let Some(n) = nodes.get_mut(&node) {
                n.affiliations.push((jid, a));
            }
        }
        let mut st = db.prepare_cached(
            "SELECT node, subid, jid, state, deliver FROM pubsub_subscriptions WHERE service = ?1 ORDER BY rowid",
        )?;
        for r in st.query_map([service], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, bool>(4)?,
            ))
        })? {
            let (node, subid, jid, state, deliver) = r?;
            if let Some(n) = nodes.get_mut(&node) {
                n.subscriptions.push((subid, jid, state, deliver));
            }
        }
        let mut st = db.prepare_cached(
            "SELECT node, id, publisher, payload, seq FROM pubsub_items WHERE service = ?1 ORDER BY seq",
        )?;
        for r in st.query_map([service], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })? {
            let (node, id, publisher, payload, seq) = r?;
            if let Some(n) = nodes.get_mut(&node) {
                n.items.push((
                    id,
                    publisher,
                    payload.as_deref().and_then(from_json),
                    seq as u64,
                ));
            }
        }
        Ok(nodes.into_values().collect())
    }

    /// Creates or reconfigures a node.
    pub fn pubsub_put_node(
        &self,
        service: &str,
        node: &str,
        config: &Element,
    ) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT OR REPLACE INTO pubsub_nodes (service, node, config) VALUES (?1, ?2, ?3)",
            params![service, node, to_json(config)],
        )?;
        Ok(())
    }

    /// Deletes a node and everything of it.
    pub fn pubsub_delete_node(&self, service: &str, node: &str) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        for table in [
            "pubsub_nodes",
            "pubsub_affiliations",
            "pubsub_subscriptions",
            "pubsub_items",
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE service = ?1 AND node = ?2"),
                params![service, node],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Sets `jid`'s affiliation (`none` removes it).
    pub fn pubsub_set_affiliation(
        &self,
        service: &str,
        node: &str,
        jid: &str,
        affiliation: &str,
    ) -> Result<(), StoreError> {
        let db = self.db();
        if affiliation == "none" {
            db.execute(
                "DELETE FROM pubsub_affiliations WHERE service = ?1 AND node = ?2 AND jid = ?3",
                params![service, node, jid],
            )?;
        } else {
            db.execute(
                "INSERT OR REPLACE INTO pubsub_affiliations (service, node, jid, affiliation) VALUES (?1, ?2, ?3, ?4)",
                params![service, node, jid, affiliation],
            )?;
        }
        Ok(())
    }

    pub fn pubsub_put_subscription(
        &self,
        service: &str,
        node: &str,
        subid: &str,
        jid: &str,
        state: &str,
        deliver: bool,
    ) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT OR REPLACE INTO pubsub_subscriptions (service, node, subid, jid, state, deliver) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![service, node, subid, jid, state, deliver],
        )?;
        Ok(())
    }

    pub fn pubsub_delete_subscription(
        &self,
        service: &str,
        node: &str,
        subid: &str,
    ) -> Result<(), StoreError> {
        self.db().execute(
            "DELETE FROM pubsub_subscriptions WHERE service = ?1 AND node = ?2 AND subid = ?3",
            params![service, node, subid],
        )?;
        Ok(())
    }

    /// Stores an item and drops `dropped` (those past max_items) in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn pubsub_put_item(
        &self,
        service: &str,
        node: &str,
        id: &str,
        publisher: &str,
        payload: Option<&Element>,
        seq: u64,
        dropped: &[String],
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO pubsub_items (service, node, id, publisher, payload, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![service, node, id, publisher, payload.map(to_json), seq as i64],
        )?;
        for d in dropped {
            tx.execute(
                "DELETE FROM pubsub_items WHERE service = ?1 AND node = ?2 AND id = ?3",
                params![service, node, d],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes some items of a node, or all of them (`ids` None: a purge).
    pub fn pubsub_delete_items(
        &self,
        service: &str,
        node: &str,
        ids: Option<&[String]>,
    ) -> Result<(), StoreError> {
        let db = self.db();
        match ids {
            None => {
                db.execute(
                    "DELETE FROM pubsub_items WHERE service = ?1 AND node = ?2",
                    params![service, node],
                )?;
            }
            Some(ids) => {
                for id in ids {
                    db.execute(
                        "DELETE FROM pubsub_items WHERE service = ?1 AND node = ?2 AND id = ?3",
                        params![service, node, id],
                    )?;
                }
            }
        }
        Ok(())
    }
}
