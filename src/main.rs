//! The `intercloud` binary: parses the command line (src/cli) and runs the command.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run(cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("intercloud: {e}");
            ExitCode::FAILURE
        }
    }
}
