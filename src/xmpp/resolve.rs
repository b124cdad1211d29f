//! Where a remote domain's s2s service is: static routes, then the Intercloud directory, then DNS (SRV `_xmpp-server._tcp`, then A/AAAA).

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The Intercloud directory's answer for a domain (plugged in by the directory).
pub trait DirectoryLookup: Send + Sync + 'static {
    /// The s2s endpoints the directory holds for `domain` (empty: it holds
    /// none), or `Err` when the directory could not be asked.
    fn s2s_endpoints(
        &self,
        domain: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, DirectoryUnreachable>> + Send>>;

    /// Whether a root revoked the certificate (SHA-256 of its DER, hex) `domain` presents.
    fn revoked(
        &self,
        domain: &str,
        cert_sha256: &str,
    ) -> Pin<Box<dyn Future<Output = bool> + Send>>;
}

/// Resolves domains in the order static routes, directory, DNS.
#[derive(Clone)]
pub struct Resolver {
    pub routes: BTreeMap<String, String>,
    pub directory: Option<Arc<dyn DirectoryLookup>>,
    /// Port used with an A/AAAA answer when there is no SRV record.
    pub default_port: u16,
    dns: Option<TokioResolver>,
}

/// No root of the directory could be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Intercloud directory could not be asked")]
pub struct DirectoryUnreachable;

/// Why a domain has no address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    /// Nobody knows it (no route, no record, no DNS answer).
    #[error("no address")]
    Unknown,
    /// The directory, which might know it, could not be asked (and DNS did
    /// not know it): worth asking again.
    #[error("no address: the Intercloud directory could not be asked")]
    DirectoryUnreachable,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("bad DNS server {0:?} (want ip:port)")]
    BadServer(String),
}

impl Resolver {
    /// A resolver using `dns_servers` ("ip:port") for SRV lookups, or the
    /// system's configuration when that list is empty.
    pub fn new(
        routes: BTreeMap<String, String>,
        dns_servers: &[String],
        timeout: Duration,
    ) -> Result<Resolver, ResolverError> {
        let builder = if dns_servers.is_empty() {
            TokioResolver::builder_tokio().ok()
        } else {
            let mut servers = Vec::new();
            for s in dns_servers {
                let addr: SocketAddr =
                    s.parse().map_err(|_| ResolverError::BadServer(s.clone()))?;
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                ns.connections = vec![udp, tcp];
                servers.push(ns);
            }
            Some(TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            ))
        };
        let dns = builder.and_then(|mut b| {
            let o = b.options_mut();
            o.timeout = timeout;
            o.attempts = 1;
            b.build().ok()
        });
        if dns.is_none() {
            tracing::warn!("no DNS resolver available: SRV lookups disabled");
        }
        Ok(Resolver {
            routes,
            directory: None,
            default_port: 5269,
            dns,
        })
    }

    /// Candidate addresses in the order to try them (never empty), or why
    /// there is none.
    pub async fn resolve(&self, domain: &str) -> Result<Vec<SocketAddr>, Unresolved> {
        let found =
            |a: Vec<SocketAddr>, why: Unresolved| if a.is_empty() { Err(why) } else { Ok(a) };
        // A service of a domain (`conference.<domain>`) is served by its
        // domain's server unless a route or the DNS says otherwise.
        let server = intercloud_actors::jid::server_of(domain);
        if let Some(r) = self.routes.get(domain).or_else(|| self.routes.get(server)) {
            return match tokio::net::lookup_host(r.as_str()).await {
                Ok(a) => found(a.collect(), Unresolved::Unknown),
                Err(e) => {
                    tracing::warn!(%domain, route = %r, error = %e, "static route does not resolve");
                    Err(Unresolved::Unknown)
                }
            };
        }
        let mut why = Unresolved::Unknown;
        if let Some(d) = &self.directory {
            match d.s2s_endpoints(server).await {
                Ok(a) if !a.is_empty() => return Ok(a),
                Ok(_) => {}
                Err(DirectoryUnreachable) => why = Unresolved::DirectoryUnreachable,
            }
        }
        match self.srv(domain).await {
            Srv::Found(a) => return found(a, why),
            Srv::NoService => return Err(Unresolved::Unknown),
            Srv::None => {}
        }
        // No SRV record: A/AAAA (system resolver, so /etc/hosts counts) on
        // the default port, as RFC 6120 §3.2.1 prescribes.
        match tokio::net::lookup_host((domain, self.default_port)).await {
            Ok(a) => found(a.collect(), why),
            Err(_) => Err(why),
        }
    }

    async fn srv(&self, domain: &str) -> Srv {
        let Some(dns) = &self.dns else {
            return Srv::None;
        };
        let Ok(lookup) = dns.srv_lookup(format!("_xmpp-server._tcp.{domain}.")).await else {
            return Srv::None;
        };
        let mut records: Vec<_> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if records.is_empty() {
            return Srv::None;
        }
        // RFC 2782: a lone "." target says the service is not offered.
        if records.len() == 1 && records[0].target.is_root() {
            return Srv::NoService;
        }
        // Lowest priority first; within one, heavier weights first.
        records.sort_by_key(|s| (s.priority, std::cmp::Reverse(s.weight)));
        let mut out = Vec::new();
        for s in records {
            let target = s.target.to_utf8();
            let host = target.trim_end_matches('.');
            if let Ok(ips) = dns.lookup_ip(format!("{host}.")).await {
                out.extend(ips.iter().map(|ip| SocketAddr::new(ip, s.port)));
            } else if let Ok(a) = tokio::net::lookup_host((host, s.port)).await {
                out.extend(a);
            }
        }
        tracing::debug!(%domain, addrs = ?out, "SRV resolution");
        Srv::Found(out)
    }
}

enum Srv {
    Found(Vec<SocketAddr>),
    NoService,
    None,
}
