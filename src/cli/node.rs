//! `intercloud init`, `intercloud node` and the hidden `sparql-worker`: creating a node's directory and running the node.

use super::logging::init_tracing;
use super::{load, CliError};
use intercloud::node::{self, Control};
use std::path::PathBuf;

#[derive(clap::Args)]
pub(super) struct InitArgs {
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
}

#[derive(clap::Args)]
pub(super) struct NodeArgs {
    #[arg(long)]
    config: PathBuf,
}

#[derive(clap::Args)]
pub(super) struct SparqlWorkerArgs {
    #[arg(long)]
    memory_mb: u64,
    #[arg(long)]
    max_results: usize,
    #[arg(long)]
    query_ms: u64,
}

pub(super) fn init(a: InitArgs) -> Result<(), CliError> {
    let cfg = intercloud::init::init(&intercloud::init::InitOptions {
        dir: &a.dir,
        domain: &a.domain,
        roles: a.roles,
        c2s_port: a.c2s_port,
        s2s_port: a.s2s_port,
        p2p_port: a.p2p_port,
    })?;
    println!("wrote {}", cfg.display());
    Ok(())
}

pub(super) fn run(a: NodeArgs) -> Result<(), CliError> {
    let c = load(&a.config)?;
    init_tracing(&c.node.log);
    Ok(node::run(c, Control::default())?)
}

pub(super) fn sparql_worker(a: SparqlWorkerArgs) -> Result<(), CliError> {
    Ok(intercloud::sparql_worker::serve(
        a.memory_mb,
        a.max_results,
        std::time::Duration::from_millis(a.query_ms),
    )?)
}
