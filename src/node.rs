//! Builds a node's actors from its config and roles, and runs its listeners until told to stop.

use crate::config::Config;
use crate::xmpp::c2s::{self, C2s};
use intercloud_actors::link::LinkSettings;
use intercloud_actors::lograte::LogRate;
use intercloud_actors::router::{SetDialer, Shutdown};
use intercloud_actors::store::Store;
use intercloud_actors::{Cloud, Settings};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A flood of connections is refused line by line no faster than this
/// (the rest are counted in the next line's `held_back`).
static C2S_REFUSED: LogRate = LogRate::new(5, Duration::from_secs(10));
static S2S_REFUSED: LogRate = LogRate::new(5, Duration::from_secs(10));
static ACCEPT_FAILED: LogRate = LogRate::new(5, Duration::from_secs(10));

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot create {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] intercloud_actors::store::StoreError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {0}: {1}")]
    Listen(String, std::io::Error),
    #[error("the node did not start: {0}")]
    Start(String),
    #[error(transparent)]
    S2s(#[from] crate::xmpp::s2s::S2sSetupError),
    #[error(transparent)]
    Directory(#[from] crate::p2p::directory::DirectoryError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsListenError),
}

/// A node running on a thread of its own (the demo, benchmarks).
pub struct Background {
    /// Where its clients connect.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), NodeError>>>,
}

impl Background {
    /// Starts the node and waits until it accepts clients.
    pub fn spawn(config: Config) -> Result<Background, NodeError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            run(
                config,
                Control {
                    ready: Some(ready_tx),
                    stop: Some(stop_rx),
                    ..Default::default()
                },
            )
        });
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => Ok(Background {
                addr,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Err(_) => Err(match thread.join() {
                Ok(Err(e)) => e,
                _ => NodeError::Start("no answer within 30 s".into()),
            }),
        }
    }

    /// Stops the node and waits for it.
    pub fn stop(mut self) -> Result<(), NodeError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.join()
    }

    /// Waits until the node stops by itself (SIGINT/SIGTERM).
    pub fn join(mut self) -> Result<(), NodeError> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(NodeError::Start("node thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Hooks for running a node inside another program (the demo, tests).
#[derive(Default)]
pub struct Control {
    /// Told the c2s address once the node accepts clients.
    pub ready: Option<std::sync::mpsc::Sender<SocketAddr>>,
    /// Stops the node when it fires (or is dropped).
    pub stop: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Ends the node at once when it fires, as SIGKILL would: no goodbyes,
    /// nothing flushed that was not already durable.
    pub kill: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Where it listens and dials (default: TCP).
    pub net: crate::net::Net,
}

/// Opens the node's database, creating its data directory.
pub fn open_store(config: &Config) -> Result<Store, NodeError> {
    let dir = config.data_dir();
    std::fs::create_dir_all(&dir).map_err(|e| NodeError::DataDir(dir.display().to_string(), e))?;
    Ok(Store::open(&config.db_path())?)
}

/// Runs a node in the foreground until SIGINT/SIGTERM or `control.stop`.
pub fn run(config: Config, control: Control) -> Result<(), NodeError> {
    let sys = actix_rt::System::new();
    sys.block_on(run_async(config, control))
}

async fn wait_signal(stop: Option<tokio::sync::oneshot::Receiver<()>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let ext = async {
        match stop {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => tracing::info!("SIGTERM: stopping"),
        _ = ext => tracing::info!("stop requested"),
    }
}

async fn run_async(config: Config, control: Control) -> Result<(), NodeError> {
    let mut net = control.net.clone();
    if net.faults().is_none() && !config.faults.file.as_os_str().is_empty() {
        let f = crate::net::fault::Faults::new(0);
        f.watch_file(
            config.path(&config.faults.file),
            Duration::from_millis(config.faults.poll_ms.max(10)),
            Some(config.data_dir().join(crate::net::fault::COUNTS_FILE)),
        );
        tracing::warn!(file = %config.faults.file.display(), "fault injection on");
        net = net.with_faults(f);
    }
    let domain = config.node.domain.clone();
    let span = tracing::info_span!("node", domain = %domain);
    let _g = span.enter();
    let store = Arc::new(open_store(&config)?);
    let l = &config.limits;
    let settings = Settings {
        domain: domain.clone(),
        max_offline_per_user: l.max_offline_per_user,
        max_roster_items: l.max_roster_items,
        max_roster_item_bytes: l.max_roster_item_bytes,
        max_directed_presences: l.max_directed_presences.max(1),
        max_remote_presences: l.max_remote_presences,
        session_queue: l.session_queue,
        session_queue_bytes: l.session_queue_bytes,
        max_sessions_per_account: l.max_sessions_per_account,
        sm_resume_timeout: Duration::from_secs(l.sm_resume_timeout_secs),
        sm_ack_every: l.sm_ack_every.max(1),
        services: advertised_services(&config),
    };
    let cloud = Cloud::start(settings, store);
    if config.pubsub.enabled {
        start_pubsub(&cloud, &config)?;
    }
    if config.muc.enabled {
        start_muc(&cloud, &config)?;
    }
    if config.pep.enabled {
        start_pep(&cloud, &config);
    }
    if config.has_role("exchange") || config.has_role("root") {
        let c = &config.catalog;
        let svc = intercloud_actors::service::Service::new(
            intercloud_actors::service::ServiceSettings {
                domain: domain.clone(),
                limits: intercloud_actors::catalog::CatalogLimits {
                    max_description_bytes: c.max_description_bytes,
                    max_results: c.max_results.max(1),
                    query_time: Duration::from_millis(c.query_time_ms.max(1)),
                },
                async_after: Duration::from_secs(c.async_after_secs),
                max_running: c.max_running_queries.max(1),
                match_limit: c.match_limit.max(1),
                session_timeout: Duration::from_secs(c.session_timeout_secs.max(1)),
                max_sessions: c.max_command_sessions.max(1),
                max_sessions_per_jid: c.max_command_sessions_per_jid.max(1),
                // Strangers' SPARQL runs where its time and memory can be cut off.
                sparql: Arc::new(crate::sparql_worker::WorkerPool::new(
                    crate::sparql_worker::WorkerSettings {
                        memory_mb: c.query_memory_mb.max(16),
                        max_results: c.max_results.max(1),
                        query_time: Duration::from_millis(c.query_time_ms.max(1)),
                        keep_idle: c.max_running_queries.max(1),
                    },
                )),
                metrics: cloud.metrics.clone(),
            },
            cloud.store.clone(),
            cloud.router.clone().recipient(),
        )
        .map_err(|e| NodeError::Start(format!("catalog: {e}")))?;
        use actix::Actor;
        cloud.router.do_send(intercloud_actors::router::SetService {
            host: format!("service.{domain}"),
            to: svc.start().recipient(),
        });
        tracing::info!(service = %format!("service.{domain}"), "catalog service up");
    }
    let tls = crate::tls::server_config(
        &config.path(&config.tls.cert),
        &config.path(&config.tls.key),
    )?;
    let c2s = C2s::new(cloud.clone(), tls, l, &config.c2s);
    let directory_host =
        crate::p2p::directory::start(&config, cloud.store.clone(), &net, cloud.metrics.clone())
            .await?;
    let directory = directory_host.clone().map(|h| {
        Arc::new(crate::p2p::directory::Directory {
            host: h,
            root_keys: crate::p2p::directory::root_keys(&config).unwrap_or_default(),
            expects_roots: !config.p2p.bootstrap.is_empty() && !config.has_role("root"),
        }) as Arc<dyn crate::xmpp::resolve::DirectoryLookup>
    });
    let s2s = crate::xmpp::s2s::S2s::new(cloud.clone(), &config, directory, net.clone())?;
    if let Some(h) = &directory_host {
        crate::p2p::membership::spawn(
            config.clone(),
            h.clone(),
            s2s.identity.clone(),
            s2s.anchors.clone(),
        );
    }
    cloud.router.do_send(SetDialer(
        Arc::new(crate::xmpp::s2s::S2sDialer(s2s.clone())),
        LinkSettings {
            queue: l.s2s_queue,
            queue_bytes: l.s2s_queue_bytes,
            max_domains: l.s2s_max_domains,
            max_pending: l.s2s_max_pending,
            max_pending_per_sender: l.s2s_max_pending_per_sender,
            redial_window: Duration::from_secs(l.s2s_redial_secs),
            idle: Duration::from_secs(l.s2s_idle_timeout_secs.max(1)),
            metrics: cloud.metrics.clone(),
        },
    ));
    // After the dialer: the first publication can already leave over s2s.
    if !config.catalog.resources.as_os_str().is_empty() && !config.catalog.publish_to.is_empty() {
        let path = config.path(&config.catalog.resources);
        let turtle = std::fs::read_to_string(&path)
            .map_err(|e| NodeError::Start(format!("catalog.resources {}: {e}", path.display())))?;
        use actix::Actor;
        let p = intercloud_actors::catalog::publisher::Publisher::new(
            domain.clone(),
            turtle,
            config.catalog.publish_to.clone(),
            cloud.router.clone().recipient(),
            Duration::from_secs(config.p2p.anti_entropy_secs.clamp(1, 60)),
        )
        .start();
        cloud
            .router
            .do_send(intercloud_actors::router::HandleIqResults {
                prefix: intercloud_actors::catalog::publisher::ID_PREFIX.into(),
                to: p.recipient(),
            });
    }
    // The gateway logs in once the dialer is there: its presence reaches other clouds.
    let gateway = if config.gateway.enabled {
        let gw = crate::gateway::start(&config, cloud.clone())
            .map_err(|e| NodeError::Start(e.to_string()))?;
        tracing::info!(jid = %gw.full_jid(), "gateway up");
        Some(gw)
    } else {
        None
    };
    let s2s_bind = format!("{}:{}", config.s2s.bind, config.s2s.port);
    let mut s2s_listener = net
        .bind(&s2s_bind)
        .await
        .map_err(|e| NodeError::Listen(s2s_bind.clone(), e))?;
    tracing::info!(addr = %s2s_bind, auth = ?config.s2s.auth, "s2s listening");
    let bind = format!("{}:{}", config.c2s.bind, config.c2s.port);
    let mut listener = net
        .bind(&bind)
        .await
        .map_err(|e| NodeError::Listen(bind.clone(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| NodeError::Listen(bind.clone(), e))?;
    // In-process federations run every node on its own thread already.
    let cores = if net.is_memory() {
        0
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    };
    let arbiters: Vec<actix_rt::Arbiter> = (0..cores).map(|_| actix_rt::Arbiter::new()).collect();
    tracing::info!(%addr, roles = ?config.node.roles, arbiters = cores, "c2s listening");
    let metrics_http = if config.metrics.port != 0 {
        let (at, task) =
            crate::metrics::serve(&config.metrics.bind, config.metrics.port, cloud.clone()).await?;
        tracing::info!(addr = %at, "metrics and health check listening (/metrics, /healthz)");
        Some(task)
    } else {
        None
    };
    if let Some(r) = control.ready {
        let _ = r.send(addr);
    }
    let signal = wait_signal(control.stop);
    tokio::pin!(signal);
    let mut kill = control.kill;
    let killed = async {
        match kill.as_mut() {
            Some(k) => {
                let _ = k.await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(killed);
    let mut next = 0usize;
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = &mut killed => {
                tracing::info!("killed");
                return Ok(());
            }
            r = s2s_listener.accept() => {
                let (tcp, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        if let Some(held_back) = ACCEPT_FAILED.allow() {
                            tracing::warn!(error = %e, held_back, "s2s accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(slot) = s2s.admit() else {
                    if let Some(held_back) = S2S_REFUSED.allow() {
                        tracing::warn!(%peer, held_back, "s2s connection limit reached; refusing");
                    }
                    continue;
                };
                let s2s = s2s.clone();
                actix_rt::spawn(crate::xmpp::s2s::serve(tcp.into_stream(), peer, s2s, slot));
            }
            r = listener.accept() => {
                let (tcp, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        if let Some(held_back) = ACCEPT_FAILED.allow() {
                            tracing::warn!(error = %e, held_back, "accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(slot) = c2s.admit(peer.ip()) else {
                    if let Some(held_back) = C2S_REFUSED.allow() {
                        tracing::warn!(%peer, held_back, "connection limit reached; refusing");
                    }
                    refuse(tcp.into_stream(), &domain);
                    continue;
                };
                let c2s = c2s.clone();
                let tcp = match tcp {
                    crate::net::Accepted::Tcp(t) if !arbiters.is_empty() => t,
                    other => {
                        actix_rt::spawn(c2s::serve(other.into_stream(), peer, c2s, slot));
                        continue;
                    }
                };
                let Ok(std_tcp) = tcp.into_std() else { continue };
                // Sessions are spread over one arbiter per core.
                let arb = &arbiters[next % arbiters.len()];
                next += 1;
                arb.spawn_fn(move || {
                    actix_rt::spawn(async move {
                        match tokio::net::TcpStream::from_std(std_tcp) {
                            Ok(tcp) => {
                                let _ = tcp.set_nodelay(true);
                                c2s::serve(Box::new(tcp), peer, c2s, slot).await
                            }
                            Err(e) => tracing::warn!(error = %e, "socket hand-over failed"),
                        }
                    });
                });
            }
        }
    }
    drop(listener);
    drop(s2s_listener);
    if let Some(t) = metrics_http {
        t.abort();
    }
    if let Some(h) = &directory_host {
        h.stop().await;
    }
    drop(gateway);
    let n = cloud.router.send(Shutdown).await.unwrap_or(0);
    tracing::info!(sessions = n, "stopping: sessions told");
    tokio::time::sleep(Duration::from_millis(if n > 0 { 300 } else { 10 })).await;
    for a in &arbiters {
        a.stop();
    }
    for a in arbiters {
        let _ = a.join();
    }
    Ok(())
}

/// Answers a connection over the limits with a stream error and closes it.
fn refuse(tcp: crate::net::Stream, domain: &str) {
    let msg = format!(
        "{}{}",
        crate::xmpp::codec::stream_header(
            intercloud_actors::element::NS_CLIENT,
            Some(domain),
            None,
            None,
            &[]
        ),
        crate::xmpp::codec::stream_error("policy-violation", Some("too many connections"))
    );
    actix_rt::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tcp;
        let _ = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(msg.as_bytes())).await;
    });
}

/// The subdomain services a node's configuration runs (listed in its disco#items).
fn advertised_services(config: &Config) -> Vec<String> {
    let d = &config.node.domain;
    let mut s = Vec::new();
    if config.has_role("exchange") || config.has_role("root") {
        s.push(format!("service.{d}"));
    }
    if config.pubsub.enabled {
        s.push(format!("pubsub.{d}"));
    }
    if config.muc.enabled {
        s.push(format!("conference.{d}"));
    }
    s
}

/// Starts XEP-0060 publish-subscribe at `pubsub.<domain>` with what the store holds.
fn start_pubsub(cloud: &Arc<Cloud>, config: &Config) -> Result<(), NodeError> {
    use actix::Actor;
    let p = &config.pubsub;
    let domain = &config.node.domain;
    let host = format!("pubsub.{domain}");
    let core = intercloud_actors::pubsub::PubSub::load(
        &host,
        domain,
        intercloud_actors::pubsub::Limits {
            max_nodes: p.max_nodes,
            max_nodes_per_owner: p.max_nodes_per_owner,
            max_items_per_node: p.max_items_per_node,
            max_subscriptions_per_node: p.max_subscriptions_per_node,
            max_payload_bytes: p.max_payload_bytes,
        },
        cloud.store.clone(),
    )
    .map_err(|e| NodeError::Start(format!("pubsub: {e}")))?;
    let nodes = core.node_count();
    let actor = intercloud_actors::pubsub::PubSubActor::new(
        core,
        cloud.store.clone(),
        cloud.router.clone().recipient(),
        cloud.metrics.clone(),
        p.max_held_notifications,
        std::time::Duration::from_secs(p.probe_secs.max(1)),
    );
    let addr = actor.start();
    serve_at(cloud, &host, addr.clone().recipient());
    // Notifications for servers that cannot be reached wait for them.
    cloud
        .router
        .do_send(intercloud_actors::router::WatchReturns(addr.recipient()));
    tracing::info!(service = %host, nodes, "publish-subscribe up");
    Ok(())
}

/// Starts XEP-0045 multi-user chat at `conference.<domain>` with the persistent rooms the store holds.
fn start_muc(cloud: &Arc<Cloud>, config: &Config) -> Result<(), NodeError> {
    use actix::Actor;
    let m = &config.muc;
    let domain = &config.node.domain;
    let host = format!("conference.{domain}");
    let core = intercloud_actors::muc::Muc::load(
        &host,
        domain,
        intercloud_actors::muc::Limits {
            max_rooms: m.max_rooms,
            max_occupants_per_room: m.max_occupants_per_room.max(1),
            max_history: m.max_history,
            max_affiliations_per_room: m.max_affiliations_per_room.max(1),
        },
        cloud.store.clone(),
    )
    .map_err(|e| NodeError::Start(format!("muc: {e}")))?;
    let rooms = core.room_count();
    let actor = intercloud_actors::muc::MucActor::new(
        core,
        cloud.router.clone().recipient(),
        cloud.metrics.clone(),
    );
    let addr = actor.start();
    serve_at(cloud, &host, addr.clone().recipient());
    // Occupants whose domain cannot be reached leave the rooms.
    cloud
        .router
        .do_send(intercloud_actors::router::WatchDomains(addr.recipient()));
    tracing::info!(service = %host, rooms, "multi-user chat up");
    Ok(())
}

/// Starts XEP-0163 personal eventing on every account: the router hands it
/// pubsub iqs to bare JIDs, the presence actor the capabilities it sees.
fn start_pep(cloud: &Arc<Cloud>, config: &Config) {
    use actix::Actor;
    let p = &config.pep;
    let core = intercloud_actors::pep::Pep::new(
        intercloud_actors::pep::Limits {
            pubsub: intercloud_actors::pubsub::Limits {
                max_nodes: p.max_nodes_per_account,
                max_nodes_per_owner: p.max_nodes_per_account,
                max_items_per_node: p.max_items_per_node.max(1),
                max_subscriptions_per_node: p.max_subscriptions_per_node,
                max_payload_bytes: p.max_payload_bytes,
            },
            max_recipients: p.max_recipients,
            max_caps: p.max_caps,
            max_pending: p.max_pending_queries,
        },
        cloud.store.clone(),
    );
    let addr = intercloud_actors::pep::PepActor::new(
        core,
        cloud.store.clone(),
        cloud.router.clone().recipient(),
        cloud.metrics.clone(),
    )
    .start();
    cloud
        .router
        .do_send(intercloud_actors::router::SetPep(addr.clone().recipient()));
    cloud
        .router
        .do_send(intercloud_actors::router::WatchDomains(
            addr.clone().recipient(),
        ));
    cloud
        .presence
        .do_send(intercloud_actors::presence::WatchPresence(addr.recipient()));
    tracing::info!("personal eventing up");
}

/// Has the router hand what is addressed to `host` (a subdomain service) to `to`.
fn serve_at(
    cloud: &Arc<Cloud>,
    host: &str,
    to: actix::Recipient<intercloud_actors::messages::ToService>,
) {
    cloud.router.do_send(intercloud_actors::router::SetService {
        host: host.to_string(),
        to,
    });
}
