//! The [pubsub] section: the XEP-0060 service at `pubsub.<domain>`, whether it runs and the bounds on what users and peers can make it hold.

use serde::{Deserialize, Serialize};

/// Publish-subscribe (XEP-0060) at `pubsub.<domain>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PubsubSection {
    /// Off: no service at pubsub.<domain> (stanzas to it get service-unavailable).
    pub enabled: bool,
    /// Nodes the service holds in all.
    pub max_nodes: usize,
    /// Nodes one account may own.
    pub max_nodes_per_owner: usize,
    /// Items a node keeps (its pubsub#max_items may be lower, not higher).
    pub max_items_per_node: usize,
    /// Subscriptions one node may have.
    pub max_subscriptions_per_node: usize,
    /// Bytes of one item's payload; larger ones get <not-acceptable/><payload-too-big/>.
    pub max_payload_bytes: usize,
    /// Notifications held for servers that cannot be reached (sent again,
    /// in order, when their link is back); past it they are dropped.
    pub max_held_notifications: usize,
    /// While a server cannot be reached, one held notification goes to it
    /// this often; one that did not bounce by the next round means the
    /// server is back (keep it above limits.s2s_redial_secs).
    pub probe_secs: u64,
}

impl Default for PubsubSection {
    fn default() -> Self {
        PubsubSection {
            enabled: true,
            max_nodes: 10_000,
            max_nodes_per_owner: 100,
            max_items_per_node: 100,
            max_subscriptions_per_node: 10_000,
            max_payload_bytes: 65_536,
            max_held_notifications: 10_000,
            probe_secs: 20,
        }
    }
}
