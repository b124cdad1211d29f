//! `intercloud client command`: one XEP-0050 command against a service, as a small XMPP client.

use super::{runtime, CliError};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum ClientCmd {
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

pub(super) fn client(cmd: ClientCmd) -> Result<(), CliError> {
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
    let pinned = intercloud::tls::load_certs(&cert)?.remove(0);
    runtime()?.block_on(async move {
        let out = intercloud::adhoc_client::run(
            &intercloud::net::Net::tcp(),
            server,
            &jid,
            &password,
            pinned,
            &xml,
        )
        .await?;
        for e in out {
            println!("{}", e.to_xml());
        }
        Ok(())
    })
}
