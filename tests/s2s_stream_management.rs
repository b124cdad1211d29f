//! XEP-0198 on s2s links: a link cut under load resends what the peer did not acknowledge on the next link, and the receiving server delivers each stanza once (the copies of what had arrived, its acknowledgement lost with the link, are dropped).

mod common;

use common::{Ca, Node};
use intercloud::xmpp::client::Client;
use intercloud::xmpp::codec::Event;
use intercloud_actors::element::{Element, NS_CLIENT};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const T: Duration = Duration::from_secs(20);
const N: usize = 2000;
/// Messages sent before the relay holds acknowledgements back.
const WARM: usize = 10;

/// A TCP relay on loopback whose live connections the test can cut, and
/// whose answers (peer to dialer: XEP-0198 acknowledgements) it can hold back.
struct Relay {
    port: u16,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepted: Arc<Mutex<usize>>,
    hold: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Relay {
    async fn start(target: u16) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Default::default();
        let accepted: Arc<Mutex<usize>> = Default::default();
        let hold = Arc::new(tokio::sync::watch::channel(false).0);
        let (c2, a2, h2) = (conns.clone(), accepted.clone(), hold.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = l.accept().await {
                *a2.lock().unwrap() += 1;
                let mut held = h2.subscribe();
                let h = tokio::spawn(async move {
                    let Ok(out) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let (mut in_r, mut in_w) = inbound.into_split();
                    let (mut out_r, mut out_w) = out.into_split();
                    let forth = tokio::io::copy(&mut in_r, &mut out_w);
                    let back = async move {
                        let mut buf = vec![0u8; 16384];
                        loop {
                            if *held.borrow() {
                                // Held: nothing more goes back until the cut.
                                std::future::pending::<()>().await;
                            }
                            tokio::select! {
                                r = out_r.read(&mut buf) => match r {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => if in_w.write_all(&buf[..n]).await.is_err() { return },
                                },
                                _ = held.changed() => {}
                            }
                        }
                    };
                    tokio::select! { _ = forth => {}, _ = back => {} }
                });
                c2.lock().unwrap().push(h);
            }
        });
        Relay {
            port,
            conns,
            accepted,
            hold,
        }
    }

    /// From now on the peer's answers do not come back.
    fn hold_answers(&self) {
        self.hold.send_replace(true);
    }

    /// Drops every live connection at once, as a network fault would; new
    /// connections carry answers again.
    fn cut(&self) {
        self.hold.send_replace(false);
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
    // A few messages bring the link up; then the relay holds back cloud2's
    // acknowledgements and the first half goes out; the second only after
    // the cut, so a new link must carry it.
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (cut_tx, cut_rx) = tokio::sync::oneshot::channel::<()>();
    let sender: JoinHandle<Client> = tokio::spawn(async move {
        let mut batch = String::new();
        let mut waits = vec![(N / 2, cut_rx), (WARM, go_rx)];
        for i in 0..N {
            if waits.last().is_some_and(|(at, _)| *at == i) {
                alice.send_raw(&batch).await.unwrap();
                batch.clear();
                if let Some((_, rx)) = waits.pop() {
                    let _ = rx.await;
                }
            }
            Element::new("message", NS_CLIENT)
                .attr("to", "bob@cloud2.test/b")
                .attr("type", "chat")
                .attr("id", format!("m{i}"))
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

    // Bob's view: each message once. When he has seen the first few, the
    // relay holds back cloud2's acknowledgements; when the whole first half
    // has reached him, the link is cut. cloud1 then holds hundreds of stanzas that
    // arrived but were never acknowledged: it must resend them, and cloud2
    // must not deliver them again.
    let mut seen = BTreeSet::new();
    let mut twice = Vec::new();
    let mut go_tx = Some(go_tx);
    let mut cut_tx = Some(cut_tx);
    while seen.len() < N {
        match bob.next(T).await {
            Ok(Event::Stanza(e)) if e.name == "message" => {
                if let Some(i) = e
                    .child_text("body", NS_CLIENT)
                    .and_then(|b| b.strip_prefix('m').and_then(|n| n.parse::<usize>().ok()))
                {
                    if !seen.insert(i) {
                        twice.push(i);
                    }
                }
                if seen.len() >= WARM {
                    if let Some(tx) = go_tx.take() {
                        relay.hold_answers();
                        let _ = tx.send(());
                    }
                }
                if seen.len() >= N / 2 {
                    if let Some(tx) = cut_tx.take() {
                        relay.cut();
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
    assert!(cut_tx.is_none(), "the link was never cut");
    assert!(
        *relay.accepted.lock().unwrap() >= 2,
        "the link was not re-established"
    );
    // What cloud2 handled after the hold was resent on the new link…
    let resent: usize = a
        .log()
        .lines()
        .filter(|l| l.contains("s2s link lost with stanzas to resend"))
        .filter_map(|l| {
            l.split("to resend n=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert!(resent > 0, "nothing was resent\n{}", a.log());
    // …and bob still saw each message once. (The resent stanzas go first on
    // the new link, before the second half: by the time bob has all N, every
    // copy has come through cloud2, delivered or dropped.)
    assert!(
        twice.is_empty(),
        "delivered twice: {twice:?} ({resent} resent)"
    );
}
