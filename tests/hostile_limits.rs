//! Bounds on what a client can make the node hold: sessions waiting to be resumed, bytes queued to a client or a remote domain, and remote domains dialed — each with the protocol's error and nothing lost for anyone else.

mod common;

use common::Node;
use intercloud::xmpp::client::Client;
use intercloud_actors::element::{Element, NS_CLIENT};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn message(to: &str, body: &str) -> Element {
    Element::new("message", NS_CLIENT)
        .attr("to", to)
        .attr("type", "chat")
        .attr("id", body.chars().take(16).collect::<String>())
        .child(Element::new("body", NS_CLIENT).text(body))
}

/// How many times `needle` is in the node's log.
fn logged(node: &Node, needle: &str) -> usize {
    node.log().matches(needle).count()
}

/// Logs `user` in as `resource` with a resumable stream-managed session;
/// returns the client and the id to resume it with.
async fn resumable(node: &Node, user: &str, resource: &str) -> (Client, String) {
    let mut c = node.login(user, "pw", Some(resource)).await;
    let id = c.enable_sm().await.unwrap();
    (c, id)
}

/// Cuts the client's connection (no stream end) and waits until the node
/// keeps its session for resumption (the `n`th such session in the log).
fn cut(node: &Node, c: Client, n: usize) {
    drop(c);
    common::wait_for("the session to detach", || {
        logged(node, "connection lost; session kept for resumption") >= n
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_sessions_are_bounded_per_account_and_lose_nothing() {
    let mut node = Node::init(
        "lim-acct",
        "lim.test",
        &[(
            "max_sessions_per_account = 10",
            "max_sessions_per_account = 3",
        )],
    );
    node.add_user("alice", "pw");
    node.add_user("bob", "pw");
    node.start();
    let mut alice = node.login("alice", "pw", Some("a")).await;

    // r0 is available and is sent a message it never acknowledges.
    let (mut r0, id0) = resumable(&node, "bob", "r0").await;
    r0.send(&Element::new("presence", NS_CLIENT)).await.unwrap();
    common::sync(&mut r0, "r0-online").await;
    alice
        .send(&message("bob@lim.test/r0", "held-by-r0"))
        .await
        .unwrap();
    r0.wait_for(T, |e| e.name == "message").await.unwrap();
    cut(&node, r0, 1);
    // r1 and r2 detach too: the account has its three sessions.
    let (r1, _) = resumable(&node, "bob", "r1").await;
    cut(&node, r1, 2);
    let (r2, _) = resumable(&node, "bob", "r2").await;
    cut(&node, r2, 3);

    // A fourth session makes room by ending the one detached longest (r0);
    // what r0 held goes to offline storage (no resource is available).
    let mut r3 = node.login("bob", "pw", Some("r3")).await;
    common::wait_for("r0 to end", || {
        logged(&node, "ending a detached session to make room") >= 1
    });
    r3.send(&Element::new("presence", NS_CLIENT)).await.unwrap();
    let got = r3
        .wait_for(T, |e| e.name == "message")
        .await
        .unwrap_or_else(|e| panic!("the held message was lost: {e}\n{}", node.log()));
    assert_eq!(
        got.child_text("body", NS_CLIENT).as_deref(),
        Some("held-by-r0")
    );
    // r0 cannot be resumed any more.
    let r = Client::resume(node.addr(), "lim.test", node.cert(), "bob", "pw", &id0, 1).await;
    assert!(r.is_err(), "r0 was resumed after it was ended");

    // Two more push out r1 and r2; then all three are connected and a
    // fourth bind is refused with <resource-constraint/>.
    let _r4 = node.login("bob", "pw", Some("r4")).await;
    let _r5 = node.login("bob", "pw", Some("r5")).await;
    common::wait_for("r1 and r2 to end", || {
        logged(&node, "ending a detached session to make room") >= 3
    });
    let refused = Client::login(
        node.addr(),
        "lim.test",
        node.cert(),
        "bob",
        "pw",
        Some("r6"),
    )
    .await;
    match refused {
        Ok(_) => panic!("a fourth connected session was bound"),
        Err(e) => assert!(e.to_string().contains("resource-constraint"), "{e}"),
    }
    // The same resource again replaces, and is not refused.
    let _r5b = node.login("bob", "pw", Some("r5")).await;
    // Alice was served throughout.
    common::sync(&mut alice, "still-served").await;
    assert_eq!(logged(&node, "ending a detached session to make room"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_sessions_count_against_the_connection_limit() {
    let mut node = Node::init(
        "lim-conn",
        "lim.test",
        &[("max_connections = 10000", "max_connections = 3")],
    );
    for u in ["u1", "u2", "u3", "u4"] {
        node.add_user(u, "pw");
    }
    node.start();
    let (c1, id1) = resumable(&node, "u1", "r").await;
    cut(&node, c1, 1);
    let (c2, id2) = resumable(&node, "u2", "r").await;
    cut(&node, c2, 2);
    // One connection and two detached sessions fill the node: the next
    // connection is let in, and the session detached longest (u1's) ends.
    let _c3 = node.login("u3", "pw", None).await;
    assert_eq!(logged(&node, "ending a detached session to make room"), 0);
    let _c4 = node.login("u4", "pw", None).await;
    common::wait_for("the oldest detached session to end", || {
        logged(&node, "ending a detached session to make room") >= 1
    });
    let log = node.log();
    let line = log
        .lines()
        .find(|l| l.contains("ending a detached session to make room"))
        .unwrap();
    assert!(line.contains("account=u1@lim.test"), "{line}");
    assert!(
        Client::resume(node.addr(), "lim.test", node.cert(), "u1", "pw", &id1, 0)
            .await
            .is_err(),
        "u1's session outlived the connection limit"
    );
    let _ = id2;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_dropped_at_its_byte_bound() {
    let mut node = Node::init(
        "lim-slow",
        "lim.test",
        &[(
            "session_queue_bytes = 4194304",
            "session_queue_bytes = 1048576",
        )],
    );
    node.add_user("alice", "pw");
    node.add_user("bob", "pw");
    node.start();
    // Bob never reads again.
    let mut bob = node.login("bob", "pw", Some("b")).await;
    bob.send(&Element::new("presence", NS_CLIENT))
        .await
        .unwrap();
    common::sync(&mut bob, "bob-online").await;
    let mut alice = node.login("alice", "pw", Some("a")).await;
    let before = common::rss_kib(node.pid());
    // 400 messages of 200 KB: 80 MB for a client whose socket holds a few.
    let big = "x".repeat(200_000);
    for i in 0..400 {
        alice
            .send(&message("bob@lim.test/b", &format!("{i:04}{big}")))
            .await
            .unwrap();
        if i % 50 == 49 {
            common::sync(&mut alice, &format!("s{i}")).await;
        }
    }
    common::sync(&mut alice, "sent").await;
    // Bob's session handles its copies after alice's ping is answered.
    common::wait_for("bob's session to end as too slow", || {
        logged(&node, "client is not reading; closing its session") >= 1
    });
    assert_eq!(
        logged(&node, "client is not reading; closing its session"),
        1,
        "{}",
        node.log()
    );
    let grown = common::rss_kib(node.pid()).saturating_sub(before);
    assert!(
        grown < 48 * 1024,
        "the node grew by {grown} KiB for a client that does not read"
    );
    // Alice is served; bob, once he reads, finds the policy violation at the end.
    common::sync(&mut alice, "still-served").await;
    drop(bob);
}

/// Listens on loopback and accepts connections it never answers.
async fn tarpit() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let h = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (addr, h)
}

/// Collects `n` errors bounced to `c` and counts them by condition.
async fn bounces(c: &mut Client, n: usize) -> std::collections::BTreeMap<String, usize> {
    bounces_after(c, Vec::new(), n).await
}

/// Like [`bounces`], counting first the errors among `seen` (stanzas already read).
async fn bounces_after(
    c: &mut Client,
    seen: Vec<Element>,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    let mut by = std::collections::BTreeMap::new();
    let mut seen = seen
        .into_iter()
        .filter(|e| e.get_attr("type") == Some("error"));
    for _ in 0..n {
        let e = match seen.next() {
            Some(e) => e,
            None => c
                .wait_for(Duration::from_secs(60), |e| {
                    e.get_attr("type") == Some("error")
                })
                .await
                .unwrap(),
        };
        let cond = e
            .get_child("error", NS_CLIENT)
            .and_then(|er| er.elements().next())
            .map(|c| c.name.clone())
            .unwrap_or_default();
        *by.entry(cond).or_insert(0) += 1;
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_to_a_remote_domain_is_bounded_by_bytes() {
    let (pit, _h) = tarpit().await;
    let mut node = Node::init(
        "lim-s2sq",
        "lim.test",
        &[("s2s_queue_bytes = 4194304", "s2s_queue_bytes = 1048576")],
    );
    node.route("pit.test", &pit.to_string());
    node.add_user("alice", "pw");
    node.start();
    let mut alice = node.login("alice", "pw", Some("a")).await;
    // 20 messages of 200,000 bytes while the dial hangs: five fit in 1 MiB.
    let big = "y".repeat(200_000);
    for i in 0..20 {
        alice
            .send(&message("bob@pit.test", &format!("{i:04}{big}")))
            .await
            .unwrap();
    }
    let by = bounces(&mut alice, 20).await;
    assert_eq!(by.get("resource-constraint"), Some(&15), "{by:?}");
    assert_eq!(by.get("remote-server-timeout"), Some(&5), "{by:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dials_to_new_domains_are_capped_and_bad_domains_never_dialed() {
    let (pit, _h) = tarpit().await;
    let mut node = Node::init(
        "lim-dial",
        "lim.test",
        &[
            ("s2s_max_pending = 64", "s2s_max_pending = 6"),
            (
                "s2s_max_pending_per_sender = 8",
                "s2s_max_pending_per_sender = 4",
            ),
        ],
    );
    for i in 0..14 {
        node.route(&format!("d{i}.test"), &pit.to_string());
    }
    node.add_user("alice", "pw");
    node.add_user("bob", "pw");
    node.start();
    let mut alice = node.login("alice", "pw", Some("a")).await;
    let mut bob = node.login("bob", "pw", Some("b")).await;
    // Alice may have four new domains dialed at once; the other six bounce.
    for i in 0..10 {
        alice
            .send(&message(&format!("x@d{i}.test"), &format!("a{i}")))
            .await
            .unwrap();
    }
    // The ping orders alice's sends before bob's; bounces racing it are kept.
    let early = common::sync_keeping(&mut alice, "a-sent").await;
    // Bob may have two more: six in all.
    for i in 10..13 {
        bob.send(&message(&format!("x@d{i}.test"), &format!("b{i}")))
            .await
            .unwrap();
    }
    let a = bounces_after(&mut alice, early, 10).await;
    assert_eq!(a.get("resource-constraint"), Some(&6), "{a:?}");
    assert_eq!(a.get("remote-server-timeout"), Some(&4), "{a:?}");
    let b = bounces(&mut bob, 3).await;
    assert_eq!(b.get("resource-constraint"), Some(&1), "{b:?}");
    assert_eq!(b.get("remote-server-timeout"), Some(&2), "{b:?}");
    // The dials are over: alice may dial again.
    alice.send(&message("x@d13.test", "again")).await.unwrap();
    let again = bounces(&mut alice, 1).await;
    assert_eq!(again.get("remote-server-timeout"), Some(&1), "{again:?}");

    // What is not a domain is refused before any dial.
    let dials = logged(&node, "s2s dial failed");
    let long_label = format!("x@{}.test", "a".repeat(1019));
    let bad = [
        "x@fuzz..test",
        "x@host:port",
        "x@-x",
        "x@x_y",
        "urn:xmpp:ping",
        long_label.as_str(),
    ];
    for to in bad {
        alice.send(&message(to, "bad")).await.unwrap();
    }
    let b = bounces(&mut alice, bad.len()).await;
    assert_eq!(b.get("jid-malformed"), Some(&bad.len()), "{b:?}");
    common::sync(&mut alice, "after-bad").await;
    assert_eq!(logged(&node, "s2s dial failed"), dials, "{}", node.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_connections_writes_few_log_lines() {
    use tokio::io::AsyncReadExt;
    let mut node = Node::init(
        "lim-logflood",
        "lim.test",
        &[("max_connections = 10000", "max_connections = 2")],
    );
    node.add_user("alice", "pw");
    node.start();
    let mut alice = node.login("alice", "pw", None).await;
    // The second slot: a connection that says nothing (yet).
    let _idle = tokio::net::TcpStream::connect(node.addr()).await.unwrap();
    common::wait_for("the idle connection to hold its slot", || {
        std::net::TcpStream::connect(node.addr())
            .map(|mut s| {
                use std::io::Read;
                let mut b = [0u8; 256];
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                matches!(s.read(&mut b), Ok(n) if n > 0 && String::from_utf8_lossy(&b[..n]).contains("policy-violation"))
            })
            .unwrap_or(false)
    });
    // 200 connections over the limit: each is refused with the stream error.
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(node.addr()).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(T, s.read_to_end(&mut got))
            .await
            .expect("refused in time")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&got).contains("policy-violation"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    common::sync(&mut alice, "served").await;
    // A few lines say so, the next one how many were held back; not 200.
    let lines = logged(&node, "connection limit reached; refusing");
    assert!((1..=10).contains(&lines), "{lines} lines for 200 refusals");
}
