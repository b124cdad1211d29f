//! A node's life in the directory: it registers its record, enrolls with the roots' trust authority, renews before expiry, and keeps its trust anchors current.

use super::authority::{self, now};
use super::directory::{own_record, root_keys};
use super::host::{Enrolled, Host};
use super::key;
use crate::config::Config;
use crate::tls::cert_sha256;
use crate::tls::{Anchors, Identity};
use intercloud_actors::directory::enrollment::Enrollment;
use intercloud_actors::directory::record::{Body, VERSION};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// When the certificate at `cert` should be renewed (seconds since the epoch); None: enroll now.
fn renew_at(cert: &Path, percent: u8) -> Option<u64> {
    let pem = std::fs::read_to_string(cert).ok()?;
    let (from, until) = authority::validity(&pem)?;
    let life = until.saturating_sub(from);
    Some(until.saturating_sub(life * percent.min(100) as u64 / 100))
}

/// Writes a file next to its final place and renames it, so a crash leaves the old or the new one.
fn write_atomic(path: &Path, data: &str) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    let f = std::fs::File::open(&tmp)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Why an enrollment attempt did not install a certificate.
#[derive(Debug, thiserror::Error)]
enum EnrollError {
    #[error(transparent)]
    Csr(#[from] authority::AuthorityError),
    #[error(transparent)]
    Request(#[from] super::host::Refusal),
    #[error("{0}: {1}")]
    Write(std::path::PathBuf, std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Asks the trust authority for a certificate once; Ok(true) when one was installed.
async fn enroll(
    config: &Config,
    host: &Host,
    secret: &[u8; 32],
    identity: &Identity,
    anchors: &Anchors,
    roots: &[String],
) -> Result<bool, EnrollError> {
    let domain = config.node.domain.to_ascii_lowercase();
    let (csr, key_pem) = authority::csr(&domain)?;
    let token =
        (!config.p2p.enrollment_token.is_empty()).then(|| config.p2p.enrollment_token.clone());
    let req = Enrollment {
        v: VERSION,
        domain: domain.clone(),
        key: String::new(),
        csr_pem: csr,
        token,
        time: now(),
    }
    .sign(&key::signing_key(secret));
    match host.enroll(req).await? {
        Enrolled::Issued {
            chain_pem,
            authorities,
        } => {
            let (cert, key) = config.enrolled_paths();
            write_atomic(&key, &key_pem).map_err(|e| EnrollError::Write(key.clone(), e))?;
            write_atomic(&cert, &chain_pem).map_err(|e| EnrollError::Write(cert.clone(), e))?;
            identity.reload(&cert, &key)?;
            learn(anchors, &authorities, roots, &config.learnt_anchors_path());
            tracing::info!(%domain, certificate = %super::directory::pem_sha256(&chain_pem), "certificate from the trust authority installed");
            Ok(true)
        }
        Enrolled::Pending(m) => {
            tracing::info!(%domain, "enrollment: {m}");
            Ok(false)
        }
        Enrolled::Refused(m) => {
            tracing::warn!(%domain, "enrollment refused: {m}");
            Ok(false)
        }
    }
}

/// Takes the CA certificates of authority records signed by a known root key,
/// and keeps them in `path` so a restarted node trusts them at once.
fn learn(
    anchors: &Anchors,
    records: &[intercloud_actors::directory::record::SignedRecord],
    roots: &[String],
    path: &Path,
) {
    let pems: Vec<String> = records
        .iter()
        .filter(|r| r.verify().is_ok() && roots.contains(&r.record.key))
        .filter_map(|r| match &r.record.body {
            Body::Authority { ca_pem } => Some(ca_pem.clone()),
            _ => None,
        })
        .collect();
    if !pems.is_empty() {
        let n = anchors.set_learnt(&pems);
        tracing::debug!(
            authorities = pems.len(),
            anchors = n,
            "trust anchors updated"
        );
        let all = pems.concat();
        if std::fs::read_to_string(path).ok().as_deref() != Some(all.as_str()) {
            if let Err(e) = write_atomic(path, &all) {
                tracing::warn!(error = %e, "could not keep the trust anchors");
            }
        }
    }
}

/// Runs for the node's lifetime: registration, enrollment, renewal, anchors.
pub fn spawn(config: Config, host: Host, identity: Arc<Identity>, anchors: Arc<Anchors>) {
    tokio::spawn(async move {
        let secret = match key::load_or_create(&config.node_key_path()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "no node key: not joining the directory");
                return;
            }
        };
        let roots = root_keys(&config).unwrap_or_default();
        let every = Duration::from_secs(config.p2p.anti_entropy_secs.max(1));
        let peer_id = host.peer_id.to_string();
        let mut registered: Option<String> = None;
        let mut wait = Duration::from_millis(200);
        let (cert_path, _) = config.enrolled_paths();
        let mut due = renew_at(&cert_path, config.p2p.renew_percent);
        // The roots' authority records change rarely (a root joins, a CA is
        // replaced): asked for every round at first, then less and less
        // often while they stay the same, up to anchors_refresh_secs — a
        // thousand nodes asking every second kept the roots busy.
        let anchors_max = Duration::from_secs(config.p2p.anchors_refresh_secs).max(every);
        let mut anchors_every = every;
        let mut anchors_next = tokio::time::Instant::now();
        let mut authorities_seen: Vec<String> = Vec::new();
        let mut last_forced = tokio::time::Instant::now();
        loop {
            if config.p2p.enroll && due.map(|t| t <= now()).unwrap_or(true) {
                match enroll(&config, &host, &secret, &identity, &anchors, &roots).await {
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "enrollment pending"),
                }
                due = renew_at(&cert_path, config.p2p.renew_percent);
            } else if tokio::time::Instant::now() >= anchors_next {
                let records = host.authorities().await;
                let sigs: Vec<String> = records.iter().map(|r| r.sig.clone()).collect();
                if !records.is_empty() && sigs != authorities_seen {
                    learn(&anchors, &records, &roots, &config.learnt_anchors_path());
                    authorities_seen = sigs;
                    anchors_every = every;
                } else if !records.is_empty() {
                    anchors_every = (anchors_every * 2).min(anchors_max);
                }
                anchors_next = tokio::time::Instant::now() + anchors_every;
            }
            // (Re-)register when the certificate we present changed.
            let presented = cert_sha256(identity.cert().as_ref());
            if registered.as_deref() != Some(presented.as_str()) {
                let p2p = host
                    .listen_addrs()
                    .await
                    .iter()
                    .map(|a| a.to_string())
                    .collect();
                let record = own_record(&config, &secret, &peer_id, p2p, presented.clone());
                match host.register(record).await {
                    Ok(()) => {
                        tracing::info!(domain = %config.node.domain, "registered in the directory");
                        registered = Some(presented);
                    }
                    Err(e) => tracing::debug!(error = %e, "directory registration pending"),
                }
            }
            let settled = registered.is_some() && (!config.p2p.enroll || due.is_some());
            let mut next = if settled {
                every
            } else {
                wait = (wait * 2).min(every);
                wait
            };
            if let Some(t) = due {
                let left = Duration::from_secs(t.saturating_sub(now()));
                next = next.min(left.max(Duration::from_millis(500)));
            }
            tokio::select! {
                _ = tokio::time::sleep(next) => {}
                // A peer's certificate did not chain to what we trust: ask
                // for the trust authorities now (at most once a second).
                _ = anchors.refresh_wanted() => {
                    let soon = last_forced + Duration::from_secs(1);
                    let now_i = tokio::time::Instant::now();
                    anchors_next = if now_i >= soon { now_i } else { soon };
                    last_forced = anchors_next;
                    anchors_every = every;
                    tokio::time::sleep_until(anchors_next).await;
                }
            }
        }
    });
}
