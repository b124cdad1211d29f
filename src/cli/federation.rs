//! `intercloud federation up|status|manifests`: a whole federation as processes on this machine, or as Kubernetes manifests for a cluster.

use super::{runtime, CliError};
use clap::Subcommand;
use std::path::PathBuf;

/// How many nodes of each role.
#[derive(clap::Args)]
pub(super) struct Size {
    #[arg(long, default_value_t = 1)]
    roots: usize,
    #[arg(long, default_value_t = 1)]
    exchanges: usize,
    #[arg(long, default_value_t = 3)]
    clouds: usize,
}

#[derive(Subcommand)]
pub(super) enum FederationCmd {
    /// Generate (first time) and start every node, wait until the directory has
    /// converged, print the table, and stay in the foreground; Ctrl-C stops them all.
    Up {
        dir: PathBuf,
        #[command(flatten)]
        size: Size,
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
    /// Write the same federation as Kubernetes objects (DIR/k8s: a Secret,
    /// Service and StatefulSet per node) and its faults as Chaos Mesh
    /// resources (DIR/k8s/chaos); apply with `kubectl apply -R -f DIR/k8s`.
    Manifests {
        dir: PathBuf,
        #[command(flatten)]
        size: Size,
        #[arg(long, default_value = "intercloud")]
        namespace: String,
        /// The node image (built from the repository's Containerfile).
        #[arg(long, default_value = "localhost/intercloud:latest")]
        image: String,
        /// A scenario file whose partition, link_fault and kill steps become
        /// Chaos Mesh resources (default: one of each on the last cloud).
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
}

pub(super) fn federation(cmd: FederationCmd) -> Result<(), CliError> {
    use intercloud::federation as fed;
    match cmd {
        FederationCmd::Up {
            dir,
            size:
                Size {
                    roots,
                    exchanges,
                    clouds,
                },
            timeout,
        } => {
            let mut members = if fed::manifest(&dir).exists() {
                fed::load(&dir)?
            } else {
                eprintln!(
                    "generating {roots} root(s), {exchanges} exchange(s), {clouds} cloud(s) in {}",
                    dir.display()
                );
                fed::generate(&dir, roots, exchanges, clouds)?
            };
            let bin = std::env::current_exe()?;
            let mut children = fed::start(&bin, &mut members)?;
            fed::save(&dir, &members)?;
            let waited = fed::wait_converged(&members, std::time::Duration::from_secs(timeout));
            let h = fed::health(&members);
            print!("{}", fed::table(&members, Some(&h)));
            if let Err(e) = waited {
                fed::stop(&mut children, std::time::Duration::from_secs(10));
                return Err(format!("{e} (logs: {}/<domain>/node.log)", dir.display()).into());
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
            fed::save(&dir, &members)?;
            Ok(())
        }
        FederationCmd::Manifests {
            dir,
            size:
                Size {
                    roots,
                    exchanges,
                    clouds,
                },
            namespace,
            image,
            scenario,
        } => {
            let files = intercloud::manifests::write(
                &dir,
                &intercloud::manifests::Spec {
                    roots,
                    exchanges,
                    clouds,
                    namespace,
                    image,
                    scenario,
                },
            )?;
            println!(
                "wrote {} objects in {}; apply with: kubectl apply -R -f {}",
                files.len(),
                dir.join("k8s").display(),
                dir.join("k8s").display()
            );
            Ok(())
        }
        FederationCmd::Status { dir, json } => {
            let members = fed::load(&dir)?;
            let h = fed::health(&members);
            if json {
                println!("{}", serde_json::to_string_pretty(&h)?);
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
