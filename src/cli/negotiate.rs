//! `intercloud negotiate` (the paper's flow from this cloud) and `intercloud agreements list`.

use super::{load, runtime, CliError};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(clap::Args)]
pub(super) struct NegotiateArgs {
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
}

#[derive(Subcommand)]
pub(super) enum AgreementsCmd {
    /// List them (both roles: consumer and provider).
    List {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn negotiate(a: NegotiateArgs) -> Result<(), CliError> {
    let c = load(&a.config)?;
    let text = std::fs::read_to_string(&a.constraints)
        .map_err(|e| CliError::File(a.constraints.clone(), e))?;
    let ask = intercloud::negotiate::Ask {
        service: a.service,
        protocol: a.protocol,
        transport: a.transport,
        amount: a.amount,
        unit: a.unit,
        duration_secs: a.duration,
        min_amount: a.min_amount,
        terms: a.terms,
    };
    let report = runtime()?.block_on(intercloud::negotiate::run(&c, &ask, &text))?;
    Ok(intercloud::negotiate::print_report(&report)?)
}

pub(super) fn agreements(cmd: AgreementsCmd) -> Result<(), CliError> {
    let AgreementsCmd::List { config, json } = cmd;
    let c = load(&config)?;
    Ok(intercloud::negotiate::list(&c, json)?)
}
