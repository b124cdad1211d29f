//! Measures how many directory registrations per second one root takes from clients over libp2p (memory transport), and how fast three roots converge after a partition heals.
//!
//! `cargo run --release --example directory_throughput -- [RECORDS]`

use ed25519_dalek::SigningKey;
use intercloud::p2p::host::{Host, HostConfig, TransportKind};
use intercloud_actors::directory::record::{Body, Record, SignedRecord, VERSION};
use libp2p::identity::Keypair;
use std::collections::HashSet;
use std::time::{Duration, Instant};

async fn host(root: bool, bootstrap: Vec<libp2p::Multiaddr>) -> Host {
    Host::start(HostConfig {
        keypair: Keypair::generate_ed25519(),
        root,
        root_keys: vec![],
        listen: vec![format!("/memory/{}", rand::random::<u64>())
            .parse()
            .unwrap()],
        bootstrap,
        transport: TransportKind::Memory,
        anti_entropy: Duration::from_millis(200),
        request_timeout: Duration::from_secs(10),
        initial: vec![],
        on_accept: None,
        authority: None,
        zones: Vec::new(),
        faults: None,
        gossip_queue: 64,
        max_waiting_enrollments: 1000,
        max_cached_records: 10_000,
        max_connections: 1000,
        max_pending_connections: 128,
        metrics: Default::default(),
    })
    .await
    .unwrap()
}

fn record(i: u32) -> SignedRecord {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    let k = SigningKey::from_bytes(&seed);
    Record {
        v: VERSION,
        domain: format!("cloud{i}.bench"),
        serial: 1,
        ttl: 300,
        key: String::new(),
        body: Body::Cloud {
            peer_id: "p".into(),
            s2s: vec!["127.0.0.1:5269".into()],
            cert_sha256: None,
            roles: vec!["cloud".into()],
            exchanges: vec![],
            p2p: vec![],
        },
    }
    .sign(&k)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let root = host(true, vec![]).await;
    let addrs = root.listen_addrs().await;
    let clients: Vec<Host> = clients(4, addrs.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let records: Vec<SignedRecord> = (0..n).map(record).collect();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (ci, c) in clients.iter().enumerate() {
        let c = c.clone();
        let mine: Vec<SignedRecord> = records
            .iter()
            .skip(ci)
            .step_by(clients.len())
            .cloned()
            .collect();
        tasks.push(tokio::spawn(async move {
            // One request at a time per client; four clients at once.
            for r in mine {
                c.register(r).await.expect("registered");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let el = t0.elapsed();
    assert_eq!(root.zone().await.len(), n as usize);
    println!(
        "{n} registrations through libp2p in {el:.2?}: {:.0} records/s",
        n as f64 / el.as_secs_f64()
    );

    // Convergence of three roots after a heal, with 500 records on each side.
    let r0 = host(true, vec![]).await;
    let a0 = r0.listen_addrs().await;
    let r1 = host(true, a0.clone()).await;
    let a1 = r1.listen_addrs().await;
    let r2 = host(true, [a0, a1].concat()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    r0.block(HashSet::from([r1.peer_id, r2.peer_id])).await;
    r1.block(HashSet::from([r0.peer_id])).await;
    r2.block(HashSet::from([r0.peer_id])).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..500 {
        r0.register(record(100_000 + i)).await.unwrap();
        r1.register(record(200_000 + i)).await.unwrap();
    }
    for r in [&r0, &r1, &r2] {
        r.block(HashSet::new()).await;
    }
    let t0 = Instant::now();
    loop {
        let (a, b, c) = (
            r0.zone().await.len(),
            r1.zone().await.len(),
            r2.zone().await.len(),
        );
        if a == 1000 && b == 1000 && c == 1000 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no convergence: {a} {b} {c}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "3 roots with 500 different records on each side converged {:.2?} after the heal",
        t0.elapsed()
    );
}

async fn clients(k: usize, bootstrap: Vec<libp2p::Multiaddr>) -> Vec<Host> {
    let mut v = Vec::new();
    for _ in 0..k {
        v.push(host(false, bootstrap.clone()).await);
    }
    v
}
