//! The node's HTTP listener for operators: `GET /metrics` (the Prometheus/OpenMetrics text of the node's [`Metrics`]) and `GET /healthz` (200 while the actor system answers, 503 when it does not).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use intercloud_actors::lograte::LogRate;
use intercloud_actors::router::CountSessions;
use intercloud_actors::Cloud;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Scrapers connected at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;
/// A request's headers must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The router must answer the health check within this.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

static ACCEPT_FAILED: LogRate = LogRate::new(5, Duration::from_secs(10));

/// The OpenMetrics text format prometheus-client writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for metrics: {source}")]
pub struct MetricsListenError {
    addr: String,
    source: std::io::Error,
}

/// Binds the listener (so that a port in use fails the start) and serves it
/// on the current runtime until the returned task is dropped or aborted.
pub async fn serve(
    bind: &str,
    port: u16,
    cloud: Arc<Cloud>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MetricsListenError> {
    let addr = format!("{bind}:{port}");
    let err = |source| MetricsListenError {
        addr: addr.clone(),
        source,
    };
    let listener = TcpListener::bind(&addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    let task = tokio::spawn(accept_loop(listener, cloud));
    Ok((local, task))
}

async fn accept_loop(listener: TcpListener, cloud: Arc<Cloud>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                if let Some(held_back) = ACCEPT_FAILED.allow() {
                    tracing::warn!(error = %e, held_back, "metrics accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let cloud = cloud.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, cloud.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "metrics connection ended");
            }
            drop(permit);
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn answer(
    req: Request<Incoming>,
    cloud: Arc<Cloud>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "GET only\n".into(),
        ));
    }
    Ok(match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, CONTENT_TYPE, cloud.metrics.encode()),
        "/healthz" => {
            // The router is the heart of the node: if it answers, stanzas flow.
            match tokio::time::timeout(HEALTH_TIMEOUT, cloud.router.send(CountSessions)).await {
                Ok(Ok(_)) => reply(StatusCode::OK, TEXT, "ok\n".into()),
                _ => {
                    tracing::warn!("health check: the router did not answer");
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        TEXT,
                        "the router did not answer\n".into(),
                    )
                }
            }
        }
        _ => reply(StatusCode::NOT_FOUND, TEXT, "/metrics or /healthz\n".into()),
    })
}
