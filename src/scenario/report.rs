//! What a scenario run reports: each step with its time and outcome, each invariant with its evidence, as text and JSON.

use serde::Serialize;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub index: usize,
    /// Seconds since the run started.
    pub at_secs: f64,
    pub action: String,
    pub target: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct InvariantReport {
    pub name: String,
    pub ok: bool,
    /// What was seen: the measure when it holds, the evidence when it does not.
    pub evidence: String,
}

impl InvariantReport {
    pub fn new(name: &str, r: Result<String, String>) -> InvariantReport {
        let (ok, evidence) = match r {
            Ok(e) => (true, e),
            Err(e) => (false, e),
        };
        InvariantReport {
            name: name.to_string(),
            ok,
            evidence,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub mode: String,
    pub seed: u64,
    pub converged_secs: Option<f64>,
    pub duration_secs: f64,
    pub steps: Vec<StepReport>,
    pub invariants: Vec<InvariantReport>,
    /// Every step did what it expected and every invariant held.
    pub passed: bool,
}

impl Report {
    pub fn new(scenario: &str, mode: &str, seed: u64) -> Report {
        Report {
            scenario: scenario.to_string(),
            mode: mode.to_string(),
            seed,
            converged_secs: None,
            duration_secs: 0.0,
            steps: Vec::new(),
            invariants: Vec::new(),
            passed: false,
        }
    }

    pub fn finish(&mut self) {
        self.passed = !self.invariants.is_empty()
            && self.steps.iter().all(|s| s.ok)
            && self.invariants.iter().all(|i| i.ok);
    }

    pub fn text(&self) -> String {
        let mut s = format!(
            "scenario {} ({} mode, seed {}): {} in {:.1} s\n",
            self.scenario,
            self.mode,
            self.seed,
            if self.passed { "PASSED" } else { "FAILED" },
            self.duration_secs
        );
        if let Some(c) = self.converged_secs {
            s += &format!("  federation converged in {c:.1} s\n");
        }
        for st in &self.steps {
            s += &format!(
                "  {:>6.1}s  {:<4} {} {}: {}\n",
                st.at_secs,
                if st.ok { "ok" } else { "FAIL" },
                st.action,
                st.target,
                st.detail
            );
        }
        for i in &self.invariants {
            s += &format!(
                "  invariant {}: {}{}\n",
                if i.ok { "holds" } else { "BROKEN" },
                i.name,
                if i.evidence.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", i.evidence)
                }
            );
        }
        s
    }

    /// Writes `report.txt` and `report.json` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.txt"), self.text())?;
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(self).map_err(std::io::Error::other)?,
        )
    }
}
