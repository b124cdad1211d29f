//! The fault table's partitions and link rules, and what the fault wrappers do to connections (cuts, delay, loss, duplication).

use super::*;

#[test]
fn partition_groups_and_rest() {
    let t = FaultTable {
        partition: vec![vec!["a".into(), "b".into()], vec!["c".into()]],
        ..Default::default()
    };
    assert!(!t.blocked("a", "b"));
    assert!(t.blocked("a", "c"));
    assert!(t.blocked("a", "d"));
    assert!(!t.blocked("d", "e"));
    assert!(!FaultTable::default().blocked("a", "z"));
}

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_partition_cuts_a_waiting_connection_and_heal_lets_new_ones_through() {
    rt().block_on(async {
        let f = Faults::new(1);
        let (a, mut b) = tokio::io::duplex(1024);
        let mut a = Faulty::new(a, f.clone(), "x.test", "y.test");
        a.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        b.read_exact(&mut buf).await.unwrap();
        // A read waits on the dialer's side; the partition must wake and end it.
        let waiting = tokio::spawn(async move {
            let mut one = [0u8; 1];
            a.read(&mut one).await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        f.set(FaultTable {
            partition: vec![vec!["x.test".into()]],
            ..Default::default()
        });
        let r = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("the read was woken")
            .unwrap();
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        // The peer sees the connection end.
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(2), b.read_to_end(&mut rest))
            .await
            .expect("eof")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(f.blocked("x.test", "y.test"));
        f.set(FaultTable::default());
        assert!(!f.blocked("x.test", "y.test"));
        assert_eq!(f.counts().cut, 1);
    });
}

#[test]
fn delay_holds_each_chunk_and_loss_breaks_the_connection() {
    rt().block_on(async {
        let f = Faults::new(1);
        f.set(FaultTable {
            links: vec![LinkFault {
                a: "x.test".into(),
                b: "*".into(),
                delay_ms: 60,
                ..Default::default()
            }],
            ..Default::default()
        });
        let (a, mut b) = tokio::io::duplex(1024);
        let mut a = Faulty::new(a, f.clone(), "x.test", "y.test");
        let t0 = std::time::Instant::now();
        a.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(60));
        // Answers to the dialer are held too.
        let t1 = std::time::Instant::now();
        b.write_all(b"pong").await.unwrap();
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        assert!(t1.elapsed() >= Duration::from_millis(60));
        f.set(FaultTable {
            links: vec![LinkFault {
                a: "*".into(),
                b: "*".into(),
                loss: 1.0,
                ..Default::default()
            }],
            ..Default::default()
        });
        // The chunk is swallowed and the connection is broken.
        a.write_all(b"lost").await.unwrap();
        assert!(a.write_all(b"more").await.is_err());
        let mut rest = Vec::new();
        let _ = b.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
        assert_eq!(f.counts().lost, 1);
    });
}

#[test]
fn duplication_delivers_a_chunk_twice() {
    rt().block_on(async {
        let f = Faults::new(1);
        f.set(FaultTable {
            links: vec![LinkFault {
                a: "*".into(),
                b: "*".into(),
                duplicate: 1.0,
                ..Default::default()
            }],
            ..Default::default()
        });
        let (a, mut b) = tokio::io::duplex(1024);
        let mut a = Faulty::new(a, f.clone(), "x.test", "y.test");
        a.write_all(b"<m/>").await.unwrap();
        a.flush().await.unwrap();
        let mut buf = [0u8; 8];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"<m/><m/>");
    });
}

#[test]
fn link_rules_are_symmetric_and_the_worst_wins() {
    let t = FaultTable {
        links: vec![
            LinkFault {
                a: "x".into(),
                b: "*".into(),
                delay_ms: 5,
                ..Default::default()
            },
            LinkFault {
                a: "y".into(),
                b: "x".into(),
                delay_ms: 20,
                bytes_per_sec: 1000,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    assert_eq!(t.link("x", "y").delay_ms, 20);
    assert_eq!(t.link("x", "y").bytes_per_sec, 1000);
    assert_eq!(t.link("z", "x").delay_ms, 5);
    assert!(!t.link("z", "w").active());
}
