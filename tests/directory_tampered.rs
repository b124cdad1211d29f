//! A lying root on the wire: it answers resolutions with tampered records; resolvers refuse them and fail over to an honest root.

mod common;

use common::p2p::{host, mem_addr};
use ed25519_dalek::SigningKey;
use intercloud::p2p::host::Host;
use intercloud::p2p::protocol::{Request, Response, PROTOCOL, ROOT_AGENT};
use intercloud_actors::directory::record::{Body, Record, SignedRecord, VERSION};
use libp2p::futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, Multiaddr, StreamProtocol, SwarmBuilder};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn genuine() -> SignedRecord {
    let key = SigningKey::from_bytes(&[7; 32]);
    Record {
        v: VERSION,
        domain: "cloud1.test".into(),
        serial: 1,
        ttl: 1,
        key: String::new(),
        body: Body::Cloud {
            peer_id: "peer".into(),
            s2s: vec!["127.0.0.1:5269".into()],
            cert_sha256: None,
            roles: vec!["cloud".into()],
            exchanges: vec![],
            p2p: vec![],
        },
    }
    .sign(&key)
}

#[derive(NetworkBehaviour)]
struct Rogue {
    identify: identify::Behaviour,
    rr: request_response::json::Behaviour<Request, Response>,
}

/// A peer that says it is a root and answers every resolution with the
/// genuine record's signature over a different endpoint.
async fn rogue_root() -> (Multiaddr, Arc<AtomicUsize>) {
    let key = Keypair::generate_ed25519();
    let mut swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(intercloud::p2p::host::memory_transport)
        .unwrap()
        .with_behaviour(|k| Rogue {
            identify: identify::Behaviour::new(
                identify::Config::new("/intercloud/1".into(), k.public())
                    .with_agent_version(ROOT_AGENT.into()),
            ),
            rr: request_response::json::Behaviour::new(
                [(StreamProtocol::new(PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default(),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let addr = mem_addr();
    swarm.listen_on(addr.clone()).unwrap();
    let me = *swarm.local_peer_id();
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(RogueEvent::Rr(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            })) = swarm.select_next_some().await
            {
                let mut forged = genuine();
                if let Body::Cloud { s2s, .. } = &mut forged.record.body {
                    *s2s = vec!["127.0.0.66:5269".into()];
                }
                let _ = swarm
                    .behaviour_mut()
                    .rr
                    .send_response(channel, Response::Record(Some(forged)));
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr.with(libp2p::multiaddr::Protocol::P2p(me)), answered)
}

async fn resolve_soon(h: &Host, domain: &str) -> Option<SignedRecord> {
    // Give identify time to tell the resolver who the roots are.
    for _ in 0..200 {
        if let Some(r) = h.resolve(domain).await {
            return Some(r);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_records_fail_verification_at_the_resolver() {
    let (rogue, answered) = rogue_root().await;
    // Only the liar to ask: it answers, and nothing resolves.
    // Asked until the rogue has answered at least once: then the forgery
    // was in hand, and still nothing resolved.
    let alone = host(false, vec![rogue.clone()], &[]).await;
    let t0 = std::time::Instant::now();
    loop {
        let r = alone.resolve("cloud1.test").await;
        assert_eq!(r, None);
        if answered.load(Ordering::SeqCst) > 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the rogue was never asked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(alone.resolve("cloud1.test").await, None);

    // The liar first, then an honest root: the resolver refuses the forgery and fails over.
    let honest = host(true, Vec::new(), &[]).await;
    honest.register(genuine()).await.unwrap();
    let honest_addr = honest.listen_addrs().await.remove(0);
    let resolver = host(false, vec![rogue, honest_addr], &[]).await;
    let r = resolve_soon(&resolver, "cloud1.test")
        .await
        .expect("resolved through the honest root");
    r.verify().unwrap();
    assert_eq!(r, genuine());
}
