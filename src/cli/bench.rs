//! `intercloud bench c2s|s2s|idle|pubsub|muc`: the standard-XMPP load generator against any server.

use super::CliError;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(clap::Args, Clone)]
pub(super) struct BenchTarget {
    /// The server's client port, HOST:PORT.
    #[arg(long)]
    server: String,
    /// Its XMPP domain.
    #[arg(long)]
    domain: String,
    /// Password of the accounts bench0 … bench<N-1>.
    #[arg(long, default_value = "bench-password")]
    password: String,
    /// Create the accounts first with XEP-0077 in-band registration.
    #[arg(long)]
    register: bool,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Pin the server's certificate (PEM); default: accept any (load testing).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Clone)]
pub(super) struct BenchLoad {
    /// Users per server.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Messages each sender sends.
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Seconds after which sending stops (0: when all are sent).
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// Messages a sender may have in flight.
    #[arg(long, default_value_t = 100)]
    window: u64,
}

#[derive(Subcommand)]
pub(super) enum BenchCmd {
    /// Users of one server send chat messages to each other (a ring).
    C2s {
        #[command(flatten)]
        target: BenchTarget,
        #[command(flatten)]
        load: BenchLoad,
    },
    /// Users of one server send to users of another, federated with it.
    S2s {
        #[command(flatten)]
        target: BenchTarget,
        #[command(flatten)]
        load: BenchLoad,
        /// The receivers' server, HOST:PORT.
        #[arg(long)]
        peer_server: String,
        /// The receivers' domain.
        #[arg(long)]
        peer_domain: String,
    },
    /// Holds idle logged-in sessions and reports the server's memory per session.
    Idle {
        #[command(flatten)]
        target: BenchTarget,
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        /// The server's process id (its /proc/PID/status is read).
        #[arg(long)]
        pid: u32,
        /// Seconds the sessions are held after measuring.
        #[arg(long, default_value_t = 0)]
        hold: u64,
    },
    /// One publisher (bench0), N subscribers (bench1 … benchN) of a fresh node.
    Pubsub {
        #[command(flatten)]
        target: BenchTarget,
        /// The pubsub service; default pubsub.<domain>.
        #[arg(long)]
        service: Option<String>,
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        /// Items published.
        #[arg(long, default_value_t = 1000)]
        items: u64,
        /// Publishes in flight.
        #[arg(long, default_value_t = 50)]
        window: u64,
        /// The subscribers' server (HOST:PORT) when they are on another, over s2s.
        #[arg(long)]
        peer_server: Option<String>,
        /// Its domain.
        #[arg(long)]
        peer_domain: Option<String>,
    },
    /// R fresh rooms of M occupants; each occupant says K things.
    Muc {
        #[command(flatten)]
        target: BenchTarget,
        /// The multi-user chat service; default conference.<domain>.
        #[arg(long)]
        service: Option<String>,
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        #[arg(long, default_value_t = 10)]
        occupants: usize,
        /// Messages each occupant sends.
        #[arg(long, default_value_t = 100)]
        messages: u64,
        /// Messages an occupant may have in flight.
        #[arg(long, default_value_t = 10)]
        window: u64,
    },
}

/// Prints a report as JSON or as its lines of text; fails when `ok` is false.
fn report<R: serde::Serialize>(
    r: &R,
    json: bool,
    lines: &[String],
    ok: bool,
) -> Result<(), CliError> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        for l in lines {
            println!("{l}");
        }
    }
    if ok {
        Ok(())
    } else {
        Err("nothing was measured (see the first error)"
            .to_string()
            .into())
    }
}

fn bench_target(
    t: &BenchTarget,
    server: &str,
    domain: &str,
) -> Result<intercloud::bench::conn::Target, CliError> {
    use std::net::ToSocketAddrs;
    let addr = server
        .to_socket_addrs()
        .map_err(|e| format!("{server}: {e}"))?
        .next()
        .ok_or_else(|| format!("{server}: no address"))?;
    let pinned = match &t.cert {
        Some(p) => Some(intercloud::tls::load_certs(p)?.remove(0)),
        None => None,
    };
    Ok(intercloud::bench::conn::Target::new(addr, domain, pinned))
}

pub(super) fn bench(cmd: BenchCmd) -> Result<(), CliError> {
    use intercloud::bench;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let load =
        |t: &BenchTarget, l: &BenchLoad, peer: Option<(&str, &str)>| -> Result<(), CliError> {
            let args = bench::load::LoadArgs {
                server: bench_target(t, &t.server, &t.domain)?,
                peer: match peer {
                    Some((s, d)) => Some(bench_target(t, s, d)?),
                    None => None,
                },
                users: l.users,
                password: t.password.clone(),
                register: t.register,
                messages: l.messages,
                concurrency: t.concurrency,
                duration: std::time::Duration::from_secs(l.duration),
                window: l.window.max(1),
                drain: std::time::Duration::from_secs(10),
            };
            let json = t.json;
            let r = rt.block_on(bench::load::run(args, &|p| {
                if !json {
                    eprintln!("… {p}")
                }
            }));
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", bench::text(&r));
            }
            if r.logins == 0 {
                return Err(r
                    .first_error
                    .unwrap_or_else(|| "no login succeeded".into())
                    .into());
            }
            Ok(())
        };
    match cmd {
        BenchCmd::C2s { target, load: l } => load(&target, &l, None),
        BenchCmd::S2s {
            target,
            load: l,
            peer_server,
            peer_domain,
        } => load(&target, &l, Some((&peer_server, &peer_domain))),
        BenchCmd::Pubsub {
            target,
            service,
            subscribers,
            items,
            window,
            peer_server,
            peer_domain,
        } => {
            let peer = match (&peer_server, &peer_domain) {
                (Some(s), Some(d)) => Some(bench_target(&target, s, d)?),
                (None, None) => None,
                _ => {
                    return Err("--peer-server and --peer-domain go together"
                        .to_string()
                        .into())
                }
            };
            let args = bench::pubsub::PubsubArgs {
                server: bench_target(&target, &target.server, &target.domain)?,
                peer,
                service: service.unwrap_or_else(|| format!("pubsub.{}", target.domain)),
                subscribers,
                items,
                window: window.max(1),
                password: target.password.clone(),
                register: target.register,
                concurrency: target.concurrency,
                drain: std::time::Duration::from_secs(10),
            };
            let json = target.json;
            let r = rt.block_on(bench::pubsub::run(args, &|p| {
                if !json {
                    eprintln!("… {p}")
                }
            }))?;
            let lines = [
                format!(
                    "bench {} against {} ({} node {})",
                    r.mode, r.server, r.service, r.node
                ),
                format!(
                    "  published   {} of {} items in {:.2} s: {:.0} items/s ({} refused)",
                    r.published, r.items, r.publish_secs, r.published_per_sec, r.publish_errors
                ),
                format!(
                    "  notified    {} of {} to {} subscribers in {:.2} s: {:.0} notifications/s",
                    r.notified, r.expected, r.subscribers, r.notify_secs, r.notifications_per_sec
                ),
                format!(
                    "  latency     p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                    r.latency.p50_ms, r.latency.p95_ms, r.latency.p99_ms, r.latency.max_ms
                ),
                format!(
                    "  problems    {} lost, {} duplicates, {} login errors{}",
                    r.lost,
                    r.duplicates,
                    r.login_errors,
                    r.first_error
                        .as_ref()
                        .map(|e| format!("; first error {e}"))
                        .unwrap_or_default()
                ),
            ];
            report(&r, json, &lines, r.published > 0 && r.subscribers > 0)
        }
        BenchCmd::Muc {
            target,
            service,
            rooms,
            occupants,
            messages,
            window,
        } => {
            let args = bench::muc::MucArgs {
                server: bench_target(&target, &target.server, &target.domain)?,
                service: service.unwrap_or_else(|| format!("conference.{}", target.domain)),
                rooms,
                occupants,
                messages,
                window: window.max(1),
                password: target.password.clone(),
                register: target.register,
                concurrency: target.concurrency,
                drain: std::time::Duration::from_secs(10),
            };
            let json = target.json;
            let r = rt.block_on(bench::muc::run(args, &|p| {
                if !json {
                    eprintln!("… {p}")
                }
            }))?;
            let lines = [
                format!(
                    "bench muc against {} ({}): {} rooms, {} occupants",
                    r.server, r.service, r.rooms, r.occupants
                ),
                format!(
                    "  messages    {} sent, {} of {} deliveries in {:.2} s: {:.0} deliveries/s",
                    r.sent, r.delivered, r.expected, r.send_secs, r.delivered_per_sec
                ),
                format!(
                    "  latency     p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                    r.latency.p50_ms, r.latency.p95_ms, r.latency.p99_ms, r.latency.max_ms
                ),
                format!(
                    "  problems    {} lost, {} duplicates, {} errors, {} login errors{}",
                    r.lost,
                    r.duplicates,
                    r.errors,
                    r.login_errors,
                    r.first_error
                        .as_ref()
                        .map(|e| format!("; first error {e}"))
                        .unwrap_or_default()
                ),
            ];
            report(&r, json, &lines, r.sent > 0)
        }
        BenchCmd::Idle {
            target,
            sessions,
            pid,
            hold,
        } => {
            let t = bench_target(&target, &target.server, &target.domain)?;
            let r = rt.block_on(bench::idle::run(bench::idle::IdleArgs {
                target: t,
                sessions,
                password: target.password.clone(),
                register: target.register,
                concurrency: target.concurrency,
                pid,
                settle: std::time::Duration::from_secs(2),
                hold: std::time::Duration::from_secs(hold),
            }))?;
            if target.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "bench idle: {} sessions ({} failed), server RSS {} KiB -> {} KiB: {:.0} bytes ({:.1} KiB) per session",
                    r.sessions,
                    r.login_errors,
                    r.rss_before_kib,
                    r.rss_after_kib,
                    r.bytes_per_session,
                    r.bytes_per_session / 1024.0
                );
            }
            Ok(())
        }
    }
}
