//! Stream timers against a real node: whitespace keepalives to idle clients, and the idle timeout.

mod common;

use common::Node;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_then_connection_timeout() {
    let mut node = Node::init(
        "timers",
        "timers.test",
        &[
            ("keepalive_secs = 60", "keepalive_secs = 1"),
            ("idle_timeout_secs = 900", "idle_timeout_secs = 4"),
        ],
    );
    node.add_user("alice", "pw");
    node.start();
    let c = node.login("alice", "pw", None).await;
    // Read the raw TLS stream: whitespace keepalives, then the timeout error.
    let mut io = c.stream.into_parts().0;
    let t0 = Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no timeout after 10 s: {:?}", String::from_utf8_lossy(&raw)),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let spaces = text.find('<').unwrap_or(text.len());
    assert!(
        spaces >= 2,
        "expected whitespace keepalives first: {text:?}"
    );
    assert!(text[spaces..].contains("<connection-timeout"), "{text:?}");
    assert!(t0.elapsed() >= Duration::from_secs(3), "closed too early");
}
