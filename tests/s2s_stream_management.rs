//! XEP-0198 on s2s links: a link cut under load resends what the peer did not acknowledge on the next link.

mod common;

use common::{Ca, Node};
use intercloud::xmpp::client::Client;
use intercloud::xmpp::codec::Event;
use intercloud_actors::element::{Element, NS_CLIENT};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const T: Duration = Duration::from_secs(20);
const N: usize = 2000;

/// A TCP relay on loopback whose live connections the test can cut.
struct Relay {
    port: u16,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepted: Arc<Mutex<usize>>,
}

impl Relay {
    async fn start(target: u16) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Default::default();
        let accepted: Arc<Mutex<usize>> = Default::default();
        let (c2, a2) = (conns.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = l.accept().await {
                *a2.lock().unwrap() += 1;
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                c2.lock().unwrap().push(h);
            }
        });
        Relay {
            port,
            conns,
            accepted,
        }
    }

    /// Drops every live connection at once, as a network fault would.
    fn cut(&self) {
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2s_link_cut_under_load_loses_nothing() {
    let ca = Ca::new("s2ssm");
    let mut a = Node::init("s2ssm1", "cloud1.test", &[]);
    let mut b = Node::init("s2ssm2", "cloud2.test", &[]);
    let relay = Relay::start(b.s2s_port).await;
    a.use_ca(&ca);
    b.use_ca(&ca);
    // cloud1 reaches cloud2 through the relay; cloud2 answers directly.
    a.route("cloud2.test", &format!("127.0.0.1:{}", relay.port));
    b.route_to(&a);
    a.add_user("alice", "pw");
    b.add_user("bob", "pw");
    a.start();
    b.start();

    let mut bob = b.login("bob", "pw", Some("b")).await;
    common::online(&mut bob).await;

    let mut alice = a.login("alice", "pw", Some("a")).await;
    // The first half goes out at once (the cut comes while it is in
    // flight); the second only after the cut, so a new link must carry it
    // even when the first half had already passed the relay.
    let (cut_tx, cut_rx) = tokio::sync::oneshot::channel::<()>();
    let sender: JoinHandle<Client> = tokio::spawn(async move {
        let mut batch = String::new();
        let mut cut_rx = Some(cut_rx);
        for i in 0..N {
            if i == N / 2 {
                alice.send_raw(&batch).await.unwrap();
                batch.clear();
                if let Some(rx) = cut_rx.take() {
                    let _ = rx.await;
                }
            }
            Element::new("message", NS_CLIENT)
                .attr("to", "bob@cloud2.test/b")
                .attr("type", "chat")
                .child(Element::new("body", NS_CLIENT).text(format!("m{i}")))
                .write_to(&mut batch, NS_CLIENT);
            if i % 200 == 199 {
                alice.send_raw(&batch).await.unwrap();
                batch.clear();
            }
        }
        alice.send_raw(&batch).await.unwrap();
        alice
    });

    let mut seen = BTreeSet::new();
    let mut cut = false;
    let mut cut_tx = Some(cut_tx);
    while seen.len() < N {
        match bob.next(T).await {
            Ok(Event::Stanza(e)) if e.name == "message" => {
                if let Some(i) = e
                    .child_text("body", NS_CLIENT)
                    .and_then(|b| b.strip_prefix('m').and_then(|n| n.parse::<usize>().ok()))
                {
                    seen.insert(i);
                }
                if !cut && seen.len() >= 400 {
                    relay.cut();
                    cut = true;
                    if let Some(tx) = cut_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
            Ok(Event::Stanza(_)) => {}
            other => panic!(
                "bob stopped receiving after {} of {N} ({other:?}); missing {:?}\n{}\n{}",
                seen.len(),
                (0..N)
                    .filter(|i| !seen.contains(i))
                    .take(10)
                    .collect::<Vec<_>>(),
                a.log(),
                b.log()
            ),
        }
    }
    sender.await.unwrap();
    assert!(cut);
    assert!(
        *relay.accepted.lock().unwrap() >= 2,
        "the link was not re-established"
    );
    assert!(a.log().contains("s2s link down"), "{}", a.log());
    for l in a
        .log()
        .lines()
        .filter(|l| l.contains("resend") || l.contains("link down"))
    {
        println!("{l}");
    }
}
