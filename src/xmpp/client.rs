//! A small XMPP client (STARTTLS, SASL PLAIN, bind) used by the demo and by tests to drive a node over real sockets.

use super::codec::{self, Event, Limits};
use super::sasl::NS_SASL;
use super::stream::NS_TLS;
use super::stream::{WireError, XmlStream};
use crate::net::{Net, Stream};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use intercloud_actors::element::{Element, NS_CLIENT};
use intercloud_actors::jid::Jid;
use intercloud_actors::sm::NS_SM;
use intercloud_actors::stanza::NS_BIND;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_rustls::client::TlsStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected: {0}")]
    Unexpected(String),
    #[error("authentication failed: {0}")]
    Auth(String),
}

const T: Duration = Duration::from_secs(10);

/// What follows authentication.
enum AfterAuth<'a> {
    Bind(Option<&'a str>),
    Resume { previd: &'a str, h: u32 },
}

/// A logged-in client stream.
pub struct Client {
    pub stream: XmlStream<TlsStream<Stream>>,
    pub jid: Jid,
}

fn header(domain: &str) -> String {
    codec::stream_header(NS_CLIENT, None, Some(domain), None, &[])
}

async fn expect_features<S>(s: &mut XmlStream<S>) -> Result<Element, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match s.next_event(T).await? {
        Event::StreamStart(_) => {}
        e => return Err(ClientError::Unexpected(format!("{e:?}"))),
    }
    match s.next_event(T).await? {
        Event::Stanza(f) if f.name == "features" => Ok(f),
        e => Err(ClientError::Unexpected(format!("{e:?}"))),
    }
}

impl Client {
    /// Connects, upgrades with STARTTLS (accepting only `pinned`), logs in
    /// with PLAIN and binds `resource` (or a server-chosen one).
    pub async fn login(
        addr: SocketAddr,
        domain: &str,
        pinned: CertificateDer<'static>,
        user: &str,
        password: &str,
        resource: Option<&str>,
    ) -> Result<Client, ClientError> {
        Client::login_on(&Net::tcp(), addr, domain, pinned, user, password, resource).await
    }

    /// As `login`, on the network `net` (TCP or an in-process one).
    pub async fn login_on(
        net: &Net,
        addr: SocketAddr,
        domain: &str,
        pinned: CertificateDer<'static>,
        user: &str,
        password: &str,
        resource: Option<&str>,
    ) -> Result<Client, ClientError> {
        let creds = format!("\0{user}\0{password}");
        let (c, _) = Client::login_with(
            net,
            addr,
            domain,
            pinned,
            "PLAIN",
            creds.as_bytes(),
            AfterAuth::Bind(resource),
        )
        .await?;
        Ok(c)
    }

    /// Logs in and resumes the stream-managed session `previd`, telling the
    /// server we handled `h` stanzas. Returns the client and the server's `<resumed/>`.
    #[allow(clippy::too_many_arguments)]
    pub async fn resume(
        addr: SocketAddr,
        domain: &str,
        pinned: CertificateDer<'static>,
        user: &str,
        password: &str,
        previd: &str,
        h: u32,
    ) -> Result<(Client, Element), ClientError> {
        let creds = format!("\0{user}\0{password}");
        let (c, r) = Client::login_with(
            &Net::tcp(),
            addr,
            domain,
            pinned,
            "PLAIN",
            creds.as_bytes(),
            AfterAuth::Resume { previd, h },
        )
        .await?;
        Ok((c, r.expect("resumed element")))
    }

    /// Enables XEP-0198 with resumption; returns the stream id.
    pub async fn enable_sm(&mut self) -> Result<String, ClientError> {
        self.send_raw("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
            .await?;
        let e = self.wait_for(T, |e| e.ns == NS_SM && e.name != "r").await?;
        if e.name != "enabled" {
            return Err(ClientError::Unexpected(e.to_xml()));
        }
        e.get_attr("id")
            .map(String::from)
            .ok_or_else(|| ClientError::Unexpected("enabled without id".into()))
    }

    /// As `login`, with SASL ANONYMOUS.
    pub async fn login_anonymous(
        addr: SocketAddr,
        domain: &str,
        pinned: CertificateDer<'static>,
    ) -> Result<Client, ClientError> {
        let (c, _) = Client::login_with(
            &Net::tcp(),
            addr,
            domain,
            pinned,
            "ANONYMOUS",
            b"",
            AfterAuth::Bind(None),
        )
        .await?;
        Ok(c)
    }

    async fn login_with(
        net: &Net,
        addr: SocketAddr,
        domain: &str,
        pinned: CertificateDer<'static>,
        mechanism: &str,
        initial: &[u8],
        after: AfterAuth<'_>,
    ) -> Result<(Client, Option<Element>), ClientError> {
        // PLAIN's authentication identity names the account (for a resumed session's JID).
        let user_hint = initial
            .split(|b| *b == 0)
            .nth(1)
            .map(|u| String::from_utf8_lossy(u).into_owned())
            .unwrap_or_default();
        let tcp = net.connect(addr).await?;
        let mut s = XmlStream::new(tcp, Limits::default());
        s.send(&header(domain)).await?;
        expect_features(&mut s).await?;
        s.send(&Element::new("starttls", NS_TLS).to_xml()).await?;
        match s.next_event(T).await? {
            Event::Stanza(p) if p.name == "proceed" => {}
            e => return Err(ClientError::Unexpected(format!("{e:?}"))),
        }
        let (tcp, _) = s.into_parts();
        let connector = tokio_rustls::TlsConnector::from(crate::tls::pinned_client_config(pinned));
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| ClientError::Unexpected(e.to_string()))?;
        let tls = connector.connect(name, tcp).await?;
        let mut s = XmlStream::new(tls, Limits::default());
        s.send(&header(domain)).await?;
        expect_features(&mut s).await?;
        let data = if initial.is_empty() {
            "=".to_string()
        } else {
            B64.encode(initial)
        };
        let auth = Element::new("auth", NS_SASL)
            .attr("mechanism", mechanism)
            .text(data);
        s.send(&auth.to_xml()).await?;
        match s.next_event(T).await? {
            Event::Stanza(e) if e.name == "success" => {}
            Event::Stanza(e) => {
                let cond = e
                    .first_element()
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                return Err(ClientError::Auth(cond));
            }
            e => return Err(ClientError::Unexpected(format!("{e:?}"))),
        }
        s.decoder.reset();
        s.send(&header(domain)).await?;
        expect_features(&mut s).await?;
        let resource = match after {
            AfterAuth::Bind(r) => r,
            AfterAuth::Resume { previd, h } => {
                let r = Element::new("resume", NS_SM)
                    .attr("previd", previd)
                    .attr("h", h.to_string());
                s.send(&r.to_xml()).await?;
                return match s.next_event(T).await? {
                    Event::Stanza(e) if e.is("resumed", NS_SM) => {
                        let jid = format!("{user_hint}@{domain}")
                            .parse()
                            .map_err(|_| ClientError::Unexpected("bad jid".into()))?;
                        Ok((Client { stream: s, jid }, Some(e)))
                    }
                    e => Err(ClientError::Unexpected(format!("{e:?}"))),
                };
            }
        };
        let mut bind = Element::new("bind", NS_BIND);
        if let Some(r) = resource {
            bind = bind.child(Element::new("resource", NS_BIND).text(r));
        }
        let iq = Element::new("iq", NS_CLIENT)
            .attr("type", "set")
            .attr("id", "bind1")
            .child(bind);
        s.send(&iq.to_xml_in(NS_CLIENT)).await?;
        let jid = match s.next_event(T).await? {
            Event::Stanza(r) if r.get_attr("type") == Some("result") => r
                .get_child("bind", NS_BIND)
                .and_then(|b| b.child_text("jid", NS_BIND))
                .and_then(|j| j.parse().ok())
                .ok_or_else(|| ClientError::Unexpected("bind result without jid".into()))?,
            e => return Err(ClientError::Unexpected(format!("{e:?}"))),
        };
        Ok((Client { stream: s, jid }, None))
    }

    /// Sends one stanza.
    pub async fn send(&mut self, e: &Element) -> Result<(), ClientError> {
        Ok(self.stream.send(&e.to_xml_in(NS_CLIENT)).await?)
    }

    /// Sends raw bytes of XML.
    pub async fn send_raw(&mut self, xml: &str) -> Result<(), ClientError> {
        Ok(self.stream.send(xml).await?)
    }

    /// The next stanza (or stream end), waiting at most `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Result<Event, ClientError> {
        Ok(self.stream.next_event(timeout).await?)
    }

    /// Waits for the first stanza satisfying `pred`, skipping others.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Element) -> bool,
    ) -> Result<Element, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Event::Stanza(e) if pred(&e) => return Ok(e),
                Event::Stanza(_) => {}
                e => return Err(ClientError::Unexpected(format!("{e:?}"))),
            }
        }
    }
}
