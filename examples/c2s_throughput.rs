//! Measures chat messages per second between two clients through one node, over real TLS sockets.
//!
//! `cargo run --release --example c2s_throughput -- [MESSAGES_EACH_WAY]`

use intercloud::node;
use intercloud::xmpp::client::Client;
use intercloud_actors::element::{Element, NS_CLIENT};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let dir = std::env::temp_dir().join(format!("intercloud-bench-{}", std::process::id()));
    let cfg = intercloud::init::init(&intercloud::init::InitOptions {
        dir: &dir,
        domain: "bench.test",
        roles: vec!["cloud".into()],
        c2s_port: 0,
        s2s_port: 5269,
        p2p_port: 0,
    })
    .expect("init");
    let config = intercloud::config::Config::load(&cfg).expect("config");
    let store = node::open_store(&config).expect("store");
    store.add_user("a@bench.test", "pw", 4096).unwrap();
    store.add_user("b@bench.test", "pw", 4096).unwrap();
    drop(store);
    let cert = intercloud::tls::load_certs(&config.path(&config.tls.cert))
        .unwrap()
        .remove(0);
    let node = node::Background::spawn(config).expect("node");
    let addr = node.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut a = Client::login(addr, "bench.test", cert.clone(), "a", "pw", Some("r"))
            .await
            .unwrap();
        let mut b = Client::login(addr, "bench.test", cert, "b", "pw", Some("r"))
            .await
            .unwrap();
        for c in [&mut a, &mut b] {
            c.send(&Element::new("presence", NS_CLIENT)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let batch = |to: &str| {
            let mut s = String::new();
            for i in 0..n {
                Element::new("message", NS_CLIENT)
                    .attr("to", to)
                    .attr("type", "chat")
                    .child(Element::new("body", NS_CLIENT).text(format!("m{i}")))
                    .write_to(&mut s, NS_CLIENT);
            }
            s
        };
        let (to_b, to_a) = (batch("b@bench.test/r"), batch("a@bench.test/r"));
        let t0 = Instant::now();
        // Each client writes its whole batch while reading what the other sends.
        let (ra, rb) = tokio::join!(pump(a, to_b, n), pump(b, to_a, n));
        let el = t0.elapsed();
        assert_eq!(ra + rb, 2 * n);
        println!(
            "{} chat messages through one node in {:.2?}: {:.0} messages/s",
            2 * n,
            el,
            (2 * n) as f64 / el.as_secs_f64()
        );
    });
    node.stop().expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `out` on the client's stream while counting the messages it receives.
async fn pump(c: Client, out: String, expect: usize) -> usize {
    use tokio::io::AsyncWriteExt;
    let Client { stream, .. } = c;
    let (io, mut decoder) = stream.into_parts();
    let (mut rd, mut wr) = tokio::io::split(io);
    let writer = tokio::spawn(async move {
        wr.write_all(out.as_bytes()).await.unwrap();
        wr.flush().await.unwrap();
        wr
    });
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while got < expect {
        use tokio::io::AsyncReadExt;
        let k = tokio::time::timeout(T, rd.read(&mut buf))
            .await
            .expect("stalled")
            .unwrap();
        assert!(k > 0, "closed");
        decoder.feed(&buf[..k]);
        while let Some(ev) = decoder.next_event().unwrap() {
            if let intercloud::xmpp::codec::Event::Stanza(e) = ev {
                if e.name == "message" {
                    got += 1;
                }
            }
        }
    }
    let _ = writer.await;
    got
}
