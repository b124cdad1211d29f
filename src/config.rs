//! The node's configuration file (TOML): every key, its safe default, and the commented template `intercloud init` writes.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("bad config {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    #[error("bad config: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    #[serde(default)]
    pub c2s: C2sSection,
    #[serde(default)]
    pub s2s: S2sSection,
    #[serde(default)]
    pub p2p: P2pSection,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub authority: AuthoritySection,
    #[serde(default)]
    pub catalog: CatalogSection,
    #[serde(default)]
    pub gateway: GatewaySection,
    #[serde(default)]
    pub negotiation: NegotiationSection,
    #[serde(default)]
    pub faults: FaultsSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub limits: Limits,
    /// The directory relative paths are resolved against (the config file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub domain: String,
    #[serde(default = "default_roles")]
    pub roles: Vec<String>,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// tracing filter, e.g. "info" or "intercloud=debug".
    #[serde(default = "default_log")]
    pub log: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C2sSection {
    pub bind: String,
    pub port: u16,
    pub allow_anonymous: bool,
    /// XEP-0077 in-band registration (after STARTTLS, before authentication).
    pub allow_registration: bool,
    /// Accounts in-band registration may create per minute, in all.
    pub registrations_per_minute: u32,
}

impl Default for C2sSection {
    fn default() -> Self {
        C2sSection {
            bind: "127.0.0.1".into(),
            port: 5222,
            allow_anonymous: false,
            allow_registration: false,
            registrations_per_minute: 10,
        }
    }
}

/// Server-to-server federation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sSection {
    pub bind: String,
    pub port: u16,
    /// Peer authentication methods allowed: "external" (XEP-0178), "dialback" (XEP-0220).
    pub auth: Vec<String>,
    /// Refuse peers that do not do STARTTLS.
    pub tls_required: bool,
    /// PEM files of the CAs whose certificates SASL EXTERNAL accepts.
    pub trust_anchors: Vec<PathBuf>,
    /// When not empty, only these domains may federate with us.
    pub allow: Vec<String>,
    /// These domains may never federate with us.
    pub deny: Vec<String>,
    /// Secret for dialback keys (XEP-0185); `init` generates one.
    pub dialback_secret: String,
    /// DNS servers ("ip:port") for SRV lookups; empty: the system's.
    pub dns_servers: Vec<String>,
    /// Static routes: domain -> "host:port", tried before the directory and DNS.
    pub routes: std::collections::BTreeMap<String, String>,
}

impl Default for S2sSection {
    fn default() -> Self {
        S2sSection {
            bind: "127.0.0.1".into(),
            port: 5269,
            auth: vec!["external".into(), "dialback".into()],
            tls_required: true,
            trust_anchors: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            dialback_secret: String::new(),
            dns_servers: Vec::new(),
            routes: Default::default(),
        }
    }
}

impl S2sSection {
    /// Whether policy lets `domain` federate with us.
    pub fn allows(&self, domain: &str) -> bool {
        let d = domain.to_ascii_lowercase();
        if self.deny.iter().any(|x| x.eq_ignore_ascii_case(&d)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|x| x.eq_ignore_ascii_case(&d))
    }

    pub fn external(&self) -> bool {
        self.auth.iter().any(|a| a == "external")
    }

    pub fn dialback(&self) -> bool {
        self.auth.iter().any(|a| a == "dialback")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pSection {
    /// Address the libp2p host listens on.
    pub bind: String,
    /// 0 turns the directory off for this node.
    pub port: u16,
    /// Roots to join: multiaddrs ending in /p2p/<peer id>.
    pub bootstrap: Vec<String>,
    /// Root-key files (base64 ed25519, one per line) whose revocations and delegations the zone takes.
    pub root_keys: Vec<String>,
    /// Seconds between anti-entropy rounds of roots (and re-dials of bootstrap peers).
    pub anti_entropy_secs: u64,
    /// Seconds other nodes may cache this node's record.
    pub record_ttl_secs: u32,
    /// Ask the roots' trust authority for an s2s certificate (and renew it).
    pub enroll: bool,
    /// Token from a root's `authority.enrollment_tokens`; empty: wait for `directory approve`.
    pub enrollment_token: String,
    /// Renew when less than this share (percent) of the certificate's lifetime is left.
    pub renew_percent: u8,
    /// Exchanges: sub-zones delegated to this node (`directory delegate`), which it holds and answers for.
    pub zones: Vec<String>,
    /// At most this many seconds between two checks of the roots' authority
    /// records (trust anchors); checks start every anti-entropy round and
    /// back off while nothing changes.
    pub anchors_refresh_secs: u64,
    /// Outbound gossip messages a libp2p connection may queue (gossipsub
    /// allocates this many slots per connection up front).
    pub gossip_queue: usize,
    /// Roots: enrollments waiting for approval at once (a peer can ask for
    /// any name); more are refused until some are approved or dropped.
    pub max_waiting_enrollments: usize,
    /// Directory records cached from lookups at once.
    pub max_cached_records: usize,
    /// Incoming libp2p connections established, and being set up, at once.
    pub max_peer_connections: u32,
    pub max_pending_peer_connections: u32,
}

impl Default for P2pSection {
    fn default() -> Self {
        P2pSection {
            bind: "127.0.0.1".into(),
            port: 4001,
            bootstrap: Vec::new(),
            root_keys: Vec::new(),
            anti_entropy_secs: 10,
            record_ttl_secs: 300,
            enroll: true,
            enrollment_token: String::new(),
            renew_percent: 33,
            zones: Vec::new(),
            gossip_queue: 64,
            max_waiting_enrollments: 1000,
            max_cached_records: 10_000,
            max_peer_connections: 1000,
            max_pending_peer_connections: 128,
            anchors_refresh_secs: 60,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            cert: "tls/cert.pem".into(),
            key: "tls/key.pem".into(),
        }
    }
}

/// The trust authority of a root.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthoritySection {
    /// The CA certificate and key (PEM); empty: `<data_dir>/ca/cert.pem` and `key.pem`, created at first start.
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// Seconds a certificate it issues is valid.
    pub cert_validity_secs: u64,
    /// Tokens that let a cloud enroll without approval: "secret" (any domain) or "domain:secret".
    pub enrollment_tokens: Vec<String>,
}

impl Default for AuthoritySection {
    fn default() -> Self {
        AuthoritySection {
            ca_cert: PathBuf::new(),
            ca_key: PathBuf::new(),
            cert_validity_secs: 90 * 24 * 3600,
            enrollment_tokens: Vec::new(),
        }
    }
}

/// The catalog service of exchanges and roots (`service.<domain>`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogSection {
    /// This cloud's own resource description (Turtle), published to `publish_to`.
    pub resources: PathBuf,
    /// Exchanges and roots (domains) this cloud publishes its description to.
    pub publish_to: Vec<String>,
    /// Milliseconds one SPARQL query may run.
    pub query_time_ms: u64,
    /// Rows a sparql_query answer carries at most.
    pub max_results: usize,
    /// Largest description a cloud may publish, in bytes.
    pub max_description_bytes: usize,
    /// Seconds after which a running command answers `executing` (XEP-0244) and completes later.
    pub async_after_secs: u64,
    /// Queries running at once.
    pub max_running_queries: usize,
    /// Clouds one constraint_catalog_resources answer names at most.
    pub match_limit: usize,
    /// Seconds a command session and a finished job's output are kept.
    pub session_timeout_secs: u64,
    /// Memory of one SPARQL query worker process, in MiB (past it the query fails).
    pub query_memory_mb: u64,
    /// Command sessions kept at once, in all and for one requester.
    pub max_command_sessions: usize,
    pub max_command_sessions_per_jid: usize,
}

/// The cloud's gateway JID: an in-process client of the node, available while it runs.
/// Test and chaos runs: a fault table (partitions, delay, loss, duplication) the node's dialed connections obey.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsSection {
    /// A JSON fault table the node reloads when it changes; empty = no fault injection.
    pub file: PathBuf,
    /// Milliseconds between checks of the file.
    pub poll_ms: u64,
}

impl Default for FaultsSection {
    fn default() -> Self {
        FaultsSection {
            file: PathBuf::new(),
            poll_ms: 200,
        }
    }
}

/// Prometheus metrics (`GET /metrics`) and a health check (`GET /healthz`) over HTTP.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Address the HTTP listener binds.
    pub bind: String,
    /// Its port; 0 = no listener.
    pub port: u16,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            bind: "127.0.0.1".into(),
            port: 0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    /// Off: no gateway, no negotiation.
    pub enabled: bool,
    /// The gateway's JID; empty = gateway@<domain>.
    pub jid: String,
    /// The resource the node binds for it.
    pub resource: String,
    /// Human status in its presence (the free capacity is appended).
    pub status: String,
    /// Other clouds' gateways are <peer_gateway>@<their domain>.
    pub peer_gateway: String,
    /// Clouds sharing an exchange the gateway subscribes to, at most.
    pub max_peers: usize,
    /// Seconds between asks to the exchanges for new clouds to subscribe to.
    pub peers_refresh_secs: u64,
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            enabled: true,
            jid: String::new(),
            resource: "node".into(),
            status: "Intercloud gateway".into(),
            peer_gateway: "gateway".into(),
            max_peers: 256,
            peers_refresh_secs: 30,
        }
    }
}

/// What this cloud negotiates and accepts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NegotiationSection {
    /// Services offered to other clouds, with their capacity.
    pub offers: Vec<intercloud_actors::negotiation::policy::Offer>,
    /// Domains allowed to negotiate (and to see the gateway's presence); empty = any.
    pub partners: Vec<String>,
    /// Offer what is left when less than asked is free.
    pub counter: bool,
    /// Seconds a step waits for its answer (and a reservation for its confirmation).
    pub timeout_secs: u64,
    /// Seconds between retransmissions of an unanswered step.
    pub retransmit_secs: u64,
    /// Milliseconds the flow waits for a match's presence after subscribing to it.
    pub presence_wait_ms: u64,
    /// Negotiations open at once; more proposals are rejected.
    pub max_open: usize,
    /// Exchanges asked for matching clouds; empty = catalog.publish_to.
    pub exchanges: Vec<String>,
}

impl Default for NegotiationSection {
    fn default() -> Self {
        NegotiationSection {
            offers: Vec::new(),
            partners: Vec::new(),
            counter: true,
            timeout_secs: 10,
            retransmit_secs: 2,
            presence_wait_ms: 2000,
            max_open: 1000,
            exchanges: Vec::new(),
        }
    }
}

impl Default for CatalogSection {
    fn default() -> Self {
        CatalogSection {
            resources: PathBuf::new(),
            publish_to: Vec::new(),
            query_time_ms: 10_000,
            max_results: 1000,
            max_description_bytes: 1 << 20,
            async_after_secs: 5,
            max_running_queries: 4,
            match_limit: 100,
            session_timeout_secs: 600,
            query_memory_mb: 256,
            max_command_sessions: 10_000,
            max_command_sessions_per_jid: 32,
        }
    }
}

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

fn default_roles() -> Vec<String> {
    vec!["cloud".into()]
}
fn default_data_dir() -> PathBuf {
    "data".into()
}
fn default_log() -> String {
    "info".into()
}

pub const ROLES: &[&str] = &["cloud", "exchange", "root"];

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        let mut c: Config =
            toml::from_str(&text).map_err(|e| ConfigError::Parse(path.to_path_buf(), e))?;
        c.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        intercloud_actors::jid::Jid::domain_jid(&self.node.domain)
            .map_err(|e| ConfigError::Invalid(format!("node.domain: {e}")))?;
        for a in &self.s2s.auth {
            if a != "external" && a != "dialback" {
                return Err(ConfigError::Invalid(format!(
                    "s2s.auth: unknown method {a:?} (external, dialback)"
                )));
            }
        }
        if self.s2s.dialback() && self.s2s.dialback_secret.len() < 16 {
            return Err(ConfigError::Invalid(
                "s2s.dialback_secret must be at least 16 characters when dialback is allowed"
                    .into(),
            ));
        }
        for r in &self.node.roles {
            if !ROLES.contains(&r.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "unknown role {r:?} (roles: {})",
                    ROLES.join(", ")
                )));
            }
        }
        if !self.p2p.zones.is_empty() && !self.has_role("exchange") {
            return Err(ConfigError::Invalid(
                "p2p.zones: only an exchange holds delegated zones".into(),
            ));
        }
        if self.gateway.enabled {
            let j: intercloud_actors::jid::Jid = self
                .gateway_jid()
                .parse()
                .map_err(|e| ConfigError::Invalid(format!("gateway.jid: {e}")))?;
            if j.domain() != self.node.domain || j.local().is_none() {
                return Err(ConfigError::Invalid(
                    "gateway.jid must be an account of node.domain".into(),
                ));
            }
        }
        for o in &self.negotiation.offers {
            if o.service.trim().is_empty() {
                return Err(ConfigError::Invalid(
                    "negotiation.offers: every offer names its service".into(),
                ));
            }
        }
        let l = &self.limits;
        if l.max_stanza_bytes < 4096 || l.max_depth < 4 || l.session_queue == 0 {
            return Err(ConfigError::Invalid(
                "limits too small (max_stanza_bytes >= 4096, max_depth >= 4, session_queue >= 1)"
                    .into(),
            ));
        }
        if l.session_queue_bytes < l.max_stanza_bytes || l.s2s_queue_bytes < l.max_stanza_bytes {
            return Err(ConfigError::Invalid(
                "limits.session_queue_bytes and limits.s2s_queue_bytes must hold at least one stanza of max_stanza_bytes".into(),
            ));
        }
        if l.max_sessions_per_account == 0
            || l.s2s_max_domains == 0
            || l.s2s_max_pending == 0
            || l.s2s_max_pending_per_sender == 0
        {
            return Err(ConfigError::Invalid(
                "limits.max_sessions_per_account, s2s_max_domains, s2s_max_pending and s2s_max_pending_per_sender must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// A path from the config, resolved against the config's directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.path(&self.node.data_dir)
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("intercloud.db")
    }

    /// The gateway's JID (gateway.jid, or gateway@<domain>).
    pub fn gateway_jid(&self) -> String {
        if self.gateway.jid.is_empty() {
            format!("gateway@{}", self.node.domain)
        } else {
            self.gateway.jid.clone()
        }
    }

    /// The gateway account's password, generated at first start (mode 0600):
    /// `intercloud negotiate` logs in with it.
    pub fn gateway_secret_path(&self) -> PathBuf {
        self.data_dir().join("gateway.secret")
    }

    /// Exchanges the gateway asks for matching clouds.
    pub fn negotiation_exchanges(&self) -> Vec<String> {
        if self.negotiation.exchanges.is_empty() {
            self.catalog.publish_to.clone()
        } else {
            self.negotiation.exchanges.clone()
        }
    }

    /// The node's ed25519 key (libp2p identity and directory record signatures).
    pub fn node_key_path(&self) -> PathBuf {
        self.data_dir().join("node.key")
    }

    /// The trust authority's CA certificate and key (roots).
    pub fn ca_paths(&self) -> (PathBuf, PathBuf) {
        let a = &self.authority;
        let dir = self.data_dir().join("ca");
        let pick = |p: &PathBuf, d: &str| {
            if p.as_os_str().is_empty() {
                dir.join(d)
            } else {
                self.path(p)
            }
        };
        (pick(&a.ca_cert, "cert.pem"), pick(&a.ca_key, "key.pem"))
    }

    /// Where the certificate from the trust authority is kept.
    pub fn enrolled_paths(&self) -> (PathBuf, PathBuf) {
        let dir = self.data_dir().join("tls");
        (dir.join("enrolled-cert.pem"), dir.join("enrolled-key.pem"))
    }

    /// The roots' CA certificates learnt from the directory (PEM), kept across restarts.
    pub fn learnt_anchors_path(&self) -> PathBuf {
        self.data_dir().join("tls/authorities.pem")
    }

    /// The certificate s2s presents: the trust authority's when enrolled, else `tls.cert`.
    pub fn s2s_identity_paths(&self) -> (PathBuf, PathBuf) {
        let (c, k) = self.enrolled_paths();
        if c.exists() && k.exists() {
            (c, k)
        } else {
            (self.path(&self.tls.cert), self.path(&self.tls.key))
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.node.roles.iter().any(|r| r == role)
    }
}

/// The commented config `intercloud init` writes.
pub fn template(
    domain: &str,
    roles: &[String],
    c2s_port: u16,
    s2s_port: u16,
    p2p_port: u16,
    dialback_secret: &str,
) -> String {
    let l = Limits::default();
    let roles = roles
        .iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"# intercloud node configuration. Relative paths are relative to this file.

[node]
# The XMPP domain this node serves: the cloud's name in the Intercloud.
domain = "{domain}"
# Roles: "cloud" (every node), "exchange" (a catalog of many clouds), "root" (the Intercloud Root).
roles = [{roles}]
# Where the database (accounts, rosters, offline messages) lives.
data_dir = "data"
# Log filter (tracing's EnvFilter syntax); RUST_LOG overrides it.
log = "info"

[c2s]
# Client-to-server listener. Bind "0.0.0.0" or "::" to accept clients from other hosts.
bind = "127.0.0.1"
port = {c2s_port}
# Offer SASL ANONYMOUS (throw-away accounts).
allow_anonymous = false
# XEP-0077 in-band registration: anyone may create an account (benchmarks, closed networks).
allow_registration = false
# Accounts it may create per minute, in all.
registrations_per_minute = 10

[s2s]
# Server-to-server listener (federation).
bind = "127.0.0.1"
port = {s2s_port}
# How peers prove their domain: "external" = SASL EXTERNAL with a certificate
# from a trusted CA (XEP-0178); "dialback" = Server Dialback (XEP-0220).
auth = ["external", "dialback"]
# Refuse peers that will not do STARTTLS.
tls_required = true
# PEM files of the CAs trusted for SASL EXTERNAL (e.g. the Intercloud roots).
trust_anchors = []
# If not empty, only these domains may federate with this node; deny always wins.
allow = []
deny = []
# Secret for dialback keys. Keep it private; changing it only invalidates keys in flight.
dialback_secret = "{dialback_secret}"
# DNS servers ("ip:port") for _xmpp-server._tcp SRV lookups; empty = the system's.
dns_servers = []

# Static routes, tried before the Intercloud directory and DNS:
# "cloud2.test" = "127.0.0.1:5270"
[s2s.routes]

[p2p]
# The libp2p host that carries the Intercloud Root directory (0 turns it off).
bind = "127.0.0.1"
port = {p2p_port}
# Roots to join, e.g. "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW..." (`intercloud directory id` prints a node's).
bootstrap = []
# Public keys (base64 ed25519) of the roots, whose revocations and delegations are trusted.
root_keys = []
# Seconds between anti-entropy rounds among roots (and re-dials of bootstrap peers).
anti_entropy_secs = 10
# Seconds other nodes may cache this node's directory record.
record_ttl_secs = 300
# Ask the roots' trust authority for the s2s certificate (kept in data/tls/enrolled-*.pem) and renew it.
enroll = true
# A token from a root's [authority] enrollment_tokens; empty = wait for `intercloud directory approve`.
enrollment_token = ""
# Renew when less than this percentage of the certificate's lifetime is left.
renew_percent = 33
# Exchanges: sub-zones the roots delegated to this node, e.g. ["asia.test"]; it holds their records.
zones = []
# At most this many seconds between checks of the roots' authority records (trust anchors); checks back off from every round while nothing changes.
anchors_refresh_secs = 60
# Outbound gossip messages one libp2p connection may queue (slots are allocated per connection).
gossip_queue = 64
# Roots: enrollments waiting for approval at once (any peer can ask for any name); more are refused.
max_waiting_enrollments = 1000
# Directory records cached from lookups at once.
max_cached_records = 10000
# Incoming libp2p connections established, and being set up (handshakes), at once.
max_peer_connections = 1000
max_pending_peer_connections = 128

[authority]
# Roots only: the trust authority's CA. Empty paths = data/ca/cert.pem and key.pem, created at first start.
ca_cert = ""
ca_key = ""
# Seconds a certificate it issues stays valid (90 days).
cert_validity_secs = 7776000
# Tokens that let a cloud enroll without an administrator's approval:
# "secret" for any domain, or "cloud1.test:secret" for one.
enrollment_tokens = []

[catalog]
# This cloud's resource description (Turtle, the ontology in actors/ontology/intercloud.ttl).
resources = ""
# Exchanges and roots (domains) it is published to with publish_resources, over s2s when remote.
publish_to = []
# Exchanges and roots answer XEP-0050 commands at service.<domain> over their catalog:
# milliseconds a SPARQL query may run, rows it may return, largest description accepted.
query_time_ms = 10000
max_results = 1000
max_description_bytes = 1048576
# A command still running after this many seconds answers "executing" (XEP-0244) and completes later.
async_after_secs = 5
# Queries running at once (more get resource-constraint), clouds per constraint answer.
max_running_queries = 4
match_limit = 100
# Seconds a command session, and a finished job's output, are kept.
session_timeout_secs = 600
# sparql_query runs in worker processes: each may use this many MiB (past it the query fails),
# and is killed at query_time_ms.
query_memory_mb = 256
# Command sessions kept at once, in all and for one requester; more get <resource-constraint/>.
max_command_sessions = 10000
max_command_sessions_per_jid = 32

[gateway]
# The cloud's gateway JID (empty = gateway@<domain>): available while the node runs, with its
# free capacity in its presence; it subscribes to the gateways of clouds sharing an exchange.
enabled = true
jid = ""
resource = "node"
status = "Intercloud gateway"
# Other clouds' gateways are <peer_gateway>@<their domain>.
peer_gateway = "gateway"
max_peers = 256
peers_refresh_secs = 30

[negotiation]
# Services this cloud offers to others, e.g.
# offers = [{{ service = "storage-replication", protocols = ["AMQP"], transports = ["UDT", "TCP"], capacity = 1000, unit = "GB", max_duration_secs = 0 }}]
offers = []
# Domains allowed to negotiate; empty = any.
partners = []
# Offer what is left when less than asked is free.
counter = true
# Seconds a step waits for its answer; seconds between retransmissions.
timeout_secs = 10
retransmit_secs = 2
# Milliseconds `intercloud negotiate` waits for a match's presence.
presence_wait_ms = 2000
# Negotiations open at once.
max_open = 1000
# Exchanges asked for matching clouds; empty = catalog.publish_to.
exchanges = []

[faults]
# Chaos tests only: a JSON fault table (partitions, delay, loss, duplication; see
# scenarios/README.md) that this node's dialed s2s and libp2p connections obey,
# re-read every poll_ms when it changes. Empty = no fault injection.
file = ""
poll_ms = 200

[metrics]
# Prometheus metrics at http://bind:port/metrics and a health check at /healthz
# (200 while the node serves). port = 0: no listener.
bind = "127.0.0.1"
port = 0

[tls]
# Certificate and key for STARTTLS (PEM). `intercloud init` generated a self-signed pair.
cert = "tls/cert.pem"
key = "tls/key.pem"

[limits]
# Largest stanza accepted, in bytes; larger ones end the stream with <policy-violation/>.
max_stanza_bytes = {}
# Deepest element nesting inside a stanza.
max_depth = {}
# Offline messages kept per account (XEP-0160); further ones are bounced.
max_offline_per_user = {}
# Roster items per account.
max_roster_items = {}
# Bytes of one roster item's name and groups; longer ones get <not-acceptable/>.
max_roster_item_bytes = {}
# Entities one session may have sent directed presence to at once; more get <resource-constraint/>.
max_directed_presences = {}
# Remote resources (with the local accounts they sent presence to) tracked to mark them
# unavailable when their domain's link dies; past it presence passes untracked.
max_remote_presences = {}
# Stanzas queued towards one client before it is disconnected as too slow.
session_queue = {}
# Bytes queued towards one client, or held for it unacknowledged (XEP-0198), before it is
# disconnected with <policy-violation/>.
session_queue_bytes = {}
# Sessions of one account at once, waiting-to-resume ones included: a new one first ends the
# one detached longest; when all are connected, binding fails with <resource-constraint/>.
max_sessions_per_account = {}
# Seconds a client has to finish STARTTLS, SASL and binding.
negotiation_timeout_secs = {}
# Seconds of silence from a client before its stream is closed (<connection-timeout/>).
idle_timeout_secs = {}
# Seconds between whitespace keepalives sent to an idle client.
keepalive_secs = {}
# Failed SASL attempts allowed on one stream.
max_auth_attempts = {}
# Open client connections in all, and from one IP address.
max_connections = {}
max_connections_per_ip = {}
# Failed logins from one address (an IPv6 /64), and for one account name, within auth_window_secs;
# beyond them logins from there, or for it, get <temporary-auth-failure/> until the window ends.
auth_failures_per_address = {}
auth_failures_per_account = {}
auth_window_secs = {}
# Addresses and account names whose failures are counted at once (each).
auth_throttle_entries = {}
# PBKDF2 iterations for new SCRAM credentials.
scram_iterations = {}
# Seconds to reach and authenticate a remote server before senders get <remote-server-timeout/>.
s2s_connect_timeout_secs = {}
# Seconds without traffic before an outgoing s2s link is closed.
s2s_idle_timeout_secs = {}
# Stanzas held per remote domain while its link connects.
s2s_queue = {}
# Bytes held per remote domain while its link connects or is slow; more bounce with <resource-constraint/>.
s2s_queue_bytes = {}
# Remote domains with a link at once (idle and unreachable ones are let go); more bounce.
s2s_max_domains = {}
# Remote domains being dialed for the first time at once, in all and for one sender; more bounce.
s2s_max_pending = {}
s2s_max_pending_per_sender = {}
# Failed s2s dials to a domain reached before, and dials whose connection broke while negotiating,
# are retried (backing off from 200 ms to 2 s) for this many seconds before what is queued bounces.
s2s_redial_secs = {}
# Stanza ids remembered from s2s peers to drop the copies a link resends after a cut (XEP-0198).
s2s_dedup_ids = {}
# Incoming s2s connections in all.
max_s2s_connections = {}
# Seconds a client's session waits to be resumed after its connection drops (XEP-0198).
sm_resume_timeout_secs = {}
# Stream management asks the peer for an acknowledgement after this many stanzas.
sm_ack_every = {}
"#,
        l.max_stanza_bytes,
        l.max_depth,
        l.max_offline_per_user,
        l.max_roster_items,
        l.max_roster_item_bytes,
        l.max_directed_presences,
        l.max_remote_presences,
        l.session_queue,
        l.session_queue_bytes,
        l.max_sessions_per_account,
        l.negotiation_timeout_secs,
        l.idle_timeout_secs,
        l.keepalive_secs,
        l.max_auth_attempts,
        l.max_connections,
        l.max_connections_per_ip,
        l.auth_failures_per_address,
        l.auth_failures_per_account,
        l.auth_window_secs,
        l.auth_throttle_entries,
        l.scram_iterations,
        l.s2s_connect_timeout_secs,
        l.s2s_idle_timeout_secs,
        l.s2s_queue,
        l.s2s_queue_bytes,
        l.s2s_max_domains,
        l.s2s_max_pending,
        l.s2s_max_pending_per_sender,
        l.s2s_redial_secs,
        l.s2s_dedup_ids,
        l.max_s2s_connections,
        l.sm_resume_timeout_secs,
        l.sm_ack_every,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dotted names of every setting in `v` (a table with no entries,
    /// or an array, is one setting).
    fn keys(v: &toml::Value) -> std::collections::BTreeSet<String> {
        let mut out = Default::default();
        flat(v, "", &mut out);
        out.into_keys().collect()
    }

    /// What `init` writes sets every setting the structs have, to the value
    /// the structs default to (but for what `init` is told).
    #[test]
    fn the_template_holds_every_setting_at_its_default() {
        let secret = "0123456789abcdef0123";
        let t = template("c.test", &["cloud".into()], 5222, 5269, 4001, secret);
        let written: Config = toml::from_str(&t).unwrap();
        let minimal =
            format!("[node]\ndomain = \"c.test\"\n[s2s]\ndialback_secret = \"{secret}\"\n");
        let defaults: Config = toml::from_str(&minimal).unwrap();
        let (w, d) = (
            toml::Value::try_from(&written).unwrap(),
            toml::Value::try_from(&defaults).unwrap(),
        );
        let (wk, dk) = (keys(&toml::from_str(&t).unwrap()), keys(&d));
        let missing: Vec<_> = dk.difference(&wk).collect();
        assert!(missing.is_empty(), "the template lacks {missing:?}");
        let unknown: Vec<_> = wk.difference(&dk).collect();
        assert!(unknown.is_empty(), "the template has unknown {unknown:?}");
        // Values: all but what init sets from its arguments.
        let (mut wv, mut dv) = (Default::default(), Default::default());
        flat(&w, "", &mut wv);
        flat(&d, "", &mut dv);
        for k in ["c2s.port", "s2s.port", "p2p.port"] {
            wv.remove(k);
            dv.remove(k);
        }
        let differ: Vec<_> = dv
            .iter()
            .filter(|(k, v)| wv.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: template {:?}, default {v}", wv.get(k)))
            .collect();
        assert!(differ.is_empty(), "{differ:#?}");
    }

    /// Every setting in `v` by dotted name, with its value written as TOML.
    fn flat(v: &toml::Value, prefix: &str, out: &mut std::collections::BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) if !t.is_empty() => {
                for (k, v) in t {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flat(v, &name, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }

    /// The README's configuration reference names every setting there is,
    /// and no other.
    #[test]
    fn the_readme_documents_every_setting() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("## Configuration reference")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("README has a configuration reference");
        let mut documented = std::collections::BTreeSet::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let first = line.split(" | ").next().unwrap_or("");
            for name in first.trim_start_matches("| ").split(", ") {
                documented.insert(name.trim_matches('`').to_string());
            }
        }
        let t = template(
            "c.test",
            &["cloud".into()],
            5222,
            5269,
            4001,
            "0123456789abcdef0123",
        );
        let c: Config = toml::from_str(&t).unwrap();
        let settings = keys(&toml::Value::try_from(&c).unwrap());
        let missing: Vec<_> = settings.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "the README does not document {missing:?}"
        );
        let stale: Vec<_> = documented.difference(&settings).collect();
        assert!(
            stale.is_empty(),
            "the README documents what is no setting: {stale:?}"
        );
        // And gives each its default, where it writes one as a value.
        let minimal =
            "[node]\ndomain = \"c.test\"\n[s2s]\ndialback_secret = \"0123456789abcdef0123\"\n";
        let d: Config = toml::from_str(minimal).unwrap();
        let mut defaults = Default::default();
        flat(&toml::Value::try_from(&d).unwrap(), "", &mut defaults);
        let mut wrong = Vec::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split(" | ").collect();
            let names: Vec<&str> = cells[0].trim_start_matches("| ").split(", ").collect();
            let values: Vec<&str> = cells[1].split("`, `").collect();
            if names.len() != values.len() || !cells[1].starts_with('`') {
                continue;
            }
            for (n, v) in names.iter().zip(values) {
                let n = n.trim_matches('`');
                let v = v.trim_matches('`');
                match defaults.get(n) {
                    Some(want) if want == v => {}
                    Some(want) => wrong.push(format!("{n}: README {v}, default {want}")),
                    None => {}
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn template_parses_to_defaults() {
        let t = template(
            "cloud1.test",
            &["cloud".into(), "root".into()],
            5222,
            5269,
            4001,
            "0123456789abcdef0123",
        );
        let c: Config = toml::from_str(&t).unwrap();
        assert_eq!(c.node.domain, "cloud1.test");
        assert_eq!(c.node.roles, vec!["cloud", "root"]);
        assert_eq!(
            c.limits.max_stanza_bytes,
            Limits::default().max_stanza_bytes
        );
        c.validate().unwrap();
    }
}
