//! The libp2p swarm of a directory host: its behaviours (Kademlia, identify, gossipsub, request-response), transports (TCP with DNS, or in-process memory) and the fault table's policing of dials.

use super::*;

pub(super) fn build_swarm(cfg: &HostConfig) -> Result<Swarm<Behaviour>, P2pError> {
    let root = cfg.root;
    let timeout = cfg.request_timeout;
    // gossipsub allocates its per-connection queue up front (5,000 slots by
    // default, ~0.5 MB): with a thousand clouds on three roots that was
    // gigabytes of zeroed pages for a topic only roots subscribe to.
    let queue = cfg.gossip_queue.max(2);
    let (max_connections, max_pending) = (
        cfg.max_connections.max(1),
        cfg.max_pending_connections.max(1),
    );
    let behaviour =
        move |k: &Keypair| -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
            let agent = if root { ROOT_AGENT } else { NODE_AGENT };
            let gossip_cfg = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(500))
                .validation_mode(gossipsub::ValidationMode::Strict)
                .connection_handler_queue_len(queue)
                .build()
                .map_err(|e| e.to_string())?;
            let mut kad_cfg = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
            kad_cfg.set_query_timeout(timeout);
            let mut dht = kad::Behaviour::with_config(
                k.public().to_peer_id(),
                kad::store::MemoryStore::new(k.public().to_peer_id()),
                kad_cfg,
            );
            // Roots answer DHT queries; other nodes only ask.
            dht.set_mode(Some(if root {
                kad::Mode::Server
            } else {
                kad::Mode::Client
            }));
            Ok(Behaviour {
                limits: libp2p::connection_limits::Behaviour::new(
                    libp2p::connection_limits::ConnectionLimits::default()
                        .with_max_established_incoming(Some(max_connections))
                        .with_max_pending_incoming(Some(max_pending))
                        .with_max_established_per_peer(Some(4)),
                ),
                kad: dht,
                identify: identify::Behaviour::new(
                    identify::Config::new("/intercloud/1".into(), k.public())
                        .with_agent_version(agent.into()),
                ),
                gossip: Toggle::from(if root {
                    Some(gossipsub::Behaviour::new(
                        gossipsub::MessageAuthenticity::Signed(k.clone()),
                        gossip_cfg,
                    )?)
                } else {
                    None
                }),
                rr: request_response::json::Behaviour::new(
                    [(StreamProtocol::new(PROTOCOL), ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(timeout),
                ),
            })
        };
    let idle = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(3600));
    let b = SwarmBuilder::with_existing_identity(cfg.keypair.clone()).with_tokio();
    let swarm = match (cfg.transport, cfg.faults.clone()) {
        (kind, Some((faults, local))) => b
            .with_other_transport(move |k: &Keypair| policed_transport(k, kind, faults, local))
            .map_err(|e| P2pError::Build(e.to_string()))?
            .with_behaviour(behaviour)
            .map_err(|e| P2pError::Build(e.to_string()))?
            .with_swarm_config(idle)
            .build(),
        (TransportKind::Tcp, None) => b
            .with_tcp(
                libp2p::tcp::Config::default().nodelay(true),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .map_err(|e| P2pError::Build(e.to_string()))?
            // Bootstrap addresses may name hosts (/dns4/…), as in a cluster.
            .with_dns()
            .map_err(|e| P2pError::Build(e.to_string()))?
            .with_behaviour(behaviour)
            .map_err(|e| P2pError::Build(e.to_string()))?
            .with_swarm_config(idle)
            .build(),
        (TransportKind::Memory, None) => b
            .with_other_transport(memory_transport)
            .map_err(|e| P2pError::Build(e.to_string()))?
            .with_behaviour(behaviour)
            .map_err(|e| P2pError::Build(e.to_string()))?
            .with_swarm_config(idle)
            .build(),
    };
    Ok(swarm)
}

/// libp2p's in-process memory transport with the same noise + yamux
/// upgrades as TCP: whole federations (and test peers) in one process.
pub fn memory_transport(
    k: &Keypair,
) -> Result<
    libp2p::core::transport::Boxed<(PeerId, libp2p::core::muxing::StreamMuxerBox)>,
    Box<dyn std::error::Error + Send + Sync>,
> {
    use libp2p::core::transport::MemoryTransport;
    use libp2p::core::upgrade::Version;
    use libp2p::core::Transport;
    Ok(MemoryTransport::default()
        .upgrade(Version::V1)
        .authenticate(libp2p::noise::Config::new(k)?)
        .multiplex(libp2p::yamux::Config::default())
        .map(|(p, m), _| (p, libp2p::core::muxing::StreamMuxerBox::new(m)))
        .boxed())
}

type Muxed = libp2p::core::transport::Boxed<(PeerId, libp2p::core::muxing::StreamMuxerBox)>;

/// The port a multiaddr names (TCP or memory).
fn port_of(a: &Multiaddr) -> Option<u16> {
    a.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Tcp(p) => Some(p),
        libp2p::multiaddr::Protocol::Memory(p) => u16::try_from(p).ok(),
        _ => None,
    })
}

/// Puts a raw connection this node dialed under the fault table (the
/// dialing side polices a link); accepted ones pass as they are.
fn police<S>(
    io: S,
    cp: &libp2p::core::ConnectedPoint,
    faults: &Arc<crate::net::fault::Faults>,
    local: &str,
) -> tokio_util::compat::Compat<crate::net::Stream>
where
    S: libp2p::futures::AsyncRead + libp2p::futures::AsyncWrite + Send + Unpin + 'static,
{
    use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
    let io: crate::net::Stream = Box::new(io.compat());
    let remote = match cp {
        libp2p::core::ConnectedPoint::Dialer { address, .. } => {
            port_of(address).and_then(|p| faults.domain_of_p2p_port(p))
        }
        _ => None,
    };
    let io: crate::net::Stream = match remote {
        Some(r) => Box::new(crate::net::fault::Faulty::new(
            io,
            faults.clone(),
            local,
            &r,
        )),
        None => io,
    };
    io.compat()
}

/// TCP or memory, with every dialed connection under the fault table,
/// then the same noise + yamux upgrades.
fn policed_transport(
    k: &Keypair,
    kind: TransportKind,
    faults: Arc<crate::net::fault::Faults>,
    local: String,
) -> Result<Muxed, Box<dyn std::error::Error + Send + Sync>> {
    use libp2p::core::transport::{MemoryTransport, Transport};
    use libp2p::core::upgrade::Version;
    let (f, l) = (faults.clone(), local.clone());
    let base = match kind {
        TransportKind::Memory => MemoryTransport::default()
            .map(move |io, cp| police(io, &cp, &f, &l))
            .boxed(),
        TransportKind::Tcp => {
            libp2p::tcp::tokio::Transport::new(libp2p::tcp::Config::default().nodelay(true))
                .map(move |io, cp| police(io, &cp, &faults, &local))
                .boxed()
        }
    };
    Ok(base
        .upgrade(Version::V1)
        .authenticate(libp2p::noise::Config::new(k)?)
        .multiplex(libp2p::yamux::Config::default())
        .map(|(p, m), _| (p, libp2p::core::muxing::StreamMuxerBox::new(m)))
        .boxed())
}
