//! Directory hosts for in-process tests: libp2p's memory transport, fresh identities, fast anti-entropy.

use intercloud::p2p::host::{Host, HostConfig, TransportKind};
use libp2p::identity::Keypair;
use libp2p::Multiaddr;
use std::time::Duration;

/// A fresh memory-transport address.
pub fn mem_addr() -> Multiaddr {
    format!("/memory/{}", rand::random::<u64>())
        .parse()
        .unwrap()
}

/// The configuration of a test host: a fresh identity on a fresh memory
/// address, fast anti-entropy, default bounds.
pub fn config(
    root: bool,
    bootstrap: Vec<Multiaddr>,
    root_keys: &[String],
    zones: Vec<String>,
) -> HostConfig {
    HostConfig {
        keypair: Keypair::generate_ed25519(),
        root,
        root_keys: root_keys.to_vec(),
        listen: vec![mem_addr()],
        bootstrap,
        transport: TransportKind::Memory,
        anti_entropy: Duration::from_millis(300),
        request_timeout: Duration::from_secs(2),
        initial: Vec::new(),
        on_accept: None,
        authority: None,
        zones,
        faults: None,
        gossip_queue: 64,
        max_waiting_enrollments: 1000,
        max_cached_records: 10_000,
        max_connections: 1000,
        max_pending_connections: 128,
        metrics: Default::default(),
    }
}

/// A host (a root or not) joined to `bootstrap`, holding the delegated `zones` (exchanges).
pub async fn host_with(
    root: bool,
    bootstrap: Vec<Multiaddr>,
    root_keys: &[String],
    zones: Vec<String>,
) -> Host {
    Host::start(config(root, bootstrap, root_keys, zones))
        .await
        .unwrap()
}

/// A host without delegated zones.
pub async fn host(root: bool, bootstrap: Vec<Multiaddr>, root_keys: &[String]) -> Host {
    host_with(root, bootstrap, root_keys, Vec::new()).await
}
