//! `intercloud demo`: the paper's flow on a federation in this process (or as processes), or the older one-node demo.

use super::logging::init_tracing;
use super::CliError;
use intercloud::scenario::fleet::Mode;
use std::path::PathBuf;

#[derive(clap::Args)]
pub(super) struct DemoArgs {
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
}

pub(super) fn demo(a: DemoArgs) -> Result<(), CliError> {
    if a.one_node {
        init_tracing("warn");
        Ok(intercloud::demo::run(a.dir, a.port, a.exit)?)
    } else if a.processes {
        init_tracing("warn");
        Ok(intercloud::demo_federation::run(a.dir, Mode::Processes)?)
    } else {
        // The nodes run here: only their errors interrupt the dialog.
        init_tracing("error");
        Ok(intercloud::demo_federation::run(a.dir, Mode::InProcess)?)
    }
}
