//! The Intercloud Root directory over libp2p, in one process on the memory transport: 3 roots and 10 clouds register, resolve, survive a dead root, converge after a partition heals; roots found through the DHT; a delegated zone answered by its exchange.

mod common;

use common::p2p::{host, host_with};
use ed25519_dalek::SigningKey;
use intercloud::p2p::host::{Host, Refusal};
use intercloud_actors::directory::record::{public_key, Body, Record, SignedRecord, VERSION};
use intercloud_actors::directory::zone::ZoneError;
use libp2p::Multiaddr;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn record(domain: &str, key: &SigningKey, ttl: u32) -> SignedRecord {
    Record {
        v: VERSION,
        domain: domain.into(),
        serial: 1,
        ttl,
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
    .sign(key)
}

/// Waits until `f` holds, at most `limit`; returns how long it took.
async fn within<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f().await {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn roots(n: usize, root_keys: &[String]) -> (Vec<Host>, Vec<Multiaddr>) {
    let mut hosts: Vec<Host> = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..n {
        let h = host(true, addrs.clone(), root_keys).await;
        addrs.extend(h.listen_addrs().await);
        hosts.push(h);
    }
    (hosts, addrs)
}

async fn zone_of(h: &Host) -> Vec<String> {
    let mut v: Vec<String> = h.zone().await.iter().map(|r| r.to_json()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_roots_ten_clouds_register_resolve_and_survive_a_dead_root() {
    let (roots, root_addrs) = roots(3, &[]).await;
    let mut clouds = Vec::new();
    let mut keys = Vec::new();
    for i in 0..10 {
        clouds.push(host(false, root_addrs.clone(), &[]).await);
        keys.push(SigningKey::from_bytes(&[i as u8 + 1; 32]));
    }
    // Every cloud registers its own name (retrying until it has found a root).
    for (i, c) in clouds.iter().enumerate() {
        let r = record(&format!("cloud{i}.test"), &keys[i], 1);
        let ok = within(Duration::from_secs(10), || {
            let r = r.clone();
            async move { c.register(r).await.is_ok() }
        })
        .await;
        assert!(ok.is_some(), "cloud{i} could not register");
    }
    // Gossip puts every record on every root.
    let converged = within(Duration::from_secs(10), || async {
        let mut ok = true;
        for r in &roots {
            ok &= r.zone().await.len() == 10;
        }
        ok
    })
    .await;
    assert!(converged.is_some(), "roots did not all get the 10 records");
    // Every cloud resolves every other, and the answers verify.
    for c in &clouds {
        for (j, key) in keys.iter().enumerate() {
            let r = c
                .resolve(&format!("cloud{j}.test"))
                .await
                .expect("resolved");
            r.verify().unwrap();
            assert_eq!(r.record.key, public_key(key));
        }
    }
    // Nobody takes another's name, whichever root it asks.
    let thief = SigningKey::from_bytes(&[99; 32]);
    let mut stolen = record("cloud3.test", &thief, 1);
    stolen.record.serial = 7;
    let stolen = stolen.record.sign(&thief);
    // Refused by the root it went through, with the zone's reason.
    assert_eq!(
        clouds[5].register(stolen).await.unwrap_err(),
        Refusal::Refused(ZoneError::Takeover("cloud3.test".into()).to_string())
    );
    // A root dies; resolution goes on through the others (the TTL of 1 s has run out).
    roots[0].stop().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for c in &clouds {
        let r = c
            .resolve("cloud7.test")
            .await
            .expect("resolved without root 0");
        assert_eq!(r.record.key, public_key(&keys[7]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_roots_converge_after_the_heal() {
    let (roots, root_addrs) = roots(3, &[]).await;
    within(Duration::from_secs(20), || async {
        for r in &roots {
            if r.roots().await.len() < 2 {
                return false;
            }
        }
        true
    })
    .await
    .expect("the roots did not connect to each other");
    let ids: Vec<_> = roots.iter().map(|r| r.peer_id).collect();
    // {root0} | {root1, root2}
    roots[0].block(HashSet::from([ids[1], ids[2]])).await;
    roots[1].block(HashSet::from([ids[0]])).await;
    roots[2].block(HashSet::from([ids[0]])).await;
    within(Duration::from_secs(20), || async {
        roots[0].roots().await.is_empty()
    })
    .await
    .expect("root0 is still connected across the partition");
    // Different registrations on each side, straight to the roots.
    let a = SigningKey::from_bytes(&[1; 32]);
    let b = SigningKey::from_bytes(&[2; 32]);
    roots[0]
        .register(record("left.test", &a, 60))
        .await
        .unwrap();
    roots[1]
        .register(record("right.test", &b, 60))
        .await
        .unwrap();
    // Both sides also give one new name to different keys: the right side's claim is earlier.
    let mut left = record("both.test", &a, 60).record;
    left.serial = 5;
    roots[0].register(left.sign(&a)).await.unwrap();
    let mut right = record("both.test", &b, 60).record;
    right.serial = 3;
    roots[1].register(right.sign(&b)).await.unwrap();
    // root2, on root1's side, gets both of root1's records by gossip; by
    // then root0 would have them too, had the partition leaked.
    within(Duration::from_secs(20), || async {
        roots[2].zone().await.len() == 2
    })
    .await
    .expect("root2 did not get right.test and both.test");
    assert_eq!(roots[0].zone().await.len(), 2, "the partition leaked");
    // Heal.
    for r in &roots {
        r.block(HashSet::new()).await;
    }
    let took = within(Duration::from_secs(10), || async {
        let z0 = zone_of(&roots[0]).await;
        z0.len() == 3 && zone_of(&roots[1]).await == z0 && zone_of(&roots[2]).await == z0
    })
    .await
    .expect("roots did not converge within 10 s of the heal");
    println!("3 roots converged {took:?} after the heal");
    // Every root settled the double claim the same way: the earlier one.
    for r in &roots {
        let held = r.resolve("both.test").await.unwrap();
        assert_eq!(held.record.key, public_key(&b));
    }
    let _ = root_addrs;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_finds_every_root_through_the_dht() {
    // A chain of roots: each knows only the one before it.
    let mut roots: Vec<Host> = Vec::new();
    let mut first = Vec::new();
    for _ in 0..3 {
        let boot = match roots.last() {
            Some(r) => r.listen_addrs().await,
            None => Vec::new(),
        };
        let h = host(true, boot, &[]).await;
        if first.is_empty() {
            first = h.listen_addrs().await;
        }
        roots.push(h);
    }
    // A cloud that was told about the first root only.
    let cloud = host(false, first, &[]).await;
    let found = within(Duration::from_secs(10), || async {
        cloud.roots().await.len() == 3
    })
    .await
    .expect("the cloud did not find all 3 roots through the DHT");
    println!("a cloud found 3 roots in {found:?}");
    // The roots found each other too, so they replicate: a record given to
    // the last root reaches the cloud after the first root is gone.
    let key = SigningKey::from_bytes(&[42; 32]);
    roots[2]
        .register(record("far.test", &key, 1))
        .await
        .unwrap();
    within(Duration::from_secs(10), || async {
        roots[0].zone().await.len() == 1 && roots[1].zone().await.len() == 1
    })
    .await
    .expect("the record did not reach every root");
    roots[0].stop().await;
    let r = within(Duration::from_secs(5), || async {
        cloud.resolve("far.test").await.is_some()
    })
    .await;
    assert!(r.is_some(), "no answer once the bootstrap root was gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_zone_is_held_and_answered_by_its_exchange() {
    let root_key = SigningKey::from_bytes(&[50; 32]);
    let rk = vec![public_key(&root_key)];
    let (roots, addrs) = roots(2, &rk).await;
    let registered = |h: Host, r: SignedRecord| async move {
        within(Duration::from_secs(10), || {
            let (h, r) = (h.clone(), r.clone());
            async move { h.register(r).await.is_ok() }
        })
        .await
        .is_some()
    };
    // The exchange of asia.test; the roots keep its own record as glue.
    let ex = host_with(false, addrs.clone(), &rk, vec!["asia.test".into()]).await;
    let ex_key = SigningKey::from_bytes(&[51; 32]);
    let mut glue = record("ex.asia.test", &ex_key, 60).record;
    glue.body = Body::Cloud {
        peer_id: ex.peer_id.to_string(),
        s2s: vec![],
        cert_sha256: None,
        roles: vec!["cloud".into(), "exchange".into()],
        exchanges: vec![],
        p2p: ex
            .listen_addrs()
            .await
            .iter()
            .map(|a| a.to_string())
            .collect(),
    };
    assert!(registered(ex.clone(), glue.sign(&ex_key)).await);
    // Only a root key delegates.
    let delegation = |key: &SigningKey| {
        Record {
            v: VERSION,
            domain: "asia.test".into(),
            serial: 1,
            ttl: 60,
            key: String::new(),
            body: Body::Delegation {
                exchanges: vec!["ex.asia.test".into()],
            },
        }
        .sign(key)
    };
    let tokyo_key = SigningKey::from_bytes(&[52; 32]);
    assert_eq!(
        roots[0].register(delegation(&tokyo_key)).await.unwrap_err(),
        Refusal::Zone(ZoneError::NotRoot("asia.test".into()))
    );
    roots[0].register(delegation(&root_key)).await.unwrap();
    within(Duration::from_secs(10), || async {
        roots[1].zone().await.len() == 2
    })
    .await
    .expect("the delegation did not replicate");
    // A cloud of the zone registers through the roots: the exchange holds it, the roots do not.
    let tokyo = host(false, addrs.clone(), &rk).await;
    assert!(registered(tokyo.clone(), record("tokyo.asia.test", &tokyo_key, 1)).await);
    assert!(ex
        .zone()
        .await
        .iter()
        .any(|r| r.record.domain == "tokyo.asia.test"));
    for r in &roots {
        assert!(!r
            .zone()
            .await
            .iter()
            .any(|r| r.record.domain == "tokyo.asia.test"));
    }
    // Anyone resolves it: a root refers them to the exchange, which answers.
    let other = host(false, vec![addrs[1].clone()], &rk).await;
    let found = within(Duration::from_secs(10), || async {
        other.resolve("tokyo.asia.test").await.is_some()
    })
    .await;
    assert!(found.is_some(), "the delegated name did not resolve");
    let r = other.resolve("tokyo.asia.test").await.unwrap();
    assert_eq!(r.record.key, public_key(&tokyo_key));
    // The exchange keeps the zone's rules: nobody takes the name over.
    let thief = SigningKey::from_bytes(&[53; 32]);
    let mut stolen = record("tokyo.asia.test", &thief, 1).record;
    stolen.serial = 9;
    assert_eq!(
        other.register(stolen.sign(&thief)).await.unwrap_err(),
        Refusal::Refused(ZoneError::Takeover("tokyo.asia.test".into()).to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_holds_no_more_peer_connections_than_its_bound() {
    let root = Host::start(intercloud::p2p::host::HostConfig {
        max_connections: 3,
        max_pending_connections: 8,
        metrics: Default::default(),
        ..common::p2p::config(true, Vec::new(), &[], Vec::new())
    })
    .await
    .unwrap();
    let addrs = root.listen_addrs().await;
    // Eight peers (fresh identities each) join it; three are let in.
    let mut peers = Vec::new();
    for _ in 0..8 {
        peers.push(host(false, addrs.clone(), &[]).await);
    }
    assert!(
        within(Duration::from_secs(20), || async {
            let mut n = 0;
            for p in &peers {
                if !p.roots().await.is_empty() {
                    n += 1;
                }
            }
            n >= 3
        })
        .await
        .is_some(),
        "three peers should have found the root"
    );
    let held = root.connected().await;
    assert_eq!(held, 3, "the root holds {held} peer connections");
}
