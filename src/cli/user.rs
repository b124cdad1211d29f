//! `intercloud user add|remove|list`: a node's accounts.

use super::{load, CliError};
use clap::Subcommand;
use intercloud::config::Config;
use intercloud::node;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum UserCmd {
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

fn account_jid(config: &Config, jid: &str) -> Result<String, CliError> {
    let full = if jid.contains('@') {
        jid.to_string()
    } else {
        format!("{jid}@{}", config.node.domain)
    };
    let j: intercloud_actors::jid::Jid =
        full.parse().map_err(|e| format!("bad JID {jid:?}: {e}"))?;
    if j.local().is_none() || j.resource().is_some() {
        return Err(format!("{jid:?} is not an account JID (user@domain)").into());
    }
    if j.domain() != config.node.domain {
        return Err(format!(
            "{jid:?} is not in this node's domain {}",
            config.node.domain
        )
        .into());
    }
    Ok(j.to_string())
}

/// Adds, removes or lists accounts (the node may be running).
pub(super) fn user(cmd: UserCmd) -> Result<(), CliError> {
    let config = match &cmd {
        UserCmd::Add { config, .. } | UserCmd::Remove { config, .. } | UserCmd::List { config } => {
            config.clone()
        }
    };
    let c = load(&config)?;
    let store = node::open_store(&c)?;
    match cmd {
        UserCmd::Add { jid, password, .. } => {
            let jid = account_jid(&c, &jid)?;
            let pw = password
                .or_else(|| std::env::var("INTERCLOUD_PASSWORD").ok())
                .ok_or("give --password or set INTERCLOUD_PASSWORD")?;
            if pw.is_empty() {
                return Err("empty password".into());
            }
            store.add_user(&jid, &pw, c.limits.scram_iterations)?;
            println!("added {jid}");
        }
        UserCmd::Remove { jid, .. } => {
            let jid = account_jid(&c, &jid)?;
            store.remove_user(&jid)?;
            println!("removed {jid}");
        }
        UserCmd::List { .. } => {
            for u in store.list_users()? {
                println!("{u}");
            }
        }
    }
    Ok(())
}
