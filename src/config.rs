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
    pub s2s: ListenSection,
    #[serde(default)]
    pub p2p: P2pSection,
    #[serde(default)]
    pub tls: TlsSection,
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
}

impl Default for C2sSection {
    fn default() -> Self {
        C2sSection {
            bind: "127.0.0.1".into(),
            port: 5222,
            allow_anonymous: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenSection {
    pub bind: String,
    pub port: u16,
}

impl Default for ListenSection {
    fn default() -> Self {
        ListenSection {
            bind: "127.0.0.1".into(),
            port: 5269,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pSection {
    pub port: u16,
}

impl Default for P2pSection {
    fn default() -> Self {
        P2pSection { port: 4001 }
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

/// Every limit the node enforces.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_stanza_bytes: usize,
    pub max_depth: usize,
    pub max_offline_per_user: usize,
    pub max_roster_items: usize,
    pub session_queue: usize,
    pub negotiation_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub keepalive_secs: u64,
    pub max_auth_attempts: u32,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub scram_iterations: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 64,
            max_offline_per_user: 1000,
            max_roster_items: 1000,
            session_queue: 10_000,
            negotiation_timeout_secs: 30,
            idle_timeout_secs: 900,
            keepalive_secs: 60,
            max_auth_attempts: 3,
            max_connections: 10_000,
            max_connections_per_ip: 1000,
            scram_iterations: 4096,
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
        for r in &self.node.roles {
            if !ROLES.contains(&r.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "unknown role {r:?} (roles: {})",
                    ROLES.join(", ")
                )));
            }
        }
        let l = &self.limits;
        if l.max_stanza_bytes < 4096 || l.max_depth < 4 || l.session_queue == 0 {
            return Err(ConfigError::Invalid(
                "limits too small (max_stanza_bytes >= 4096, max_depth >= 4, session_queue >= 1)"
                    .into(),
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
}

/// The commented config `intercloud init` writes.
pub fn template(
    domain: &str,
    roles: &[String],
    c2s_port: u16,
    s2s_port: u16,
    p2p_port: u16,
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

[s2s]
# Server-to-server listener (federation).
bind = "127.0.0.1"
port = {s2s_port}

[p2p]
# libp2p port of the Intercloud Root directory.
port = {p2p_port}

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
# Stanzas queued towards one client before it is disconnected as too slow.
session_queue = {}
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
# PBKDF2 iterations for new SCRAM credentials.
scram_iterations = {}
"#,
        l.max_stanza_bytes,
        l.max_depth,
        l.max_offline_per_user,
        l.max_roster_items,
        l.session_queue,
        l.negotiation_timeout_secs,
        l.idle_timeout_secs,
        l.keepalive_secs,
        l.max_auth_attempts,
        l.max_connections,
        l.max_connections_per_ip,
        l.scram_iterations,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_to_defaults() {
        let t = template(
            "cloud1.test",
            &["cloud".into(), "root".into()],
            5222,
            5269,
            4001,
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
