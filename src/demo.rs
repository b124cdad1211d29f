//! `intercloud demo`: a node on localhost with two gateway accounts and an exchange catalog; the paper's §6 query and §7 dialog run through it over real TLS sockets.

use crate::config::Config;
use crate::node;
use crate::xmpp::client::{Client, ClientError};
use intercloud_actors::element::{Element, NS_CLIENT};
use intercloud_actors::stanza::{NS_DISCO_INFO, NS_PING};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const DOMAIN: &str = "localhost";
pub const PASSWORD: &str = "intercloud";
pub const ACCOUNTS: &[&str] = &["cloud1", "cloud2"];

/// The paper's §6 request, byte for byte.
const PAPER_REQUEST: &str = include_str!("../scenarios/data/paper_request.xml");

/// The demo exchange's catalog: twelve clouds, of which cloud2 and cloud5 match the request.
pub const CATALOG: &[(&str, &str)] = &[
    (
        "cloud1.test",
        include_str!("../scenarios/data/paper-catalog/cloud1.test.ttl"),
    ),
    (
        "cloud2.test",
        include_str!("../scenarios/data/paper-catalog/cloud2.test.ttl"),
    ),
    (
        "cloud3.test",
        include_str!("../scenarios/data/paper-catalog/cloud3.test.ttl"),
    ),
    (
        "cloud4.test",
        include_str!("../scenarios/data/paper-catalog/cloud4.test.ttl"),
    ),
    (
        "cloud5.test",
        include_str!("../scenarios/data/paper-catalog/cloud5.test.ttl"),
    ),
    (
        "cloud6.test",
        include_str!("../scenarios/data/paper-catalog/cloud6.test.ttl"),
    ),
    (
        "cloud7.test",
        include_str!("../scenarios/data/paper-catalog/cloud7.test.ttl"),
    ),
    (
        "cloud8.test",
        include_str!("../scenarios/data/paper-catalog/cloud8.test.ttl"),
    ),
    (
        "cloud9.test",
        include_str!("../scenarios/data/paper-catalog/cloud9.test.ttl"),
    ),
    (
        "cloud10.test",
        include_str!("../scenarios/data/paper-catalog/cloud10.test.ttl"),
    ),
    (
        "cloud11.test",
        include_str!("../scenarios/data/paper-catalog/cloud11.test.ttl"),
    ),
    (
        "cloud12.test",
        include_str!("../scenarios/data/paper-catalog/cloud12.test.ttl"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Init(#[from] crate::init::InitError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("demo runtime: {0}")]
    Start(String),
    #[error("demo step failed: {0}")]
    Step(String),
}

const T: Duration = Duration::from_secs(10);

/// Runs the demo; with `exit` false the node keeps serving until Ctrl-C.
pub fn run(dir: Option<PathBuf>, port: u16, exit: bool) -> Result<(), DemoError> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("intercloud-demo-{}", std::process::id()))
    });
    let cfg_path = dir.join("intercloud.toml");
    if !cfg_path.exists() {
        crate::init::init(&crate::init::InitOptions {
            dir: &dir,
            domain: DOMAIN,
            // The exchange role: the catalog service at service.localhost.
            roles: vec!["cloud".into(), "exchange".into()],
            c2s_port: port,
            s2s_port: 5269,
            // One node alone has no directory to join.
            p2p_port: 0,
        })?;
    }
    let config = Config::load(&cfg_path)?;
    let store = node::open_store(&config)?;
    for a in ACCOUNTS {
        let jid = format!("{a}@{}", config.node.domain);
        if !store.user_exists(&jid).unwrap_or(false) {
            store
                .add_user(&jid, PASSWORD, config.limits.scram_iterations)
                .map_err(node::NodeError::from)?;
        }
    }
    if store.descriptions().map(|d| d.is_empty()).unwrap_or(true) {
        for (d, ttl) in CATALOG {
            store
                .put_description(d, ttl)
                .map_err(node::NodeError::from)?;
        }
    }
    drop(store);
    let pinned = crate::tls::load_certs(&config.path(&config.tls.cert))?.remove(0);
    let domain = config.node.domain.clone();
    println!("intercloud demo: node for {domain} in {}", dir.display());
    let node = node::Background::spawn(config)?;
    let addr = node.addr;
    println!("c2s listening on {addr} (STARTTLS required, self-signed certificate)\n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DemoError::Start(e.to_string()))?;
    let result = rt.block_on(dialog(addr, &domain, pinned));
    if let Err(e) = &result {
        println!("demo failed: {e}");
    }
    if exit || result.is_err() {
        node.stop()?;
        return result;
    }
    println!(
        "\nThe node keeps running. Log in with any XMPP client as {}@{domain} or {}@{domain}, password {PASSWORD:?}, server 127.0.0.1 port {}. Ctrl-C stops it.",
        ACCOUNTS[0],
        ACCOUNTS[1],
        addr.port()
    );
    Ok(node.join()?)
}

fn say(who: &str, what: &str) {
    println!("{who:>8} | {what}");
}

fn presence(ty: Option<&str>, to: Option<&str>) -> Element {
    let mut p = Element::new("presence", NS_CLIENT);
    if let Some(t) = ty {
        p.set_attr("type", t);
    }
    if let Some(t) = to {
        p.set_attr("to", t);
    }
    p
}

fn is_presence(ty: &'static str) -> impl Fn(&Element) -> bool {
    move |e| e.name == "presence" && e.get_attr("type").unwrap_or("") == ty
}

/// The paper's §7 dialog between two cloud gateways.
async fn dialog(
    addr: SocketAddr,
    domain: &str,
    pinned: rustls::pki_types::CertificateDer<'static>,
) -> Result<(), DemoError> {
    let c1 = format!("{}@{domain}", ACCOUNTS[0]);
    let c2 = format!("{}@{domain}", ACCOUNTS[1]);
    let mut a = Client::login(
        addr,
        domain,
        pinned.clone(),
        ACCOUNTS[0],
        PASSWORD,
        Some("gateway"),
    )
    .await?;
    say("cloud1", &format!("logged in over STARTTLS as {}", a.jid));
    let mut b = Client::login(addr, domain, pinned, ACCOUNTS[1], PASSWORD, Some("gateway")).await?;
    say("cloud2", &format!("logged in over STARTTLS as {}", b.jid));
    b.send(&presence(None, None)).await?;
    a.send(&presence(None, None)).await?;

    // §6: which clouds meet cloud1's constraints? The paper's request as printed.
    let svc = format!("service.{domain}");
    let request = PAPER_REQUEST
        .replace("from='user@cloudl.org'\n", "")
        .replace("to='service.intercloudexchg.com'", &format!("to='{svc}'"));
    say("cloud1", &format!("-> {svc}: constraint_catalog_resources (availability >= 99.999 %, replication >= 5, Japan, AMQP, NFS)"));
    a.send_raw(&request).await?;
    let r = a
        .wait_for(T, |e| {
            e.name == "iq" && e.get_attr("id") == Some("cloudl_idl")
        })
        .await?;
    let names: Vec<String> = r
        .get_child("command", intercloud_actors::adhoc::NS_COMMANDS)
        .and_then(|c| c.get_child("iodata", intercloud_actors::iodata::NS_IODATA))
        .and_then(|io| io.get_child("out", intercloud_actors::iodata::NS_IODATA))
        .and_then(|o| {
            o.get_child(
                "matchingClouds",
                intercloud_actors::catalog::constraints::NS_RES,
            )
        })
        .map(|m| m.elements().map(|e| e.text_content()).collect())
        .unwrap_or_default();
    if names.is_empty() {
        return Err(DemoError::Step(format!(
            "no matching clouds: {}",
            r.to_xml()
        )));
    }
    say(
        "cloud1",
        &format!("<- {svc}: matchingClouds {}", names.join(", ")),
    );

    a.send(&presence(Some("subscribe"), Some(&c2))).await?;
    say("cloud1", &format!("asks to see the presence of {c2}"));
    b.wait_for(T, is_presence("subscribe")).await?;
    b.send(&presence(Some("subscribed"), Some(&c1))).await?;
    say("cloud2", "approves");
    let p = a
        .wait_for(T, |e| e.name == "presence" && e.get_attr("type").is_none())
        .await?;
    say(
        "cloud1",
        &format!("sees {} available", p.get_attr("from").unwrap_or("?")),
    );

    let ask = "Cloud 2, I would like to use your resources for storage replication using AMQP over UDT protocol.";
    let m = Element::new("message", NS_CLIENT)
        .attr("to", c2.clone())
        .attr("type", "chat")
        .attr("id", "nego1")
        .child(Element::new("body", NS_CLIENT).text(ask));
    a.send(&m).await?;
    say("cloud1", &format!("-> {c2}: {ask}"));
    let got = b.wait_for(T, |e| e.name == "message").await?;
    let body = got.child_text("body", NS_CLIENT).unwrap_or_default();
    say(
        "cloud2",
        &format!("<- {}: {body}", got.get_attr("from").unwrap_or("?")),
    );
    let reply = "Cloud 1, please go ahead and use my resources for storage replication using AMQP/UDT protocol.";
    let r = Element::new("message", NS_CLIENT)
        .attr("to", got.get_attr("from").unwrap_or(&c1).to_string())
        .attr("type", "normal")
        .child(Element::new("body", NS_CLIENT).text(reply));
    b.send(&r).await?;
    say("cloud2", &format!("-> {c1}: {reply}"));
    let got = a.wait_for(T, |e| e.name == "message").await?;
    say(
        "cloud1",
        &format!(
            "<- {}: {}",
            got.get_attr("from").unwrap_or("?"),
            got.child_text("body", NS_CLIENT).unwrap_or_default()
        ),
    );

    let ping = Element::new("iq", NS_CLIENT)
        .attr("type", "get")
        .attr("id", "ping1")
        .attr("to", domain)
        .child(Element::new("ping", NS_PING));
    a.send(&ping).await?;
    a.wait_for(T, |e| {
        e.get_attr("id") == Some("ping1") && e.get_attr("type") == Some("result")
    })
    .await?;
    say("cloud1", "pinged the server (XEP-0199): pong");
    let disco = Element::new("iq", NS_CLIENT)
        .attr("type", "get")
        .attr("id", "disco1")
        .attr("to", domain)
        .child(Element::new("query", NS_DISCO_INFO));
    a.send(&disco).await?;
    let info = a
        .wait_for(T, |e| e.get_attr("id") == Some("disco1"))
        .await?;
    let n = info
        .get_child("query", NS_DISCO_INFO)
        .map(|q| q.elements().filter(|f| f.name == "feature").count())
        .unwrap_or(0);
    if n == 0 {
        return Err(DemoError::Step("disco#info listed no features".into()));
    }
    say("cloud1", &format!("disco#info on {domain}: {n} features"));
    a.send_raw("</stream:stream>").await?;
    b.send_raw("</stream:stream>").await?;
    println!("\ndemo dialog complete");
    Ok(())
}
