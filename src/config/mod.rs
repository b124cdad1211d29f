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
    pub pubsub: PubsubSection,
    #[serde(default)]
    pub muc: MucSection,
    #[serde(default)]
    pub pep: PepSection,
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

mod template;
pub use template::template;

mod limits;
pub use limits::Limits;

mod muc;
mod pep;
mod pubsub;
pub use muc::MucSection;
pub use pep::PepSection;
pub use pubsub::PubsubSection;

#[cfg(test)]
mod tests;
