//! The [limits] section: every bound the node enforces on what peers and clients can make it hold or do, with its safe default.

use super::*;

/// Every limit the node enforces.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_stanza_bytes: usize,
    pub max_depth: usize,
    pub max_offline_per_user: usize,
    pub max_roster_items: usize,
    pub max_roster_item_bytes: usize,
    pub max_directed_presences: usize,
    pub max_remote_presences: usize,
    pub session_queue: usize,
    pub session_queue_bytes: usize,
    pub max_sessions_per_account: usize,
    pub negotiation_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub keepalive_secs: u64,
    pub max_auth_attempts: u32,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub auth_failures_per_address: u32,
    pub auth_failures_per_account: u32,
    pub auth_window_secs: u64,
    pub auth_throttle_entries: usize,
    pub scram_iterations: u32,
    pub s2s_connect_timeout_secs: u64,
    pub s2s_idle_timeout_secs: u64,
    pub s2s_queue: usize,
    pub s2s_queue_bytes: usize,
    pub s2s_max_domains: usize,
    pub s2s_max_pending: usize,
    pub s2s_max_pending_per_sender: usize,
    pub s2s_redial_secs: u64,
    pub s2s_dedup_ids: usize,
    pub max_s2s_connections: usize,
    pub sm_resume_timeout_secs: u64,
    pub sm_ack_every: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 64,
            max_offline_per_user: 1000,
            max_roster_items: 1000,
            max_roster_item_bytes: 4096,
            max_directed_presences: 1000,
            max_remote_presences: 100_000,
            session_queue: 10_000,
            session_queue_bytes: 4 << 20,
            max_sessions_per_account: 10,
            negotiation_timeout_secs: 30,
            idle_timeout_secs: 900,
            keepalive_secs: 60,
            max_auth_attempts: 3,
            max_connections: 10_000,
            max_connections_per_ip: 1000,
            auth_failures_per_address: 20,
            auth_failures_per_account: 10,
            auth_window_secs: 300,
            auth_throttle_entries: 100_000,
            scram_iterations: 4096,
            s2s_connect_timeout_secs: 10,
            s2s_idle_timeout_secs: 600,
            s2s_queue: 10_000,
            s2s_queue_bytes: 4 << 20,
            s2s_max_domains: 1000,
            s2s_max_pending: 64,
            s2s_max_pending_per_sender: 8,
            s2s_redial_secs: 15,
            s2s_dedup_ids: 65_536,
            max_s2s_connections: 1000,
            sm_resume_timeout_secs: 300,
            sm_ack_every: 5,
        }
    }
}
