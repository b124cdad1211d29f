//! Scraping a node's `/metrics` in tests: a plain HTTP/1.1 request, whole-series lookups, and waits for expected values.

use super::{free_port, Node};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(15);

/// Gives the node a metrics listener on a free port (before it starts).
pub fn with_metrics(node: &Node) -> u16 {
    let port = free_port();
    node.edit(
        "bind = \"127.0.0.1\"\nport = 0",
        &format!("bind = \"127.0.0.1\"\nport = {port}"),
    );
    port
}

/// An HTTP/1.1 request over a plain socket: (status, body).
pub async fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("metrics listener");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("no answer")
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("no header end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, body.to_string())
}

/// The value of one series, matched whole (`name{labels}` then a space).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes until every series has its expected value; fails with the last
/// scrape when they do not within the bound.
pub async fn expect(port: u16, want: &[(&str, f64)]) {
    let deadline = Instant::now() + T;
    loop {
        let (status, text) = http(port, "GET", "/metrics").await;
        assert_eq!(status, 200);
        let off: Vec<String> = want
            .iter()
            .filter(|(s, v)| sample(&text, s) != Some(*v))
            .map(|(s, v)| format!("{s}: want {v}, have {:?}", sample(&text, s)))
            .collect();
        if off.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "metrics on port {port}:\n{}\n\n{text}",
            off.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Scrapes until `series` is at least `min` (counts that other traffic
/// may raise further), returning its value.
pub async fn at_least(port: u16, series: &str, min: f64) -> f64 {
    let deadline = Instant::now() + T;
    loop {
        let (_, text) = http(port, "GET", "/metrics").await;
        if let Some(v) = sample(&text, series).filter(|v| *v >= min) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed below {min} on port {port}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
