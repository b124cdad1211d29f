//! The `intercloud` command line: init a node, run it, manage its accounts, run the demo.

use clap::{Parser, Subcommand};
use intercloud::config::Config;
use intercloud::node::{self, Control};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "intercloud",
    version,
    about = "An Intercloud node: a cloud's XMPP gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a node directory: DIR/intercloud.toml, TLS material, data dir.
    Init {
        dir: PathBuf,
        #[arg(long)]
        domain: String,
        /// Comma-separated roles: cloud, exchange, root.
        #[arg(long, default_value = "cloud", value_delimiter = ',')]
        roles: Vec<String>,
        #[arg(long, default_value_t = 5222)]
        c2s_port: u16,
        #[arg(long, default_value_t = 5269)]
        s2s_port: u16,
        #[arg(long, default_value_t = 4001)]
        p2p_port: u16,
    },
    /// Internal: a node's SPARQL query worker (frames on stdin and stdout).
    #[command(name = "sparql-worker", hide = true)]
    SparqlWorker {
        #[arg(long)]
        memory_mb: u64,
        #[arg(long)]
        max_results: usize,
        #[arg(long)]
        query_ms: u64,
    },
    /// Run a node in the foreground (stops cleanly on SIGINT/SIGTERM).
    Node {
        #[arg(long)]
        config: PathBuf,
    },
    /// Manage the node's accounts.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// The Intercloud Root directory, as this node sees it.
    Directory {
        #[command(subcommand)]
        cmd: DirectoryCmd,
    },
    /// The catalog of an exchange or root (resource descriptions, RDF).
    Catalog {
        #[command(subcommand)]
        cmd: CatalogCmd,
    },
    /// A small XMPP client for the Intercloud's services.
    Client {
        #[command(subcommand)]
        cmd: ClientCmd,
    },
    /// The paper's flow on this cloud: ask the exchange for clouds meeting the
    /// constraints, check their presence in rank order, propose to the first
    /// available, fall back, or leave the proposal offline. Prints the dialog.
    Negotiate {
        #[arg(long)]
        config: PathBuf,
        /// e.g. storage-replication.
        #[arg(long)]
        service: String,
        /// The paper's §6 request (or just its <constraints> element).
        #[arg(long)]
        constraints: PathBuf,
        #[arg(long, default_value = "AMQP")]
        protocol: String,
        #[arg(long, default_value = "UDT")]
        transport: String,
        #[arg(long, default_value_t = 1)]
        amount: u64,
        #[arg(long, default_value = "GB")]
        unit: String,
        /// Seconds; 0 = open-ended.
        #[arg(long, default_value_t = 0)]
        duration: u64,
        /// The least a counter-offer may give (default: the amount).
        #[arg(long)]
        min_amount: Option<u64>,
        #[arg(long, default_value = "")]
        terms: String,
    },
    /// Scenario files: a federation, a timeline of steps and faults, invariants.
    Scenario {
        #[command(subcommand)]
        cmd: ScenarioCmd,
    },
    /// A whole federation on this machine (roots, exchanges, clouds as processes).
    Federation {
        #[command(subcommand)]
        cmd: FederationCmd,
    },
    /// A standard-XMPP load generator (STARTTLS, SCRAM, bind, presence, chat):
    /// runs unchanged against this node, Prosody or ejabberd.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
    /// Agreements this cloud holds with others.
    Agreements {
        #[command(subcommand)]
        cmd: AgreementsCmd,
    },
    /// Start a demo node on localhost with accounts, and show a conversation through it.
    Demo {
        /// The older demo: one node (cloud + exchange) and two gateway
        /// accounts, the §6 request and §7 dialog as XML, then it serves clients.
        #[arg(long)]
        one_node: bool,
        /// Keep the report and the nodes' logs here (federation demo), or
        /// the node's directory (one-node demo); default: a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// One-node demo: the client port.
        #[arg(long, default_value_t = 5222)]
        port: u16,
        /// One-node demo: stop after the scripted conversation instead of serving clients.
        #[arg(long)]
        exit: bool,
        /// Federation demo: run the nodes as processes on loopback TCP
        /// instead of in this process.
        #[arg(long)]
        processes: bool,
    },
}

#[derive(Subcommand)]
enum ScenarioCmd {
    /// Run a scenario; exits non-zero when a step or an invariant fails.
    Run {
        file: PathBuf,
        /// Where the report (report.txt, report.json) and the federation go
        /// (default: a temporary directory, removed afterwards).
        #[arg(long)]
        report: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// processes: real node processes on loopback TCP; in-process: every
        /// node in this process over an in-memory network (default: the
        /// scenario's `mode`, else processes).
        #[arg(long)]
        mode: Option<String>,
    },
    /// Seeded random scenarios: for each seed from --seed, a federation and
    /// a timeline of steps and faults drawn from it, run with every
    /// invariant checked; a failing seed is printed with the TOML that
    /// replays it. Exits non-zero when any seed fails.
    Fuzz {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How many seeds (seed, seed+1, …).
        #[arg(long, default_value_t = 1)]
        runs: u64,
        /// Steps drawn per scenario (before the closing heal and converge).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, default_value = "in-process")]
        mode: String,
        /// Where each seed's scenario, report and logs go (default: a
        /// temporary directory; failing seeds are kept there).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Test only: the drawn scenarios lose acknowledged messages on
        /// purpose, so every seed must fail (shows how failures are reported).
        #[arg(long, hide = true)]
        test_faults: bool,
    },
}

#[derive(Subcommand)]
enum FederationCmd {
    /// Generate (first time) and start every node, wait until the directory has
    /// converged, print the table, and stay in the foreground; Ctrl-C stops them all.
    Up {
        dir: PathBuf,
        #[arg(long, default_value_t = 1)]
        roots: usize,
        #[arg(long, default_value_t = 1)]
        exchanges: usize,
        #[arg(long, default_value_t = 3)]
        clouds: usize,
        /// Seconds to wait for convergence.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Each node's health: process, port, enrollment, the roots' zones.
    Status {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// Options every bench shares.
#[derive(clap::Args, Clone)]
struct BenchTarget {
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
struct BenchLoad {
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
enum BenchCmd {
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
}

#[derive(Subcommand)]
enum AgreementsCmd {
    /// List them (both roles: consumer and provider).
    List {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ClientCmd {
    /// Run an ad-hoc command (XEP-0050) and print the result.
    Command {
        /// Account to log in with, e.g. user@cloud1.test.
        #[arg(long)]
        jid: String,
        #[arg(long)]
        password: String,
        /// The command's JID, e.g. service.exchange.test.
        #[arg(long)]
        to: String,
        #[arg(long)]
        node: String,
        /// The input: a whole <iq> (like the paper's request), a <command>,
        /// an <iodata>, or what goes inside <in>.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Where the account's server listens for clients.
        #[arg(long, default_value = "127.0.0.1:5222")]
        server: std::net::SocketAddr,
        /// The server's certificate (PEM), pinned for STARTTLS (e.g. the node's tls/cert.pem).
        #[arg(long)]
        cert: PathBuf,
    },
}

#[derive(Subcommand)]
enum CatalogCmd {
    /// Load clouds' descriptions (Turtle) into the node's catalog, checked like
    /// publish_resources; the node reads them at its next start.
    Import {
        #[arg(long)]
        config: PathBuf,
        /// The cloud the files describe (default: each file's name without .ttl).
        #[arg(long)]
        domain: Option<String>,
        files: Vec<PathBuf>,
    },
    /// List the clouds in the node's catalog.
    List {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum DirectoryCmd {
    /// Print this node's libp2p address (for other nodes' p2p.bootstrap).
    Id {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print this node's public key (for the roots' and clouds' p2p.root_keys).
    Key {
        #[arg(long)]
        config: PathBuf,
    },
    /// Revoke a domain's key and certificate (run with a root's config).
    Revoke {
        #[arg(long)]
        config: PathBuf,
        domain: String,
        #[arg(long, default_value = "revoked by the trust authority")]
        reason: String,
    },
    /// Approve a cloud's enrollment with the trust authority (run with a root's config).
    Approve {
        #[arg(long)]
        config: PathBuf,
        domain: String,
    },
    /// List enrollments waiting for approval.
    Pending {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print a root's trust authority certificate (PEM), a trust anchor for s2s.trust_anchors.
    Ca {
        #[arg(long)]
        config: PathBuf,
    },
    /// Delegate the zone below ZONE to exchanges (run with a root's config).
    Delegate {
        #[arg(long)]
        config: PathBuf,
        zone: String,
        /// The exchanges' domains (each holds `p2p.zones = [ZONE]`).
        #[arg(long = "exchange", required = true)]
        exchanges: Vec<String>,
    },
    /// Print and verify a root's audit trail.
    Audit {
        #[arg(long)]
        config: PathBuf,
    },
    /// List the zone records a root holds (read from its database).
    List {
        #[arg(long)]
        config: PathBuf,
    },
    /// Resolve a domain through the directory (joins it briefly as a client).
    Resolve {
        #[arg(long)]
        config: PathBuf,
        domain: String,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add an account (password from --password or INTERCLOUD_PASSWORD).
    Add {
        #[arg(long)]
        config: PathBuf,
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Remove an account with its roster and offline messages.
    Remove {
        #[arg(long)]
        config: PathBuf,
        jid: String,
    },
    /// List accounts.
    List {
        #[arg(long)]
        config: PathBuf,
    },
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Tracing into a file (in-process scenario runs: every node's log in one place).
fn init_tracing_file(path: &std::path::Path, default: &str) -> Result<(), String> {
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(f))
        .with_ansi(false)
        .try_init();
    Ok(())
}

fn account_jid(config: &Config, jid: &str) -> Result<String, String> {
    let full = if jid.contains('@') {
        jid.to_string()
    } else {
        format!("{jid}@{}", config.node.domain)
    };
    let j: intercloud_actors::jid::Jid =
        full.parse().map_err(|e| format!("bad JID {jid:?}: {e}"))?;
    if j.local().is_none() || j.resource().is_some() {
        return Err(format!("{jid:?} is not an account JID (user@domain)"));
    }
    if j.domain() != config.node.domain {
        return Err(format!(
            "{jid:?} is not in this node's domain {}",
            config.node.domain
        ));
    }
    Ok(j.to_string())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Init {
            dir,
            domain,
            roles,
            c2s_port,
            s2s_port,
            p2p_port,
        } => {
            let cfg = intercloud::init::init(&intercloud::init::InitOptions {
                dir: &dir,
                domain: &domain,
                roles,
                c2s_port,
                s2s_port,
                p2p_port,
            })
            .map_err(|e| e.to_string())?;
            println!("wrote {}", cfg.display());
            Ok(())
        }
        Cmd::SparqlWorker {
            memory_mb,
            max_results,
            query_ms,
        } => intercloud::sparql_worker::serve(
            memory_mb,
            max_results,
            std::time::Duration::from_millis(query_ms),
        ),
        Cmd::Node { config } => {
            let c = Config::load(&config).map_err(|e| e.to_string())?;
            init_tracing(&c.node.log);
            node::run(c, Control::default()).map_err(|e| e.to_string())
        }
        Cmd::User { cmd } => {
            let config = match &cmd {
                UserCmd::Add { config, .. }
                | UserCmd::Remove { config, .. }
                | UserCmd::List { config } => config.clone(),
            };
            let c = Config::load(&config).map_err(|e| e.to_string())?;
            let store = node::open_store(&c).map_err(|e| e.to_string())?;
            match cmd {
                UserCmd::Add { jid, password, .. } => {
                    let jid = account_jid(&c, &jid)?;
                    let pw = password
                        .or_else(|| std::env::var("INTERCLOUD_PASSWORD").ok())
                        .ok_or("give --password or set INTERCLOUD_PASSWORD")?;
                    if pw.is_empty() {
                        return Err("empty password".into());
                    }
                    store
                        .add_user(&jid, &pw, c.limits.scram_iterations)
                        .map_err(|e| e.to_string())?;
                    println!("added {jid}");
                }
                UserCmd::Remove { jid, .. } => {
                    let jid = account_jid(&c, &jid)?;
                    store.remove_user(&jid).map_err(|e| e.to_string())?;
                    println!("removed {jid}");
                }
                UserCmd::List { .. } => {
                    for u in store.list_users().map_err(|e| e.to_string())? {
                        println!("{u}");
                    }
                }
            }
            Ok(())
        }
        Cmd::Directory { cmd } => directory(cmd),
        Cmd::Catalog { cmd } => catalog(cmd),
        Cmd::Client { cmd } => client(cmd),
        Cmd::Negotiate {
            config,
            service,
            constraints,
            protocol,
            transport,
            amount,
            unit,
            duration,
            min_amount,
            terms,
        } => {
            let c = Config::load(&config).map_err(|e| e.to_string())?;
            let text = std::fs::read_to_string(&constraints)
                .map_err(|e| format!("{}: {e}", constraints.display()))?;
            let ask = intercloud::negotiate::Ask {
                service,
                protocol,
                transport,
                amount,
                unit,
                duration_secs: duration,
                min_amount,
                terms,
            };
            let report = runtime()?.block_on(intercloud::negotiate::run(&c, &ask, &text))?;
            intercloud::negotiate::print_report(&report)
        }
        Cmd::Bench { cmd } => bench(cmd),
        Cmd::Federation { cmd } => federation(cmd),
        Cmd::Scenario {
            cmd:
                ScenarioCmd::Run {
                    file,
                    report,
                    seed,
                    mode,
                },
        } => scenario(&file, report, seed, &mode),
        Cmd::Scenario {
            cmd:
                ScenarioCmd::Fuzz {
                    seed,
                    runs,
                    steps,
                    mode,
                    report,
                    test_faults,
                },
        } => fuzz(seed, runs, steps, &mode, report, test_faults),
        Cmd::Agreements {
            cmd: AgreementsCmd::List { config, json },
        } => {
            let c = Config::load(&config).map_err(|e| e.to_string())?;
            intercloud::negotiate::list(&c, json)
        }
        Cmd::Demo {
            one_node,
            dir,
            port,
            exit,
            processes,
        } => {
            use intercloud::scenario::fleet::Mode;
            if one_node {
                init_tracing("warn");
                intercloud::demo::run(dir, port, exit).map_err(|e| e.to_string())
            } else if processes {
                init_tracing("warn");
                intercloud::demo_federation::run(dir, Mode::Processes).map_err(|e| e.to_string())
            } else {
                // The nodes run here: only their errors interrupt the dialog.
                init_tracing("error");
                intercloud::demo_federation::run(dir, Mode::InProcess).map_err(|e| e.to_string())
            }
        }
    }
}

fn directory(cmd: DirectoryCmd) -> Result<(), String> {
    use intercloud::p2p::directory as dir;
    match cmd {
        DirectoryCmd::Id { config } => {
            let c = Config::load(&config).map_err(|e| e.to_string())?;
            println!("{}", dir::peer_addr(&c).map_err(|e| e.to_string())?);
        }
        DirectoryCmd::Key { config } => {
            let c = Config::load(&config).map_err(|e| e.to_string())?;
            println!("{}", dir::public_key(&c).map_err(|e| e.to_string())?);
        }
        DirectoryCmd::Revoke {
            config,
            domain,
            reason,
        } => {
            let c = Config::load(&config).map_err(|e| e.to_string())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let r = rt.block_on(dir::revoke(&c, &domain, &reason))?;
            println!("{}", r.to_json());
        }
        DirectoryCmd::Approve { config, domain } => {
            let c = Config::load(&config).map_err(|e| e.to_string())?;
            let r = runtime()?.block_on(dir::approve(&c, &domain))?;
            println!("{}", r.to_json());
        }
        DirectoryCmd::Delegate {
            config,
            zone,
            exchanges,
        } => {
            let c = Config::load(&config).map_err(|e| e.to_string())?;
            let r = runtime()?.block_on(dir::delegate(&c, &zone, exchanges))?;
            println!("{}", r.to_json());
        }
        DirectoryCmd::Pending { config } => {
            let c = Config::load(&config).map_err(|e| e.to_string())?;
            for (d, k) in runtime()?.block_on(dir::pending(&c))? {
                println!("{d} {k}");
            }
        }
        DirectoryCmd::Ca { config } => {
            let c = Config::load(&config).map_err(|e| e.to_string())?;
            let (cert, _) = c.ca_paths();
            let pem = std::fs::read_to_string(&cert).map_err(|e| {
                format!("{}: {e} (is this a root that has started?)", cert.display())
            })?;
            print!("{pem}");
        }
        DirectoryCmd::Audit { config } => {
            use intercloud_actors::directory::audit::{AuditLog, Entry};
            let c = Config::load(&config).map_err(|e| e.to_string())?;
            let store = node::open_store(&c).map_err(|e| e.to_string())?;
            let mut entries = Vec::new();
            for j in store.audit_entries().map_err(|e| e.to_string())? {
                let e: Entry = serde_json::from_str(&j).map_err(|e| e.to_string())?;
                println!("{j}");
                entries.push(e);
            }
            AuditLog::verify(&entries).map_err(|e| format!("audit trail broken: {e}"))?;
            println!("{} entries, chain intact", entries.len());
        }
        DirectoryCmd::List { config } => {
            let c = Config::load(&config).map_err(|e| e.to_string())?;
            let store = node::open_store(&c).map_err(|e| e.to_string())?;
            for j in store.zone_records().map_err(|e| e.to_string())? {
                println!("{j}");
            }
        }
        DirectoryCmd::Resolve { config, domain } => {
            let c = Config::load(&config).map_err(|e| e.to_string())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let r = rt
                .block_on(dir::resolve_once(&c, &domain))
                .map_err(|e| e.to_string())?;
            match r {
                Some(r) => println!("{}", r.to_json()),
                None => return Err(format!("{domain}: not in the directory")),
            }
        }
    }
    Ok(())
}

fn catalog(cmd: CatalogCmd) -> Result<(), String> {
    use intercloud_actors::catalog::{Catalog, CatalogLimits};
    let load =
        |config: &PathBuf| -> Result<(Config, Catalog, intercloud_actors::store::Store), String> {
            let c = Config::load(config).map_err(|e| e.to_string())?;
            let store = node::open_store(&c).map_err(|e| e.to_string())?;
            let cat = Catalog::new(CatalogLimits {
                max_description_bytes: c.catalog.max_description_bytes,
                ..Default::default()
            })
            .map_err(|e| e.to_string())?;
            for (d, t) in store.descriptions().map_err(|e| e.to_string())? {
                cat.publish(&d, &t).map_err(|e| format!("{d}: {e}"))?;
            }
            Ok((c, cat, store))
        };
    match cmd {
        CatalogCmd::Import {
            config,
            domain,
            files,
        } => {
            let (_, cat, store) = load(&config)?;
            for f in files {
                let d = match &domain {
                    Some(d) => d.clone(),
                    None => f
                        .file_name()
                        .and_then(|n| n.to_str())
                        .map(|n| n.trim_end_matches(".ttl").to_string())
                        .ok_or_else(|| format!("{}: no domain", f.display()))?,
                };
                let text =
                    std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
                let n = cat
                    .publish(&d, &text)
                    .map_err(|e| format!("{}: {e}", f.display()))?;
                store
                    .put_description(&d, &text)
                    .map_err(|e| e.to_string())?;
                println!("{d}: {n} triples");
            }
        }
        CatalogCmd::List { config } => {
            let (_, cat, _) = load(&config)?;
            for c in cat.clouds().map_err(|e| e.to_string())? {
                println!("{} {}", c.name, c.domain);
            }
        }
    }
    Ok(())
}

fn client(cmd: ClientCmd) -> Result<(), String> {
    let ClientCmd::Command {
        jid,
        password,
        to,
        node,
        input,
        server,
        cert,
    } = cmd;
    let text = match &input {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => String::new(),
    };
    let xml = intercloud::adhoc_client::request(&to, &node, &text);
    let pinned = intercloud::tls::load_certs(&cert)
        .map_err(|e| e.to_string())?
        .remove(0);
    runtime()?.block_on(async move {
        let out = intercloud::adhoc_client::run(
            &intercloud::net::Net::tcp(),
            server,
            &jid,
            &password,
            pinned,
            &xml,
        )
        .await
        .map_err(|e| e.to_string())?;
        for e in out {
            println!("{}", e.to_xml());
        }
        Ok(())
    })
}

fn scenario(
    file: &std::path::Path,
    report: Option<PathBuf>,
    seed: u64,
    mode: &Option<String>,
) -> Result<(), String> {
    use intercloud::scenario::{fleet::Mode, model::Scenario, run};
    let s = Scenario::load(file).map_err(|e| e.to_string())?;
    let mode = Mode::parse(mode.as_deref().or(s.mode.as_deref()).unwrap_or("processes"))?;
    let (work, keep) = match &report {
        Some(d) => (d.clone(), true),
        None => (
            std::env::temp_dir().join(format!(
                "intercloud-scenario-{}-{:x}",
                std::process::id(),
                rand::random::<u32>()
            )),
            false,
        ),
    };
    if mode == Mode::InProcess {
        // The nodes run here: their logs go to one file beside the report.
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        init_tracing_file(&work.join("nodes.log"), "info")?;
    }
    let o = run::RunOptions {
        work_dir: work.clone(),
        bin: std::env::current_exe().map_err(|e| e.to_string())?,
        seed,
        mode,
        progress: {
            // A bar on a terminal (build, convergence, then one tick per step); plain lines otherwise.
            let pb = indicatif::ProgressBar::new(s.steps.len() as u64 + 2);
            pb.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Box::new(move |l: &str| {
                if pb.is_hidden() {
                    eprintln!("{l}");
                } else {
                    pb.println(l);
                    pb.set_message(l.chars().take(60).collect::<String>());
                }
                // Chaos faults are indented lines within one step.
                if !l.starts_with("   ") {
                    pb.inc(1);
                }
                if pb.position() >= pb.length().unwrap_or(0) {
                    pb.finish_and_clear();
                }
            })
        },
    };
    let r = run::run(&s, &o).map_err(|e| e.to_string())?;
    print!("{}", r.text());
    if keep {
        r.write(&work).map_err(|e| e.to_string())?;
        println!(
            "report: {}/report.html, report.txt, report.json; nodes' logs: {}",
            work.display(),
            if mode == Mode::InProcess {
                format!("{}/nodes.log", work.display())
            } else {
                format!("{}/federation/*/node.log", work.display())
            }
        );
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    if r.passed {
        Ok(())
    } else {
        Err(format!("scenario {} failed", s.name))
    }
}

fn fuzz(
    seed: u64,
    runs: u64,
    steps: usize,
    mode: &str,
    report: Option<PathBuf>,
    test_faults: bool,
) -> Result<(), String> {
    use intercloud::scenario::{fleet::Mode, fuzz, model::Scenario, run};
    let mode = Mode::parse(mode)?;
    let work = report.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("intercloud-fuzz-{}", std::process::id()))
    });
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    if mode == Mode::InProcess {
        init_tracing_file(&work.join("nodes.log"), "info")?;
    }
    // The shipped data, by absolute path, so a drawn file replays anywhere.
    let data = std::env::current_dir()
        .map_err(|e| e.to_string())?
        .join("scenarios/data");
    if !data.join("paper_request.xml").exists() {
        return Err(format!(
            "{}: run the fuzzer from the repository (it uses scenarios/data)",
            data.display()
        ));
    }
    let mut failed = Vec::new();
    for s in seed..seed.saturating_add(runs) {
        let spec = fuzz::FuzzSpec {
            seed: s,
            steps,
            test_faults,
        };
        let toml = fuzz::generate(&spec, &data);
        let dir = work.join(format!("seed-{s}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join("scenario.toml");
        std::fs::write(&file, &toml).map_err(|e| format!("{}: {e}", file.display()))?;
        let sc = Scenario::load(&file).map_err(|e| format!("seed {s}: {e}"))?;
        let o = run::RunOptions {
            work_dir: dir.join("run"),
            bin: std::env::current_exe().map_err(|e| e.to_string())?,
            seed: s,
            mode,
            progress: Box::new(move |l: &str| eprintln!("[seed {s}] {l}")),
        };
        let r = run::run(&sc, &o).map_err(|e| format!("seed {s}: {e}"))?;
        r.write(&dir).map_err(|e| e.to_string())?;
        if r.passed {
            println!("seed {s}: passed ({} steps)", sc.steps.len());
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            println!("seed {s}: FAILED\n{}", r.text());
            println!("--- the scenario ({}):\n{toml}---", file.display());
            println!(
                "replay: intercloud scenario run {} --mode {}",
                file.display(),
                if mode == Mode::InProcess {
                    "in-process"
                } else {
                    "processes"
                }
            );
            failed.push(s);
        }
    }
    println!(
        "fuzz: {} seeds from {seed}, {} failed{}",
        runs,
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {failed:?}")
        }
    );
    if failed.is_empty() {
        let _ = std::fs::remove_dir_all(&work);
        Ok(())
    } else {
        Err(format!(
            "fuzz: seeds {failed:?} failed; kept in {}",
            work.display()
        ))
    }
}

fn federation(cmd: FederationCmd) -> Result<(), String> {
    use intercloud::federation as fed;
    match cmd {
        FederationCmd::Up {
            dir,
            roots,
            exchanges,
            clouds,
            timeout,
        } => {
            let mut members = if fed::manifest(&dir).exists() {
                fed::load(&dir).map_err(|e| e.to_string())?
            } else {
                eprintln!(
                    "generating {roots} root(s), {exchanges} exchange(s), {clouds} cloud(s) in {}",
                    dir.display()
                );
                fed::generate(&dir, roots, exchanges, clouds).map_err(|e| e.to_string())?
            };
            let bin = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut children = fed::start(&bin, &mut members).map_err(|e| e.to_string())?;
            fed::save(&dir, &members).map_err(|e| e.to_string())?;
            let waited = fed::wait_converged(&members, std::time::Duration::from_secs(timeout));
            let h = fed::health(&members);
            print!("{}", fed::table(&members, Some(&h)));
            if let Err(e) = waited {
                fed::stop(&mut children, std::time::Duration::from_secs(10));
                return Err(format!("{e} (logs: {}/<domain>/node.log)", dir.display()));
            }
            println!(
                "converged in {:.1} s; logs in {}/<domain>/node.log; Ctrl-C stops every node",
                waited.map(|d| d.as_secs_f64()).unwrap_or(0.0),
                dir.display()
            );
            let rt = runtime()?;
            rt.block_on(async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
                }
            });
            eprintln!("stopping {} nodes", children.len());
            fed::stop(&mut children, std::time::Duration::from_secs(10));
            for m in &mut members {
                m.pid = None;
            }
            fed::save(&dir, &members).map_err(|e| e.to_string())?;
            Ok(())
        }
        FederationCmd::Status { dir, json } => {
            let members = fed::load(&dir).map_err(|e| e.to_string())?;
            let h = fed::health(&members);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&h).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", fed::table(&members, Some(&h)));
                match fed::converged(&members, &h) {
                    Ok(()) => println!(
                        "healthy: every node runs and is enrolled, every root holds every domain"
                    ),
                    Err(why) => println!("not converged: {why}"),
                }
            }
            Ok(())
        }
    }
}

fn bench_target(
    t: &BenchTarget,
    server: &str,
    domain: &str,
) -> Result<intercloud::bench::conn::Target, String> {
    use std::net::ToSocketAddrs;
    let addr = server
        .to_socket_addrs()
        .map_err(|e| format!("{server}: {e}"))?
        .next()
        .ok_or_else(|| format!("{server}: no address"))?;
    let pinned = match &t.cert {
        Some(p) => Some(
            intercloud::tls::load_certs(p)
                .map_err(|e| e.to_string())?
                .remove(0),
        ),
        None => None,
    };
    Ok(intercloud::bench::conn::Target::new(addr, domain, pinned))
}

fn bench(cmd: BenchCmd) -> Result<(), String> {
    use intercloud::bench;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let load = |t: &BenchTarget, l: &BenchLoad, peer: Option<(&str, &str)>| -> Result<(), String> {
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
            println!(
                "{}",
                serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?
            );
        } else {
            print!("{}", bench::text(&r));
        }
        if r.logins == 0 {
            return Err(r.first_error.unwrap_or_else(|| "no login succeeded".into()));
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
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?
                );
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

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("intercloud: {e}");
            ExitCode::FAILURE
        }
    }
}
