//! Server-to-server streams (RFC 6120): the listener for peers and the dialer of outgoing links, with STARTTLS, SASL EXTERNAL (XEP-0178) and Server Dialback (XEP-0220).

use super::codec::{self, Event, Limits, StreamHeader};
use super::dialback::{self, NS_DIALBACK};
use super::resolve::Resolver;
use super::stream::{accept_starttls, Upgrade, XmlStream};
use crate::net::{Net, Stream};
use intercloud_actors::element::{Element, NS_CLIENT, NS_SERVER};
use intercloud_actors::link::{DialError, DialFuture, Dialer, LinkSink};
use intercloud_actors::messages::Route;
use intercloud_actors::metrics::Tally;
use intercloud_actors::sm::{self, NS_SM};
use intercloud_actors::Cloud;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// Federation settings and shared state of one node.
pub struct S2s {
    pub cloud: Arc<Cloud>,
    pub domain: String,
    pub cfg: crate::config::S2sSection,
    pub server_tls: tokio_rustls::TlsAcceptor,
    pub client_tls: tokio_rustls::TlsConnector,
    /// Our s2s certificate (hot-swapped on enrollment and renewal).
    pub identity: Arc<crate::tls::Identity>,
    /// Who SASL EXTERNAL trusts.
    pub anchors: Arc<crate::tls::Anchors>,
    pub limits: Limits,
    pub resolver: Resolver,
    pub connect_timeout: Duration,
    pub negotiation_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Where links are dialed (TCP, or the in-process network) and under which faults.
    pub net: Net,
    conns: AtomicUsize,
    /// What peers sent lately, to drop what a link resends after a cut.
    dedup: std::sync::Mutex<intercloud_actors::dedup::Dedup>,
}

/// Counts an inbound connection while it lives.
pub struct InSlot(Arc<S2s>);

impl Drop for InSlot {
    fn drop(&mut self) {
        self.0.conns.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum S2sSetupError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Resolver(#[from] super::resolve::ResolverError),
}

fn header(from: &str, to: Option<&str>, id: Option<&str>) -> String {
    codec::stream_header(NS_SERVER, Some(from), to, id, &[("db", NS_DIALBACK)])
}

/// Renames `jabber:server` to the internal `jabber:client` throughout a stanza.
fn to_internal_ns(e: &mut Element) {
    if e.ns == NS_SERVER {
        e.ns = NS_CLIENT.to_string();
    }
    for c in e.elements_mut() {
        to_internal_ns(c);
    }
}

/// Serialises a stanza for a `jabber:server` stream: elements in the internal
/// `jabber:client` namespace inherit the stream's default namespace.
pub fn write_server_stanza(e: &Element, out: &mut String) {
    e.write_to(out, NS_CLIENT);
}

impl S2s {
    pub fn new(
        cloud: Arc<Cloud>,
        config: &crate::config::Config,
        directory: Option<Arc<dyn super::resolve::DirectoryLookup>>,
        net: Net,
    ) -> Result<Arc<S2s>, S2sSetupError> {
        let mut resolver = Resolver::new(
            config.s2s.routes.clone(),
            &config.s2s.dns_servers,
            Duration::from_secs(config.limits.s2s_connect_timeout_secs.clamp(1, 5)),
        )?;
        resolver.directory = directory;
        let (cert, key) = config.s2s_identity_paths();
        let identity = crate::tls::Identity::load(&cert, &key)?;
        let anchors: Vec<_> = config
            .s2s
            .trust_anchors
            .iter()
            .map(|p| config.path(p))
            .collect();
        let anchors = crate::tls::Anchors::load(&anchors)?;
        if let Ok(pem) = std::fs::read_to_string(config.learnt_anchors_path()) {
            anchors.set_learnt(&[pem]);
        }
        let l = &config.limits;
        Ok(Arc::new(S2s {
            domain: cloud.settings.domain.clone(),
            cloud,
            cfg: config.s2s.clone(),
            server_tls: tokio_rustls::TlsAcceptor::from(crate::tls::s2s_server_config(
                identity.clone(),
            )?),
            client_tls: tokio_rustls::TlsConnector::from(crate::tls::s2s_client_config(
                identity.clone(),
            )?),
            identity,
            anchors,
            limits: Limits {
                max_stanza_bytes: l.max_stanza_bytes,
                max_depth: l.max_depth,
            },
            resolver,
            connect_timeout: Duration::from_secs(l.s2s_connect_timeout_secs.max(1)),
            negotiation_timeout: Duration::from_secs(l.negotiation_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(l.s2s_idle_timeout_secs.max(1)),
            max_connections: l.max_s2s_connections,
            net,
            conns: AtomicUsize::new(0),
            dedup: std::sync::Mutex::new(intercloud_actors::dedup::Dedup::new(l.s2s_dedup_ids)),
        }))
    }

    /// Takes an inbound connection slot, or None over the limit.
    pub fn admit(self: &Arc<Self>) -> Option<InSlot> {
        let n = self.conns.fetch_add(1, Ordering::Relaxed);
        if n >= self.max_connections {
            self.conns.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(InSlot(self.clone()))
    }

    /// Whether the directory holds a root's revocation of the certificate `domain` presents.
    async fn cert_revoked(&self, certs: Option<&[CertificateDer<'static>]>, domain: &str) -> bool {
        let (Some(dir), Some(c)) = (&self.resolver.directory, certs.and_then(|c| c.first())) else {
            return false;
        };
        let revoked = dir
            .revoked(domain, &crate::tls::cert_sha256(c.as_ref()))
            .await;
        if revoked {
            tracing::warn!(peer = %domain, "certificate revoked by the trust authority");
        }
        revoked
    }

    fn peer_verified(&self, certs: Option<&[CertificateDer<'static>]>, domain: &str) -> bool {
        match certs {
            Some(c) => match crate::tls::verify_peer(c, &self.anchors.current(), domain) {
                Ok(()) => true,
                Err(e) => {
                    tracing::info!(peer = %domain, error = %e, "peer certificate not accepted");
                    // Its issuer may be a trust authority the directory
                    // knows and we have not learnt yet.
                    self.anchors.want_refresh();
                    false
                }
            },
            None => false,
        }
    }
}

pub mod connect;
mod inbound;
pub mod incoming;
mod outbound;
pub mod piggyback;

pub use inbound::serve;
use outbound::open_out;
pub use outbound::S2sDialer;
