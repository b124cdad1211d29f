//! The [muc] section: the XEP-0045 service at `conference.<domain>`, whether it runs and the bounds on what users and peers can make it hold.

use serde::{Deserialize, Serialize};

/// Multi-user chat (XEP-0045) at `conference.<domain>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MucSection {
    /// Off: no service at conference.<domain> (stanzas to it get service-unavailable).
    pub enabled: bool,
    /// Rooms the service holds in all.
    pub max_rooms: usize,
    /// Occupants one room may have (its muc#roomconfig_maxusers may be lower).
    pub max_occupants_per_room: usize,
    /// Groupchat messages a room keeps for newcomers (its history length may be lower).
    pub max_history: usize,
    /// Affiliations (members, admins, owners, outcasts) one room may record.
    pub max_affiliations_per_room: usize,
}

impl Default for MucSection {
    fn default() -> Self {
        MucSection {
            enabled: true,
            max_rooms: 10_000,
            max_occupants_per_room: 200,
            max_history: 50,
            max_affiliations_per_room: 1000,
        }
    }
}
