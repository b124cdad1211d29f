//! `intercloud scenario run|fuzz`: play a scenario file, or draw random ones.

use super::logging::init_tracing_file;
use super::CliError;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum ScenarioCmd {
    /// Run a scenario; exits non-zero when a step or an invariant fails.
    Run {
        file: PathBuf,
        /// Where the report (report.txt, report.json) and the federation go
        /// (default: a temporary directory, removed afterwards).
        #[arg(long)]
        report: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// processes: real node processes on loopback TCP; in-process: every
        /// node in this process over an in-memory network (default: the
        /// scenario's `mode`, else processes).
        #[arg(long)]
        mode: Option<String>,
    },
    /// Seeded random scenarios: for each seed from --seed, a federation and
    /// a timeline of steps and faults drawn from it, run with every
    /// invariant checked; a failing seed is printed with the TOML that
    /// replays it. Exits non-zero when any seed fails.
    Fuzz {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How many seeds (seed, seed+1, …).
        #[arg(long, default_value_t = 1)]
        runs: u64,
        /// Steps drawn per scenario (before the closing heal and converge).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, default_value = "in-process")]
        mode: String,
        /// Where each seed's scenario, report and logs go (default: a
        /// temporary directory; failing seeds are kept there).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Test only: the drawn scenarios lose acknowledged messages on
        /// purpose, so every seed must fail (shows how failures are reported).
        #[arg(long, hide = true)]
        test_faults: bool,
    },
}

pub(super) fn scenario(
    file: &std::path::Path,
    report: Option<PathBuf>,
    seed: u64,
    mode: &Option<String>,
) -> Result<(), CliError> {
    use intercloud::scenario::{fleet::Mode, model::Scenario, run};
    let s = Scenario::load(file)?;
    let mode = Mode::parse(mode.as_deref().or(s.mode.as_deref()).unwrap_or("processes"))?;
    let (work, keep) = match &report {
        Some(d) => (d.clone(), true),
        None => (
            std::env::temp_dir().join(format!(
                "intercloud-scenario-{}-{:x}",
                std::process::id(),
                rand::random::<u32>()
            )),
            false,
        ),
    };
    if mode == Mode::InProcess {
        // The nodes run here: their logs go to one file beside the report.
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        init_tracing_file(&work.join("nodes.log"), "info")?;
    }
    let o = run::RunOptions {
        work_dir: work.clone(),
        bin: std::env::current_exe()?,
        seed,
        mode,
        progress: {
            // A bar on a terminal (build, convergence, then one tick per step); plain lines otherwise.
            let pb = indicatif::ProgressBar::new(s.steps.len() as u64 + 2);
            pb.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Box::new(move |l: &str| {
                if pb.is_hidden() {
                    eprintln!("{l}");
                } else {
                    pb.println(l);
                    pb.set_message(l.chars().take(60).collect::<String>());
                }
                // Chaos faults are indented lines within one step.
                if !l.starts_with("   ") {
                    pb.inc(1);
                }
                if pb.position() >= pb.length().unwrap_or(0) {
                    pb.finish_and_clear();
                }
            })
        },
    };
    let r = run::run(&s, &o)?;
    print!("{}", r.text());
    if keep {
        r.write(&work)?;
        println!(
            "report: {}/report.html, report.txt, report.json; nodes' logs: {}",
            work.display(),
            if mode == Mode::InProcess {
                format!("{}/nodes.log", work.display())
            } else {
                format!("{}/federation/*/node.log", work.display())
            }
        );
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    if r.passed {
        Ok(())
    } else {
        Err(format!("scenario {} failed", s.name).into())
    }
}

pub(super) fn fuzz(
    seed: u64,
    runs: u64,
    steps: usize,
    mode: &str,
    report: Option<PathBuf>,
    test_faults: bool,
) -> Result<(), CliError> {
    use intercloud::scenario::{fleet::Mode, fuzz, model::Scenario, run};
    let mode = Mode::parse(mode)?;
    let work = report.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("intercloud-fuzz-{}", std::process::id()))
    });
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    if mode == Mode::InProcess {
        init_tracing_file(&work.join("nodes.log"), "info")?;
    }
    // The shipped data, by absolute path, so a drawn file replays anywhere.
    let data = std::env::current_dir()?.join("scenarios/data");
    if !data.join("paper_request.xml").exists() {
        return Err(format!(
            "{}: run the fuzzer from the repository (it uses scenarios/data)",
            data.display()
        )
        .into());
    }
    let mut failed = Vec::new();
    for s in seed..seed.saturating_add(runs) {
        let spec = fuzz::FuzzSpec {
            seed: s,
            steps,
            test_faults,
        };
        let toml = fuzz::generate(&spec, &data);
        let dir = work.join(format!("seed-{s}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join("scenario.toml");
        std::fs::write(&file, &toml).map_err(|e| format!("{}: {e}", file.display()))?;
        let sc = Scenario::load(&file).map_err(|e| format!("seed {s}: {e}"))?;
        let o = run::RunOptions {
            work_dir: dir.join("run"),
            bin: std::env::current_exe()?,
            seed: s,
            mode,
            progress: Box::new(move |l: &str| eprintln!("[seed {s}] {l}")),
        };
        let r = run::run(&sc, &o).map_err(|e| format!("seed {s}: {e}"))?;
        r.write(&dir)?;
        if r.passed {
            println!("seed {s}: passed ({} steps)", sc.steps.len());
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            println!("seed {s}: FAILED\n{}", r.text());
            println!("--- the scenario ({}):\n{toml}---", file.display());
            println!(
                "replay: intercloud scenario run {} --mode {}",
                file.display(),
                if mode == Mode::InProcess {
                    "in-process"
                } else {
                    "processes"
                }
            );
            failed.push(s);
        }
    }
    println!(
        "fuzz: {} seeds from {seed}, {} failed{}",
        runs,
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {failed:?}")
        }
    );
    if failed.is_empty() {
        let _ = std::fs::remove_dir_all(&work);
        Ok(())
    } else {
        Err(format!("fuzz: seeds {failed:?} failed; kept in {}", work.display()).into())
    }
}

pub(super) fn scenario_cmd(cmd: ScenarioCmd) -> Result<(), CliError> {
    match cmd {
        ScenarioCmd::Run {
            file,
            report,
            seed,
            mode,
        } => scenario(&file, report, seed, &mode),
        ScenarioCmd::Fuzz {
            seed,
            runs,
            steps,
            mode,
            report,
            test_faults,
        } => fuzz(seed, runs, steps, &mode, report, test_faults),
    }
}
