//! `intercloud init`: a node directory with its config, self-signed TLS material and data dir.

use crate::config::{self, ROLES};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    #[error("cannot write {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("bad domain {0:?}: {1}")]
    Domain(String, intercloud_actors::jid::JidError),
    #[error("unknown role {0:?} (roles: cloud, exchange, root)")]
    Role(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// What `init` creates.
pub struct InitOptions<'a> {
    pub dir: &'a Path,
    pub domain: &'a str,
    pub roles: Vec<String>,
    pub c2s_port: u16,
    pub s2s_port: u16,
    pub p2p_port: u16,
}

/// Writes `DIR/intercloud.toml`, `DIR/tls/{cert,key}.pem` and `DIR/data/`; returns the config path.
pub fn init(o: &InitOptions<'_>) -> Result<PathBuf, InitError> {
    intercloud_actors::jid::Jid::domain_jid(o.domain)
        .map_err(|e| InitError::Domain(o.domain.to_string(), e))?;
    let mut roles = o.roles.clone();
    for r in &roles {
        if !ROLES.contains(&r.as_str()) {
            return Err(InitError::Role(r.clone()));
        }
    }
    if !roles.iter().any(|r| r == "cloud") {
        roles.insert(0, "cloud".into());
    }
    let cfg = o.dir.join("intercloud.toml");
    if cfg.exists() {
        return Err(InitError::Exists(cfg));
    }
    for d in [o.dir.to_path_buf(), o.dir.join("data"), o.dir.join("tls")] {
        std::fs::create_dir_all(&d).map_err(|e| InitError::Io(d.clone(), e))?;
    }
    let cert = o.dir.join("tls/cert.pem");
    let key = o.dir.join("tls/key.pem");
    if !cert.exists() || !key.exists() {
        crate::tls::generate_self_signed(o.domain, &cert, &key)?;
    }
    let secret: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let text = config::template(
        o.domain, &roles, o.c2s_port, o.s2s_port, o.p2p_port, &secret,
    );
    std::fs::write(&cfg, text).map_err(|e| InitError::Io(cfg.clone(), e))?;
    Ok(cfg)
}
