//! Starts a node's gateway (its account, its secret, the in-process session) and the negotiation actor on it.

use crate::config::Config;
use intercloud_actors::gateway::{Gateway, GatewaySettings};
use intercloud_actors::jid::Jid;
use intercloud_actors::negotiation::policy::Policy;
use intercloud_actors::negotiation::{Negotiation, NegotiationSettings};
use intercloud_actors::Cloud;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("gateway.jid: {0}")]
    Jid(String),
    #[error("gateway secret {0}: {1}")]
    Secret(std::path::PathBuf, std::io::Error),
    #[error("gateway account: {0}")]
    Account(#[from] intercloud_actors::store::StoreError),
}

/// The gateway account exists and its password is in `data/gateway.secret` (0600).
fn ensure_account(config: &Config, cloud: &Cloud, jid: &Jid) -> Result<(), GatewayError> {
    let path = config.gateway_secret_path();
    let bare = jid.to_string();
    let iterations = config.limits.scram_iterations;
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => {
            if !cloud.store.user_exists(&bare)? {
                cloud.store.add_user(&bare, s.trim(), iterations)?;
            }
        }
        _ => {
            let secret = format!("{:032x}", rand::random::<u128>());
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| GatewayError::Secret(path.clone(), e))?;
            }
            write_private(&path, &secret).map_err(|e| GatewayError::Secret(path.clone(), e))?;
            if cloud.store.user_exists(&bare)? {
                cloud.store.set_password(&bare, &secret, iterations)?;
            } else {
                cloud.store.add_user(&bare, &secret, iterations)?;
            }
        }
    }
    Ok(())
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The negotiation settings a config describes.
pub fn negotiation_settings(config: &Config) -> NegotiationSettings {
    let n = &config.negotiation;
    NegotiationSettings {
        policy: Policy {
            offers: n.offers.clone(),
            partners: n.partners.clone(),
            counter: n.counter,
        },
        timeout: Duration::from_secs(n.timeout_secs.max(1)),
        retransmit: Duration::from_secs(n.retransmit_secs.max(1)),
        max_open: n.max_open.max(1),
        presence_wait: Duration::from_millis(n.presence_wait_ms),
        exchanges: config.negotiation_exchanges(),
        peer_gateway: config.gateway.peer_gateway.clone(),
        max_peers: config.gateway.max_peers,
        peers_refresh: Duration::from_secs(config.gateway.peers_refresh_secs.max(1)),
        clock: Arc::new(intercloud_actors::clock::SystemClock),
    }
}

/// Logs the gateway in and starts negotiation on it (on the current arbiter).
pub fn start(config: &Config, cloud: Arc<Cloud>) -> Result<Gateway, GatewayError> {
    let jid: Jid = config
        .gateway_jid()
        .parse()
        .map_err(|e: intercloud_actors::jid::JidError| GatewayError::Jid(e.to_string()))?;
    ensure_account(config, &cloud, &jid)?;
    let gw = Gateway::start(
        cloud.clone(),
        GatewaySettings {
            jid,
            resource: config.gateway.resource.clone(),
            status: config.gateway.status.clone(),
        },
        Arc::new(|xml: &str| {
            crate::xmpp::codec::parse_stanza(xml, intercloud_actors::element::NS_CLIENT)
        }),
    );
    Negotiation::start(
        negotiation_settings(config),
        cloud.store.clone(),
        gw.clone(),
    );
    Ok(gw)
}
