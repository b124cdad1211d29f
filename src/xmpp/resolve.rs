//! Where a remote domain's s2s service is: static routes, then the Intercloud directory, then DNS.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// The Intercloud directory's answer for a domain (plugged in by the directory).
pub trait DirectoryLookup: Send + Sync + 'static {
    /// The s2s endpoints the directory holds for `domain`, if any.
    fn s2s_endpoints(&self, domain: &str) -> Pin<Box<dyn Future<Output = Vec<SocketAddr>> + Send>>;
}

/// Resolves domains in the order static routes, directory, DNS.
#[derive(Clone)]
pub struct Resolver {
    pub routes: BTreeMap<String, String>,
    pub directory: Option<Arc<dyn DirectoryLookup>>,
    /// Port used with an A/AAAA answer when there is no SRV record.
    pub default_port: u16,
}

impl Resolver {
    /// Candidate addresses in the order to try them; empty when nothing is known.
    pub async fn resolve(&self, domain: &str) -> Vec<SocketAddr> {
        if let Some(r) = self.routes.get(domain) {
            return match tokio::net::lookup_host(r.as_str()).await {
                Ok(a) => a.collect(),
                Err(e) => {
                    tracing::warn!(%domain, route = %r, error = %e, "static route does not resolve");
                    Vec::new()
                }
            };
        }
        if let Some(d) = &self.directory {
            let a = d.s2s_endpoints(domain).await;
            if !a.is_empty() {
                return a;
            }
        }
        // DNS: A/AAAA (through the system resolver, so /etc/hosts counts) on the
        // default port, as RFC 6120 §3.2.2 prescribes without SRV records.
        match tokio::net::lookup_host((domain, self.default_port)).await {
            Ok(a) => a.collect(),
            Err(_) => Vec::new(),
        }
    }
}
