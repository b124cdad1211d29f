//! `intercloud catalog …`: import and list an exchange's resource descriptions.

use super::{load, CliError};
use clap::Subcommand;
use intercloud::config::Config;
use intercloud::node;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum CatalogCmd {
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

pub(super) fn catalog(cmd: CatalogCmd) -> Result<(), CliError> {
    use intercloud_actors::catalog::{Catalog, CatalogLimits};
    let load =
        |config: &PathBuf| -> Result<(Config, Catalog, intercloud_actors::store::Store), CliError> {
            let c = load(config)?;
            let store = node::open_store(&c)?;
            let cat = Catalog::new(CatalogLimits {
                max_description_bytes: c.catalog.max_description_bytes,
                ..Default::default()
            })?;
            for (d, t) in store.descriptions()? {
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
                store.put_description(&d, &text)?;
                println!("{d}: {n} triples");
            }
        }
        CatalogCmd::List { config } => {
            let (_, cat, _) = load(&config)?;
            for c in cat.clouds()? {
                println!("{} {}", c.name, c.domain);
            }
        }
    }
    Ok(())
}
