//! Micro-benchmarks of the XMPP path (`cargo bench --bench xmpp`): stream parsing (bytes/s on a realistic stanza mix), serialization, a whole SCRAM-SHA-256 exchange on the server side, and routing chat messages through the actor system without sockets.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use intercloud::bench::scram::ScramClient;
use intercloud::xmpp::codec::{Decoder, Event, Limits};
use intercloud::xmpp::sasl::{Authenticator, Step};
use intercloud_actors::credentials::ScramHash;
use intercloud_actors::element::{Element, NS_CLIENT};
use intercloud_actors::outbox::{outbox, OutboxReader};
use intercloud_actors::session::{Inbound, Outbound, Session};
use intercloud_actors::stanza::NS_BIND;
use intercloud_actors::store::Store;
use intercloud_actors::{Cloud, Settings};
use std::sync::Arc;

/// What a busy client stream carries: chats, presence with caps, roster and ping iqs, receipts.
const MIX: &[&str] = &[
    "<message to='bob@cloud2.test' from='alice@cloud1.test/laptop' type='chat' id='m1'><body>Cloud 2, I would like to use your resources for storage replication using AMQP over UDT protocol.</body><active xmlns='http://jabber.org/protocol/chatstates'/><request xmlns='urn:xmpp:receipts'/></message>",
    "<presence from='alice@cloud1.test/laptop'><show>chat</show><status>working on the Intercloud</status><priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>",
    "<iq type='get' id='r1' from='alice@cloud1.test/laptop'><query xmlns='jabber:iq:roster'/></iq>",
    "<iq type='get' id='p1' to='cloud1.test'><ping xmlns='urn:xmpp:ping'/></iq>",
    "<message to='alice@cloud1.test/laptop' from='bob@cloud2.test/phone' id='m2'><received xmlns='urn:xmpp:receipts' id='m1'/></message>",
    "<message to='bob@cloud2.test' type='chat' id='m3'><body>bench 12 3456 7890123 &amp; some &lt;escaped&gt; text</body></message>",
];

fn stream_bytes(copies: usize) -> Vec<u8> {
    let mut s = String::from(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='cloud1.test' version='1.0'>",
    );
    for _ in 0..copies {
        for m in MIX {
            s.push_str(m);
        }
    }
    s.into_bytes()
}

fn parse_all(bytes: &[u8]) -> Vec<Element> {
    let mut d = Decoder::new(Limits::default());
    d.feed(bytes);
    let mut out = Vec::new();
    while let Ok(Some(ev)) = d.next_event() {
        if let Event::Stanza(e) = ev {
            out.push(e);
        }
    }
    out
}

fn codec(c: &mut Criterion) {
    let bytes = stream_bytes(200);
    let stanzas = parse_all(&bytes);
    assert_eq!(stanzas.len(), 200 * MIX.len());
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("parse stanza mix", |b| b.iter(|| parse_all(&bytes).len()));
    g.bench_function("serialize stanza mix", |b| {
        b.iter(|| {
            let mut out = String::with_capacity(bytes.len());
            for e in &stanzas {
                e.write_to(&mut out, NS_CLIENT);
            }
            out.len()
        })
    });
    // Delivered in 1,460-byte TCP segments, as a socket hands them over.
    g.bench_function("parse stanza mix, in TCP-sized pieces", |b| {
        b.iter(|| {
            let mut d = Decoder::new(Limits::default());
            let mut n = 0;
            for chunk in bytes.chunks(1460) {
                d.feed(chunk);
                while let Ok(Some(ev)) = d.next_event() {
                    if matches!(ev, Event::Stanza(_)) {
                        n += 1;
                    }
                }
            }
            n
        })
    });
    g.finish();
}

fn scram(c: &mut Criterion) {
    let store = Arc::new(Store::in_memory().unwrap());
    store.add_user("alice@cloud1.test", "pw", 4096).unwrap();
    let auth = Authenticator {
        store,
        domain: "cloud1.test".into(),
        iterations: 4096,
        throttle: None,
    };
    let mut g = c.benchmark_group("scram");
    g.sample_size(20);
    g.bench_function(
        "SCRAM-SHA-256 exchange, 4096 iterations (client and server)",
        |b| {
            b.iter(|| {
                let client = ScramClient::new(ScramHash::Sha256, "alice");
                let mut m = auth.start("SCRAM-SHA-256").unwrap();
                let Step::Challenge(first) = auth.step(&mut m, client.first().as_bytes()) else {
                    panic!("no challenge")
                };
                let (fin, _) = client
                    .finish(std::str::from_utf8(&first).unwrap(), "pw")
                    .unwrap();
                match auth.step(&mut m, fin.as_bytes()) {
                    Step::Success { .. } => {}
                    _ => panic!("SCRAM failed"),
                }
            })
        },
    );
    g.finish();
}

/// A bound, available session fed by a channel (no socket).
fn session(cloud: &Arc<Cloud>, user: &str) -> (actix::Addr<Session>, OutboxReader) {
    use actix::Actor;
    let (tx, rx) = outbox(1 << 16, usize::MAX);
    let bare = format!("{user}@bench.test").parse().unwrap();
    let s = Session::new(cloud.clone(), bare, false, tx, 1).start();
    let bind = Element::new("iq", NS_CLIENT)
        .attr("type", "set")
        .attr("id", "b")
        .child(Element::new("bind", NS_BIND).child(Element::new("resource", NS_BIND).text("r")));
    s.do_send(Inbound {
        conn: 1,
        stanza: bind,
    });
    s.do_send(Inbound {
        conn: 1,
        stanza: Element::new("presence", NS_CLIENT),
    });
    (s, rx)
}

fn routing(c: &mut Criterion) {
    const N: usize = 1000;
    let sys = actix::System::new();
    let (a, mut brx) = sys.block_on(async {
        let store = Arc::new(Store::in_memory().unwrap());
        store.add_user("a@bench.test", "pw", 64).unwrap();
        store.add_user("b@bench.test", "pw", 64).unwrap();
        let cloud = Cloud::start(
            Settings {
                domain: "bench.test".into(),
                session_queue: 1 << 16,
                ..Settings::default()
            },
            store,
        );
        let (a, mut arx) = session(&cloud, "a");
        let (b, mut brx) = session(&cloud, "b");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        while arx.try_recv().is_some() {}
        while brx.try_recv().is_some() {}
        std::mem::forget(arx);
        std::mem::forget(b);
        (a, brx)
    });
    let msg = Element::new("message", NS_CLIENT)
        .attr("to", "b@bench.test/r")
        .attr("type", "chat")
        .child(Element::new("body", NS_CLIENT).text("routed without sockets"));
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(
        "chat a -> b through session, router, session actors",
        |bn| {
            bn.iter(|| {
                sys.block_on(async {
                    for _ in 0..N {
                        a.do_send(Inbound {
                            conn: 1,
                            stanza: msg.clone(),
                        });
                    }
                    let mut got = 0;
                    while got < N {
                        match brx.recv().await {
                            Some((Outbound::Stanza(_), _)) => got += 1,
                            Some(_) => {}
                            None => panic!("session b ended"),
                        }
                    }
                })
            })
        },
    );
    g.finish();
}

criterion_group!(benches, codec, scram, routing);
criterion_main!(benches);
