//! `intercloud directory …`: this node's directory identity, and a root's administration (revoke, approve, delegate, audit).

use super::{load, runtime, CliError};
use clap::Subcommand;
use intercloud::node;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum DirectoryCmd {
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

pub(super) fn directory(cmd: DirectoryCmd) -> Result<(), CliError> {
    use intercloud::p2p::directory as dir;
    match cmd {
        DirectoryCmd::Id { config } => {
            let c = load(&config)?;
            println!("{}", dir::peer_addr(&c)?);
        }
        DirectoryCmd::Key { config } => {
            let c = load(&config)?;
            println!("{}", dir::public_key(&c)?);
        }
        DirectoryCmd::Revoke {
            config,
            domain,
            reason,
        } => {
            let c = load(&config)?;
            let rt = runtime()?;
            let r = rt.block_on(dir::revoke(&c, &domain, &reason))?;
            println!("{}", r.to_json());
        }
        DirectoryCmd::Approve { config, domain } => {
            let c = load(&config)?;
            let r = runtime()?.block_on(dir::approve(&c, &domain))?;
            println!("{}", r.to_json());
        }
        DirectoryCmd::Delegate {
            config,
            zone,
            exchanges,
        } => {
            let c = load(&config)?;
            let r = runtime()?.block_on(dir::delegate(&c, &zone, exchanges))?;
            println!("{}", r.to_json());
        }
        DirectoryCmd::Pending { config } => {
            let c = load(&config)?;
            for (d, k) in runtime()?.block_on(dir::pending(&c))? {
                println!("{d} {k}");
            }
        }
        DirectoryCmd::Ca { config } => {
            let c = load(&config)?;
            let (cert, _) = c.ca_paths();
            let pem = std::fs::read_to_string(&cert).map_err(|e| {
                format!("{}: {e} (is this a root that has started?)", cert.display())
            })?;
            print!("{pem}");
        }
        DirectoryCmd::Audit { config } => {
            use intercloud_actors::directory::audit::{AuditLog, Entry};
            let c = load(&config)?;
            let store = node::open_store(&c)?;
            let mut entries = Vec::new();
            for j in store.audit_entries()? {
                let e: Entry = serde_json::from_str(&j)?;
                println!("{j}");
                entries.push(e);
            }
            AuditLog::verify(&entries).map_err(|e| format!("audit trail broken: {e}"))?;
            println!("{} entries, chain intact", entries.len());
        }
        DirectoryCmd::List { config } => {
            let c = load(&config)?;
            let store = node::open_store(&c)?;
            for j in store.zone_records()? {
                println!("{j}");
            }
        }
        DirectoryCmd::Resolve { config, domain } => {
            let c = load(&config)?;
            let rt = runtime()?;
            let r = rt.block_on(dir::resolve_once(&c, &domain))?;
            match r {
                Some(r) => println!("{}", r.to_json()),
                None => return Err(dir::DirectoryError::NotFound(domain).into()),
            }
        }
    }
    Ok(())
}
