//! The directory as a node uses it: its own record, registration at start, roots' zone persistence, and resolution for s2s.

use super::host::{Host, HostConfig, P2pError, TransportKind};
use super::key;
use crate::config::Config;
use crate::xmpp::resolve::{DirectoryLookup, DirectoryUnreachable};
use intercloud_actors::directory::audit::Entry;
use intercloud_actors::directory::record::{Body, Record, SignedRecord, VERSION};
use intercloud_actors::directory::zone::slot;
use intercloud_actors::store::Store;
use libp2p::Multiaddr;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Key(#[from] key::KeyError),
    #[error(transparent)]
    P2p(#[from] P2pError),
    #[error("bad multiaddr {0:?}")]
    Addr(String),
    #[error(transparent)]
    Store(#[from] intercloud_actors::store::StoreError),
    #[error(transparent)]
    Authority(#[from] super::authority::AuthorityError),
    #[error("{0}: not in the directory")]
    NotFound(String),
    #[error("{0}: no enrollment waiting and no record")]
    NothingToApprove(String),
    #[error(transparent)]
    Refused(#[from] super::host::Refusal),
}

/// The directory as the s2s layer sees it.
pub struct Directory {
    pub host: Host,
    /// Keys whose revocations count.
    pub root_keys: Vec<String>,
    /// Roots to join are configured: until one answers, a lookup waits
    /// for it (briefly) instead of calling the domain unknown.
    pub expects_roots: bool,
}

impl DirectoryLookup for Directory {
    fn revoked(&self, domain: &str, cert: &str) -> Pin<Box<dyn Future<Output = bool> + Send>> {
        let host = self.host.clone();
        let domain = domain.to_string();
        let cert = cert.to_string();
        let roots = self.root_keys.clone();
        Box::pin(async move {
            match host.revocation(&domain).await {
                Some(r) if roots.contains(&r.record.key) => match r.record.body {
                    Body::Revocation { cert_sha256, .. } => {
                        cert_sha256.as_deref() == Some(cert.as_str())
                    }
                    _ => false,
                },
                _ => false,
            }
        })
    }

    fn s2s_endpoints(
        &self,
        domain: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, DirectoryUnreachable>> + Send>> {
        let host = self.host.clone();
        let expects_roots = self.expects_roots;
        let domain = domain.to_string();
        Box::pin(async move {
            // A node that has just started may not have reached a root yet:
            // it waits for one (briefly) rather than call the domain unknown.
            let mut found = host.lookup(&domain).await;
            let t0 = std::time::Instant::now();
            while matches!(found, Ok(None) | Err(_))
                && expects_roots
                && host.roots().await.is_empty()
                && t0.elapsed() < Duration::from_secs(3)
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
                found = host.lookup(&domain).await;
            }
            match found {
                Ok(Some(r)) => match r.record.body {
                    Body::Cloud { s2s, .. } => {
                        Ok(s2s.iter().filter_map(|a| a.parse().ok()).collect())
                    }
                    _ => Ok(Vec::new()),
                },
                Ok(None) => Ok(Vec::new()),
                // Without roots to join, the directory is not where names are.
                Err(_) if !expects_roots => Ok(Vec::new()),
                Err(_) => Err(DirectoryUnreachable),
            }
        })
    }
}

/// This node's record, signed with its key: `p2p` are the addresses its host
/// listens on, `cert_sha256` names the certificate its s2s presents.
pub fn own_record(
    config: &Config,
    secret: &[u8; 32],
    peer_id: &str,
    p2p: Vec<String>,
    cert_sha256: String,
) -> SignedRecord {
    let cert_sha256 = Some(cert_sha256);
    // Milliseconds, and increasing within the process: every new record replaces the last.
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    let serial = ms.max(LAST.load(std::sync::atomic::Ordering::Relaxed) + 1);
    LAST.store(serial, std::sync::atomic::Ordering::Relaxed);
    Record {
        v: VERSION,
        domain: config.node.domain.to_ascii_lowercase(),
        serial,
        ttl: config.p2p.record_ttl_secs,
        key: String::new(),
        body: Body::Cloud {
            peer_id: peer_id.to_string(),
            s2s: vec![format!("{}:{}", config.s2s.bind, config.s2s.port)],
            cert_sha256,
            roles: config.node.roles.clone(),
            exchanges: Vec::new(),
            p2p,
        },
    }
    .sign(&key::signing_key(secret))
}

/// Appends governance acts (revocations, delegations) to the root's audit trail.
fn audit(store: &Store, r: &SignedRecord) -> Result<(), DirectoryError> {
    let (action, detail) = match &r.record.body {
        Body::Revocation {
            reason,
            cert_sha256,
            ..
        } => (
            "revoke",
            format!(
                "{reason} (certificate {})",
                cert_sha256.as_deref().unwrap_or("-")
            ),
        ),
        Body::Delegation { exchanges } => ("delegate", exchanges.join(",")),
        Body::Certificate {
            holder_key,
            cert_sha256,
            not_after,
            renewal,
        } => (
            if *renewal { "renew" } else { "enroll" },
            format!("holder {holder_key}, certificate {cert_sha256}, valid until {not_after}"),
        ),
        Body::Approval { holder_key } => ("approve", format!("holder {holder_key}")),
        Body::Authority { ca_pem } => (
            "authority",
            format!("CA certificate {}", pem_sha256(ca_pem)),
        ),
        Body::Cloud { .. } => return Ok(()),
    };
    let last = store
        .audit_entries()?
        .last()
        .and_then(|j| serde_json::from_str::<Entry>(j).ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let e = Entry::after(
        last.as_ref(),
        now,
        action,
        &r.record.domain,
        &r.record.key,
        &detail,
    );
    store.append_audit(
        e.seq,
        &serde_json::to_string(&e).expect("entries serialise"),
    )?;
    Ok(())
}

/// SHA-256 of the first certificate in a PEM text.
pub fn pem_sha256(pem: &str) -> String {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .and_then(|c| c.ok())
        .map(|c| crate::tls::cert_sha256(c.as_ref()))
        .unwrap_or_default()
}

/// The libp2p address others use to reach this node.
pub fn peer_addr(config: &Config) -> Result<String, DirectoryError> {
    let secret = key::load_or_create(&config.node_key_path())?;
    let id = key::keypair(&secret).public().to_peer_id();
    Ok(format!(
        "/ip4/{}/tcp/{}/p2p/{id}",
        config.p2p.bind, config.p2p.port
    ))
}

/// Starts the directory host of a node (None when `p2p.port` is 0); a root
/// also starts its trust authority.
pub async fn start(
    config: &Config,
    store: Arc<Store>,
    net: &crate::net::Net,
    metrics: Arc<intercloud_actors::metrics::Metrics>,
) -> Result<Option<Host>, DirectoryError> {
    if config.p2p.port == 0 {
        return Ok(None);
    }
    let secret = key::load_or_create(&config.node_key_path())?;
    let keypair = key::keypair(&secret);
    let peer_id = keypair.public().to_peer_id();
    let parse = |s: &String| {
        s.parse::<Multiaddr>()
            .map_err(|_| DirectoryError::Addr(s.clone()))
    };
    let memory = net.is_memory();
    let listen = if memory {
        parse(&format!("/memory/{}", config.p2p.port))?
    } else {
        parse(&format!("/ip4/{}/tcp/{}", config.p2p.bind, config.p2p.port))?
    };
    let bootstrap = config
        .p2p
        .bootstrap
        .iter()
        .map(|a| if memory { to_memory(a) } else { a.clone() })
        .map(|a| parse(&a))
        .collect::<Result<Vec<_>, _>>()?;
    let root = config.has_role("root");
    // Roots hold the zone; exchanges the sub-zones delegated to them.
    let holds = root || !config.p2p.zones.is_empty();
    let mut initial = Vec::new();
    if holds {
        for j in store.zone_records()? {
            match SignedRecord::from_json(&j) {
                Ok(r) => initial.push(r),
                Err(e) => tracing::warn!(error = %e, "unreadable stored record"),
            }
        }
    }
    let st = store.clone();
    let on_accept: super::host::OnAccept = Arc::new(move |r: &SignedRecord| {
        if let Err(e) = st.put_zone_record(&slot(r), &r.to_json()) {
            tracing::error!(error = %e, "could not persist a zone record");
        }
        if let Err(e) = audit(&st, r) {
            tracing::error!(error = %e, "could not append to the audit log");
        }
    });
    let every = Duration::from_secs(config.p2p.anti_entropy_secs.max(1));
    let authority = if root {
        let (cert, key) = config.ca_paths();
        Some(super::authority::Authority::load_or_create(
            &config.node.domain.to_ascii_lowercase(),
            &cert,
            &key,
            Duration::from_secs(config.authority.cert_validity_secs.max(1)),
            config.authority.enrollment_tokens.clone(),
            key::signing_key(&secret),
        )?)
    } else {
        None
    };
    let host = Host::start(HostConfig {
        keypair,
        root,
        root_keys: root_keys(config)?,
        listen: vec![listen],
        bootstrap,
        transport: if memory {
            TransportKind::Memory
        } else {
            TransportKind::Tcp
        },
        faults: net
            .faults()
            .map(|f| (f.clone(), config.node.domain.to_ascii_lowercase())),
        anti_entropy: every,
        request_timeout: Duration::from_secs(5),
        initial,
        on_accept: holds.then_some(on_accept),
        authority,
        zones: config.p2p.zones.clone(),
        gossip_queue: config.p2p.gossip_queue,
        max_waiting_enrollments: config.p2p.max_waiting_enrollments,
        max_cached_records: config.p2p.max_cached_records,
        max_connections: config.p2p.max_peer_connections,
        max_pending_connections: config.p2p.max_pending_peer_connections,
        metrics,
    })
    .await?;
    tracing::info!(%peer_id, root, "directory host up");
    Ok(Some(host))
}

/// The keys whose revocations, delegations and certificates count: the
/// configured ones, and a root's own.
pub fn root_keys(config: &Config) -> Result<Vec<String>, DirectoryError> {
    let mut keys = config.p2p.root_keys.clone();
    if config.has_role("root") {
        let own = public_key(config)?;
        if !keys.contains(&own) {
            keys.push(own);
        }
    }
    Ok(keys)
}

/// Joins the directory as a short-lived client (fresh identity, ephemeral
/// port) and resolves one domain through the configured bootstrap roots.
pub async fn resolve_once(
    config: &Config,
    domain: &str,
) -> Result<Option<SignedRecord>, DirectoryError> {
    let host = client(config).await?;
    // Give identify a moment to tell us who the roots are.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut found = None;
    while tokio::time::Instant::now() < deadline {
        found = host.resolve(domain).await;
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    host.stop().await;
    Ok(found)
}

/// A root revokes `domain`: signs a revocation of the key (and certificate)
/// the domain's record names, with the root's own node key, and hands it to
/// the roots, which replicate it.
pub async fn revoke(
    config: &Config,
    domain: &str,
    reason: &str,
) -> Result<SignedRecord, DirectoryError> {
    let current = resolve_once(config, domain)
        .await?
        .ok_or_else(|| DirectoryError::NotFound(domain.to_string()))?;
    let cert = match &current.record.body {
        Body::Cloud { cert_sha256, .. } => cert_sha256.clone(),
        _ => None,
    };
    let body = Body::Revocation {
        revoked_key: current.record.key.clone(),
        cert_sha256: cert,
        reason: reason.to_string(),
    };
    submit(config, root_record(config, domain, body, 60)?).await
}

/// A statement signed with this root's node key.
fn root_record(
    config: &Config,
    domain: &str,
    body: Body,
    ttl: u32,
) -> Result<SignedRecord, DirectoryError> {
    let secret = key::load_or_create(&config.node_key_path())?;
    Ok(super::authority::root_record(
        &key::signing_key(&secret),
        domain,
        body,
        ttl,
    ))
}

/// Hands a root-signed statement to the roots (retrying for a few seconds).
async fn submit(config: &Config, r: SignedRecord) -> Result<SignedRecord, DirectoryError> {
    let host = client(config).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        match host.register(r.clone()).await {
            Ok(()) => {
                host.stop().await;
                return Ok(r);
            }
            // The client has not met a root yet: again, for a while.
            Err(super::host::Refusal::NoRoot) => {}
            Err(e) => {
                host.stop().await;
                return Err(e.into());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    host.stop().await;
    Err(super::host::Refusal::NoRoot.into())
}

/// A root delegates the zone below `zone` to `exchanges` (their domains).
pub async fn delegate(
    config: &Config,
    zone: &str,
    exchanges: Vec<String>,
) -> Result<SignedRecord, DirectoryError> {
    let body = Body::Delegation { exchanges };
    submit(config, root_record(config, zone, body, 300)?).await
}

/// Enrollments waiting for approval on the roots: (domain, key).
pub async fn pending(config: &Config) -> Result<Vec<(String, String)>, DirectoryError> {
    let host = client(config).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut out = Vec::new();
    // Wait until identify has told us who the roots are.
    while tokio::time::Instant::now() < deadline {
        out = host.pending_enrollments().await;
        if !out.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    host.stop().await;
    Ok(out)
}

/// A root approves `domain`'s enrollment: for the key waiting on a root, or
/// else the key holding the domain's record.
pub async fn approve(config: &Config, domain: &str) -> Result<SignedRecord, DirectoryError> {
    let waiting = pending(config)
        .await?
        .into_iter()
        .find(|(d, _)| d == domain)
        .map(|(_, k)| k);
    let holder = match waiting {
        Some(k) => k,
        None => resolve_once(config, domain)
            .await?
            .map(|r| r.record.key)
            .ok_or_else(|| DirectoryError::NothingToApprove(domain.to_string()))?,
    };
    let body = Body::Approval { holder_key: holder };
    submit(config, root_record(config, domain, body, 60)?).await
}

/// `/ip4/…/tcp/PORT/…` as the in-process network's `/memory/PORT/…`.
fn to_memory(a: &str) -> String {
    let parts: Vec<&str> = a.split('/').collect();
    match parts.iter().position(|p| *p == "tcp") {
        Some(i) if i + 1 < parts.len() => {
            let rest = parts[i + 2..].join("/");
            if rest.is_empty() {
                format!("/memory/{}", parts[i + 1])
            } else {
                format!("/memory/{}/{rest}", parts[i + 1])
            }
        }
        _ => a.to_string(),
    }
}

/// A short-lived client host joined to the configured roots.
async fn client(config: &Config) -> Result<Host, DirectoryError> {
    let parse = |s: &String| {
        s.parse::<Multiaddr>()
            .map_err(|_| DirectoryError::Addr(s.clone()))
    };
    let mut bootstrap = config
        .p2p
        .bootstrap
        .iter()
        .map(parse)
        .collect::<Result<Vec<_>, _>>()?;
    if config.has_role("root") && config.p2p.port != 0 {
        // A root's own tools talk to the root itself too.
        bootstrap.push(parse(&peer_addr(config)?)?);
    }
    Ok(Host::start(HostConfig {
        keypair: libp2p::identity::Keypair::generate_ed25519(),
        root: false,
        root_keys: config.p2p.root_keys.clone(),
        listen: Vec::new(),
        bootstrap,
        transport: TransportKind::Tcp,
        faults: None,
        anti_entropy: Duration::from_millis(500),
        request_timeout: Duration::from_secs(5),
        initial: Vec::new(),
        on_accept: None,
        authority: None,
        zones: Vec::new(),
        gossip_queue: config.p2p.gossip_queue,
        max_waiting_enrollments: config.p2p.max_waiting_enrollments,
        max_cached_records: config.p2p.max_cached_records,
        max_connections: config.p2p.max_peer_connections,
        max_pending_connections: config.p2p.max_pending_peer_connections,
        metrics: Default::default(),
    })
    .await?)
}

/// This node's public key (base64), as root_keys lists it.
pub fn public_key(config: &Config) -> Result<String, DirectoryError> {
    let secret = key::load_or_create(&config.node_key_path())?;
    Ok(intercloud_actors::directory::record::public_key(
        &key::signing_key(&secret),
    ))
}
