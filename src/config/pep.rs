//! The [pep] section: XEP-0163 personal eventing on every account (with XEP-0115 capabilities), whether it runs and the bounds on what accounts and peers can make it hold.

use serde::{Deserialize, Serialize};

/// Personal eventing (XEP-0163): each account's bare JID is a pubsub service.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PepSection {
    /// Off: pubsub requests to accounts get service-unavailable.
    pub enabled: bool,
    /// Nodes one account may have.
    pub max_nodes_per_account: usize,
    /// Items a node keeps (a node's pubsub#max_items may be lower, not higher; the default is 1).
    pub max_items_per_node: usize,
    /// Explicit subscriptions one node may have (contacts with +notify need none).
    pub max_subscriptions_per_node: usize,
    /// Bytes of one item's payload; larger ones get <not-acceptable/><payload-too-big/>.
    pub max_payload_bytes: usize,
    /// (account, resource) pairs whose capabilities are tracked, in all.
    pub max_recipients: usize,
    /// XEP-0115 hashes whose features are remembered.
    pub max_caps: usize,
    /// disco#info queries about unknown hashes waiting for their answer.
    pub max_pending_queries: usize,
}

impl Default for PepSection {
    fn default() -> Self {
        PepSection {
            enabled: true,
            max_nodes_per_account: 100,
            max_items_per_node: 100,
            max_subscriptions_per_node: 1_000,
            max_payload_bytes: 65_536,
            max_recipients: 50_000,
            max_caps: 10_000,
            max_pending_queries: 1_000,
        }
    }
}
