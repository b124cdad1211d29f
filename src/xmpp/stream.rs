//! An XML stream over any async byte stream: reads events through the codec, writes serialized XML.

use super::codec::{CodecError, Decoder, Event, Limits};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// STARTTLS (RFC 6120 §5).
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";

/// A fresh stream id (RFC 6120 §4.7.3: unique and unpredictable; dialback
/// keys are made over it).
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Why no event came.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer closed the connection")]
    Eof,
    #[error("timed out")]
    Timeout,
}

impl WireError {
    /// The stream error (condition, text) this read failure calls for, if any:
    /// none when the peer is already gone.
    pub fn stream_condition(&self) -> Option<(&'static str, String)> {
        match self {
            WireError::Codec(c) => Some((c.condition(), c.to_string())),
            WireError::Timeout => Some(("connection-timeout", "timed out".into())),
            WireError::Io(_) | WireError::Eof => None,
        }
    }
}

/// A byte stream with an XMPP stream decoder on its read side.
pub struct XmlStream<S> {
    pub io: S,
    pub decoder: Decoder,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> XmlStream<S> {
    pub fn new(io: S, limits: Limits) -> XmlStream<S> {
        XmlStream {
            io,
            decoder: Decoder::new(limits),
            buf: vec![0u8; 16 * 1024],
        }
    }

    /// The next event, reading as needed, within `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Event, WireError> {
        match tokio::time::timeout(timeout, self.next_event_untimed()).await {
            Ok(r) => r,
            Err(_) => Err(WireError::Timeout),
        }
    }

    /// The next event, reading as needed.
    pub async fn next_event_untimed(&mut self) -> Result<Event, WireError> {
        loop {
            if let Some(ev) = self.decoder.next_event()? {
                return Ok(ev);
            }
            let n = self.io.read(&mut self.buf).await?;
            if n == 0 {
                return Err(WireError::Eof);
            }
            self.decoder.feed(&self.buf[..n]);
        }
    }

    /// Writes and flushes.
    pub async fn send(&mut self, xml: &str) -> std::io::Result<()> {
        self.io.write_all(xml.as_bytes()).await?;
        self.io.flush().await
    }

    /// Ends the stream with a stream error: `header` first when ours was not
    /// sent yet (RFC 6120 §4.9.1.1), then the error and the close, then the
    /// transport is shut down. Bounded in time: a peer that does not read
    /// cannot hold it.
    pub async fn close_with_error(&mut self, header: Option<String>, condition: &str, text: &str) {
        let mut out = header.unwrap_or_default();
        out.push_str(&super::codec::stream_error(condition, Some(text)));
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = self.send(&out).await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }

    /// Replaces the transport (after STARTTLS), starting a fresh stream.
    pub fn into_parts(self) -> (S, Decoder) {
        (self.io, self.decoder)
    }
}

/// How the server side of STARTTLS ended.
pub enum Upgrade<S> {
    /// The TLS session, ready for the new stream.
    Tls(Box<tokio_rustls::server::TlsStream<S>>),
    /// The peer sent more after `<starttls/>`: the caller ends the stream with `<policy-violation/>`.
    Pipelined(XmlStream<S>),
    /// The connection or the handshake failed (logged here).
    Failed,
}

/// The server side of STARTTLS once `<starttls/>` has arrived (RFC 6120
/// §5.4.3): no data may follow it, `<proceed/>` goes out, and the handshake
/// must finish within `timeout`.
pub async fn accept_starttls<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: XmlStream<S>,
    acceptor: &tokio_rustls::TlsAcceptor,
    timeout: Duration,
) -> Upgrade<S> {
    if s.decoder.pending() > 0 {
        return Upgrade::Pipelined(s);
    }
    let proceed = format!("<proceed xmlns='{NS_TLS}'/>");
    if s.send(&proceed).await.is_err() {
        return Upgrade::Failed;
    }
    let (io, _) = s.into_parts();
    match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Ok(Ok(t)) => Upgrade::Tls(Box::new(t)),
        Ok(Err(e)) => {
            tracing::info!(error = %e, "TLS handshake failed");
            Upgrade::Failed
        }
        Err(_) => {
            tracing::info!("TLS handshake timed out");
            Upgrade::Failed
        }
    }
}
