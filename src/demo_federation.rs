//! `intercloud demo`: the paper's whole story as a local federation — the embedded scenarios/paper.toml (root, exchange, five clouds) run with its data, in-process (or as node processes), the dialog printed as it happens.

use crate::scenario::{fleet::Mode, model::Scenario, run};
use std::path::{Path, PathBuf};

const PAPER_TOML: &str = include_str!("../scenarios/paper.toml");
const PAPER_REQUEST: &str = include_str!("../scenarios/data/paper_request.xml");

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}")]
    Scenario(String),
}

fn write(path: &Path, text: &str) -> Result<(), DemoError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| DemoError::Io(d.into(), e))?;
    }
    std::fs::write(path, text).map_err(|e| DemoError::Io(path.into(), e))
}

/// Runs the embedded paper scenario; with `keep`, the report and the nodes' logs stay there.
pub fn run(keep: Option<PathBuf>, mode: Mode) -> Result<(), DemoError> {
    let work = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "intercloud-demo-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ))
    });
    let files = work.join("scenario");
    write(&files.join("paper.toml"), PAPER_TOML)?;
    write(&files.join("data/paper_request.xml"), PAPER_REQUEST)?;
    for (domain, ttl) in crate::demo::CATALOG {
        write(&files.join(format!("data/paper-catalog/{domain}.ttl")), ttl)?;
    }
    let s = Scenario::load(&files.join("paper.toml"))
        .map_err(|e| DemoError::Scenario(e.to_string()))?;
    println!(
        "The paper's story: {} root, {} exchange, {} clouds, {}.",
        s.federation.roots,
        s.federation.exchanges,
        s.federation.clouds,
        match mode {
            Mode::InProcess =>
                "each an actor system in this process, over an in-memory network (TLS, XMPP and libp2p as on the wire)",
            Mode::Processes => "each a node process on loopback TCP",
        }
    );
    let o = run::RunOptions {
        work_dir: work.clone(),
        bin: std::env::current_exe().map_err(|e| DemoError::Io("intercloud".into(), e))?,
        seed: 1,
        mode,
        progress: Box::new(|l| println!("{l}")),
    };
    let r = run::run(&s, &o).map_err(|e| DemoError::Scenario(e.to_string()))?;
    println!();
    // The steps were printed as they ran; the verdicts close the story.
    for l in r
        .text()
        .lines()
        .filter(|l| l.starts_with("scenario") || l.starts_with("  invariant"))
    {
        println!("{l}");
    }
    if keep.is_some() {
        r.write(&work).map_err(|e| DemoError::Io(work.clone(), e))?;
        println!("report: {}/report.html", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    if r.passed {
        println!(
            "demo complete: the paper's flow ran through a federation of {} nodes",
            s.domains().len()
        );
        Ok(())
    } else {
        Err(DemoError::Scenario(
            "the paper's scenario failed (see above)".into(),
        ))
    }
}
