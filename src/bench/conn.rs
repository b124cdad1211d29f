//! One load-generator connection speaking only standard XMPP: STARTTLS, optional XEP-0077 registration, SCRAM-SHA-256 or SCRAM-SHA-1, resource binding, initial presence — so it runs unchanged against our node, Prosody or ejabberd.

use crate::xmpp::codec::{self, Decoder, Event, Limits};
use crate::xmpp::register;
use crate::xmpp::sasl::NS_SASL;
use crate::xmpp::stream::NS_TLS;
use crate::xmpp::stream::{WireError, XmlStream};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use intercloud_actors::credentials::{constant_time_eq, ScramHash};
use intercloud_actors::element::{Element, NS_CLIENT};
use intercloud_actors::stanza::NS_BIND;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("registration refused: {0}")]
    Register(String),
    #[error("authentication failed: {0}")]
    Auth(String),
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub domain: String,
    pub tls: Arc<rustls::ClientConfig>,
}

impl Target {
    /// With `pinned`, only that certificate; otherwise any (load testing).
    pub fn new(addr: SocketAddr, domain: &str, pinned: Option<CertificateDer<'static>>) -> Target {
        Target {
            addr,
            domain: domain.to_string(),
            tls: match pinned {
                Some(p) => crate::tls::pinned_client_config(p),
                None => crate::tls::any_server_client_config(),
            },
        }
    }
}

pub type Reader = ReadHalf<TlsStream<TcpStream>>;
pub type Writer = WriteHalf<TlsStream<TcpStream>>;

/// A logged-in, available session, split for concurrent reading and writing.
pub struct Conn {
    pub jid: String,
    pub reader: Reader,
    pub decoder: Decoder,
    pub writer: Writer,
}

const T: Duration = Duration::from_secs(30);

fn header(domain: &str) -> String {
    codec::stream_header(NS_CLIENT, None, Some(domain), None, &[])
}

async fn features<S>(s: &mut XmlStream<S>) -> Result<Element, ConnError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match s.next_event(T).await? {
            Event::StreamStart(_) => continue,
            Event::Stanza(f) if f.name == "features" => return Ok(f),
            e => return Err(ConnError::Protocol(format!("expected features, got {e:?}"))),
        }
    }
}

async fn next_stanza<S>(s: &mut XmlStream<S>) -> Result<Element, ConnError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match s.next_event(T).await? {
        Event::Stanza(e) => Ok(e),
        e => Err(ConnError::Protocol(format!("{e:?}"))),
    }
}

fn error_condition(e: &Element) -> String {
    e.get_child("error", NS_CLIENT)
        .and_then(|x| x.first_element())
        .map(|c| c.name.clone())
        .unwrap_or_else(|| e.to_xml())
}

/// The SCRAM exchange, verifying the server's signature.
async fn scram<S>(
    s: &mut XmlStream<S>,
    hash: ScramHash,
    user: &str,
    password: &str,
) -> Result<(), ConnError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let c = super::scram::ScramClient::new(hash, user);
    let auth = Element::new("auth", NS_SASL)
        .attr("mechanism", hash.mechanism())
        .text(B64.encode(c.first()));
    s.send(&auth.to_xml()).await?;
    let ch = next_stanza(s).await?;
    if ch.name != "challenge" {
        return Err(ConnError::Auth(
            ch.first_element()
                .map(|c| c.name.clone())
                .unwrap_or(ch.name),
        ));
    }
    let server_first = B64
        .decode(ch.text_content().trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or_else(|| ConnError::Protocol("bad challenge".into()))?;
    let (fin, expected) = c
        .finish(&server_first, password)
        .map_err(ConnError::Protocol)?;
    s.send(
        &Element::new("response", NS_SASL)
            .text(B64.encode(fin))
            .to_xml(),
    )
    .await?;
    let done = next_stanza(s).await?;
    if done.name != "success" {
        return Err(ConnError::Auth(
            done.first_element()
                .map(|c| c.name.clone())
                .unwrap_or(done.name),
        ));
    }
    let v = B64
        .decode(done.text_content().trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|t| t.strip_prefix("v=").map(str::to_string))
        .and_then(|v| B64.decode(v).ok())
        .unwrap_or_default();
    if !constant_time_eq(&v, &expected) {
        return Err(ConnError::Auth(
            "the server's signature does not verify".into(),
        ));
    }
    Ok(())
}

/// TCP, then STARTTLS; the stream after TLS and its features.
async fn connect_tls(t: &Target) -> Result<(XmlStream<TlsStream<TcpStream>>, Element), ConnError> {
    let tcp = TcpStream::connect(t.addr).await?;
    tcp.set_nodelay(true)?;
    let mut s = XmlStream::new(tcp, Limits::default());
    s.send(&header(&t.domain)).await?;
    features(&mut s).await?;
    s.send(&Element::new("starttls", NS_TLS).to_xml()).await?;
    let p = next_stanza(&mut s).await?;
    if p.name != "proceed" {
        return Err(ConnError::Protocol(format!(
            "STARTTLS refused: {}",
            p.to_xml()
        )));
    }
    let (tcp, _) = s.into_parts();
    let name =
        ServerName::try_from(t.domain.clone()).map_err(|e| ConnError::Protocol(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(t.tls.clone())
        .connect(name, tcp)
        .await?;
    let mut s = XmlStream::new(tls, Limits::default());
    s.send(&header(&t.domain)).await?;
    let f = features(&mut s).await?;
    Ok((s, f))
}

/// XEP-0077: creates the account (an existing one is fine).
async fn register_on<S>(s: &mut XmlStream<S>, user: &str, password: &str) -> Result<(), ConnError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let iq = register::request("set", "reg1", Some((user, password)));
    s.send(&iq.to_xml_in(NS_CLIENT)).await?;
    let r = next_stanza(s).await?;
    if r.get_attr("type") != Some("result") {
        let cond = error_condition(&r);
        if cond != "conflict" {
            return Err(ConnError::Register(cond));
        }
    }
    Ok(())
}

/// Only creates the account, on a connection of its own that then closes.
pub async fn register_only(t: &Target, user: &str, password: &str) -> Result<(), ConnError> {
    let (mut s, _) = connect_tls(t).await?;
    register_on(&mut s, user, password).await?;
    let _ = s.send("</stream:stream>").await;
    Ok(())
}

/// Connects and logs in `user`; with `register`, creates the account first
/// (an existing one is fine).
pub async fn login(
    t: &Target,
    user: &str,
    password: &str,
    register: bool,
) -> Result<Conn, ConnError> {
    let (mut s, f) = connect_tls(t).await?;
    if register {
        register_on(&mut s, user, password).await?;
    }
    let mechs: Vec<String> = f
        .get_child("mechanisms", NS_SASL)
        .map(|m| m.elements().map(|e| e.text_content()).collect())
        .unwrap_or_default();
    let hash = if mechs.iter().any(|m| m == "SCRAM-SHA-256") {
        ScramHash::Sha256
    } else if mechs.iter().any(|m| m == "SCRAM-SHA-1") {
        ScramHash::Sha1
    } else {
        return Err(ConnError::Auth(format!("no SCRAM offered ({mechs:?})")));
    };
    scram(&mut s, hash, user, password).await?;
    s.decoder.reset();
    s.send(&header(&t.domain)).await?;
    features(&mut s).await?;
    let iq = Element::new("iq", NS_CLIENT)
        .attr("type", "set")
        .attr("id", "bind1")
        .child(Element::new("bind", NS_BIND));
    s.send(&iq.to_xml_in(NS_CLIENT)).await?;
    let r = next_stanza(&mut s).await?;
    let jid = r
        .get_child("bind", NS_BIND)
        .and_then(|b| b.child_text("jid", NS_BIND))
        .ok_or_else(|| ConnError::Protocol(format!("bind: {}", r.to_xml())))?;
    // Available, and a ping answered: the server has handled the presence
    // before anyone sends us a message.
    s.send("<presence/><iq type='get' id='sync1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    loop {
        let e = next_stanza(&mut s).await?;
        if e.name == "iq" && e.get_attr("id") == Some("sync1") {
            break;
        }
    }
    let (io, decoder) = s.into_parts();
    let (reader, writer) = tokio::io::split(io);
    Ok(Conn {
        jid,
        reader,
        decoder,
        writer,
    })
}
