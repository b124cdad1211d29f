//! Finding a peer through DNS SRV (`_xmpp-server._tcp`), served by a real DNS server (Debian's dnsmasq) on loopback.

mod common;

use common::Node;
use intercloud_actors::element::{Element, NS_CLIENT};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(15);

struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dnsmasq(port: u16, records: &[String]) -> Dnsmasq {
    assert!(
        std::path::Path::new("/usr/sbin/dnsmasq").exists(),
        "Debian's dnsmasq-base is not installed (tests/run-all.sh installs it)"
    );
    let mut c = Command::new("/usr/sbin/dnsmasq");
    c.args([
        "-k",
        &format!("--port={port}"),
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        "--user=root",
    ]);
    c.args(records);
    let child = c
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    // Listening once its UDP port is taken.
    let t0 = std::time::Instant::now();
    while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "dnsmasq did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Dnsmasq(child)
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_lead_to_the_peer() {
    let dns_port = free_udp_port();
    let mut a = Node::init("srv1", "cloud1.test", &[]);
    let mut b = Node::init("srv2", "srv.test", &[]);
    let _dns = dnsmasq(
        dns_port,
        &[
            format!(
                "--srv-host=_xmpp-server._tcp.srv.test,node.srv.test,{},0,5",
                b.s2s_port
            ),
            "--host-record=node.srv.test,127.0.0.1".into(),
            // Explicitly no XMPP service here (target ".").
            "--srv-host=_xmpp-server._tcp.nosrv.test".into(),
        ],
    );
    a.edit(
        "dns_servers = []",
        &format!("dns_servers = [\"127.0.0.1:{dns_port}\"]"),
    );
    b.route_to(&a);
    a.add_user("alice", "pw");
    b.add_user("bob", "pw");
    a.start();
    b.start();
    let mut bob = b.login("bob", "pw", None).await;
    common::online(&mut bob).await;

    let mut alice = a.login("alice", "pw", None).await;
    let m = Element::new("message", NS_CLIENT)
        .attr("to", "bob@srv.test")
        .attr("type", "chat")
        .child(Element::new("body", NS_CLIENT).text("found you by SRV"));
    alice.send(&m).await.unwrap();
    let got = bob
        .wait_for(T, |e| e.name == "message")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", a.log(), b.log()));
    assert_eq!(
        got.child_text("body", NS_CLIENT).as_deref(),
        Some("found you by SRV")
    );

    let m = Element::new("message", NS_CLIENT)
        .attr("to", "x@nosrv.test")
        .attr("type", "chat")
        .child(Element::new("body", NS_CLIENT).text("anyone?"));
    alice.send(&m).await.unwrap();
    common::bounced(&mut alice, "remote-server-not-found").await;
}
