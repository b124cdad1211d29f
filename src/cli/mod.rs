//! The `intercloud` command line: its commands (one module each) and the error they end with.

mod bench;
mod catalog;
mod client;
mod demo;
mod directory;
mod federation;
mod logging;
mod negotiate;
mod node;
mod scenario;
mod user;

use clap::{Parser, Subcommand};
use intercloud::config::{Config, ConfigError};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "intercloud",
    version,
    about = "An Intercloud node: a cloud's XMPP gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a node directory: DIR/intercloud.toml, TLS material, data dir.
    Init(node::InitArgs),
    /// Internal: a node's SPARQL query worker (frames on stdin and stdout).
    #[command(name = "sparql-worker", hide = true)]
    SparqlWorker(node::SparqlWorkerArgs),
    /// Run a node in the foreground (stops cleanly on SIGINT/SIGTERM).
    Node(node::NodeArgs),
    /// Manage the node's accounts.
    User {
        #[command(subcommand)]
        cmd: user::UserCmd,
    },
    /// The Intercloud Root directory, as this node sees it.
    Directory {
        #[command(subcommand)]
        cmd: directory::DirectoryCmd,
    },
    /// The catalog of an exchange or root (resource descriptions, RDF).
    Catalog {
        #[command(subcommand)]
        cmd: catalog::CatalogCmd,
    },
    /// A small XMPP client for the Intercloud's services.
    Client {
        #[command(subcommand)]
        cmd: client::ClientCmd,
    },
    /// The paper's flow on this cloud: ask the exchange for clouds meeting the
    /// constraints, check their presence in rank order, propose to the first
    /// available, fall back, or leave the proposal offline. Prints the dialog.
    Negotiate(negotiate::NegotiateArgs),
    /// Scenario files: a federation, a timeline of steps and faults, invariants.
    Scenario {
        #[command(subcommand)]
        cmd: scenario::ScenarioCmd,
    },
    /// A whole federation on this machine (roots, exchanges, clouds as processes).
    Federation {
        #[command(subcommand)]
        cmd: federation::FederationCmd,
    },
    /// A standard-XMPP load generator (STARTTLS, SCRAM, bind, presence, chat):
    /// runs unchanged against this node, Prosody or ejabberd.
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
    /// Agreements this cloud holds with others.
    Agreements {
        #[command(subcommand)]
        cmd: negotiate::AgreementsCmd,
    },
    /// Start a demo node on localhost with accounts, and show a conversation through it.
    Demo(demo::DemoArgs),
}

/// Why a command failed (printed after `intercloud: `).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Init(#[from] intercloud::init::InitError),
    #[error(transparent)]
    Node(#[from] intercloud::node::NodeError),
    #[error(transparent)]
    Store(#[from] intercloud_actors::store::StoreError),
    #[error(transparent)]
    Directory(#[from] intercloud::p2p::directory::DirectoryError),
    #[error(transparent)]
    Catalog(#[from] intercloud_actors::catalog::CatalogError),
    #[error(transparent)]
    Tls(#[from] intercloud::tls::TlsError),
    #[error(transparent)]
    Demo(#[from] intercloud::demo::DemoError),
    #[error(transparent)]
    DemoFederation(#[from] intercloud::demo_federation::DemoError),
    #[error(transparent)]
    Federation(#[from] intercloud::federation::FederationError),
    #[error(transparent)]
    Scenario(#[from] intercloud::scenario::model::ModelError),
    #[error(transparent)]
    ScenarioRun(#[from] intercloud::scenario::run::RunError),
    #[error(transparent)]
    Client(#[from] intercloud::xmpp::client::ClientError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Negotiate(#[from] intercloud::negotiate::NegotiateError),
    #[error(transparent)]
    SparqlWorker(#[from] intercloud::sparql_worker::WorkerError),
    #[error("{0}: {1}")]
    File(PathBuf, std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// What a library still reports as text, and the commands' own refusals.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for CliError {
    fn from(s: String) -> Self {
        CliError::Failed(s)
    }
}

impl From<&str> for CliError {
    fn from(s: &str) -> Self {
        CliError::Failed(s.to_string())
    }
}

/// A node's configuration, for the commands that take `--config`.
fn load(path: &Path) -> Result<Config, CliError> {
    Ok(Config::load(path)?)
}

/// A runtime for the commands that talk to the network once.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.cmd {
        Cmd::Init(a) => node::init(a),
        Cmd::SparqlWorker(a) => node::sparql_worker(a),
        Cmd::Node(a) => node::run(a),
        Cmd::User { cmd } => user::user(cmd),
        Cmd::Directory { cmd } => directory::directory(cmd),
        Cmd::Catalog { cmd } => catalog::catalog(cmd),
        Cmd::Client { cmd } => client::client(cmd),
        Cmd::Negotiate(a) => negotiate::negotiate(a),
        Cmd::Bench { cmd } => bench::bench(cmd),
        Cmd::Federation { cmd } => federation::federation(cmd),
        Cmd::Scenario { cmd } => scenario::scenario_cmd(cmd),
        Cmd::Agreements { cmd } => negotiate::agreements(cmd),
        Cmd::Demo(a) => demo::demo(a),
    }
}
