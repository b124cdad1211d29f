//! What a scenario run reports: each step with its time and outcome, each invariant with its evidence, as text, JSON, and an HTML page with the timeline and the topology drawn in SVG.

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

/// One node of the federation, for the topology drawing.
#[derive(Debug, Serialize)]
pub struct TopoNode {
    pub domain: String,
    pub roles: Vec<String>,
    /// The exchange a cloud publishes to and asks.
    pub exchange: Option<String>,
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
    pub topology: Vec<TopoNode>,
    /// In-process runs: the peak resident memory of the process (every node), KiB.
    pub peak_rss_kib: Option<u64>,
    /// What the fault wrappers did over the run (every node), when they did anything.
    pub faults_injected: Option<crate::net::fault::FaultCounts>,
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
            topology: Vec::new(),
            peak_rss_kib: None,
            faults_injected: None,
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
        if let Some(k) = self.peak_rss_kib {
            s += &format!(
                "  peak memory of the process (every node): {:.0} MiB\n",
                k as f64 / 1024.0
            );
        }
        if let Some(f) = &self.faults_injected {
            s += &format!("  faults injected: {}\n", faults_line(f));
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

    /// The topology: roots on top, exchanges in the middle, clouds below;
    /// a line from every node to the roots it registers with, and from each
    /// cloud to its exchange.
    pub fn topology_svg(&self) -> String {
        let tier = |n: &TopoNode| {
            if n.roles.iter().any(|r| r == "root") {
                0
            } else if n.roles.iter().any(|r| r == "exchange") {
                1
            } else {
                2
            }
        };
        let rows: Vec<Vec<&TopoNode>> = (0..3)
            .map(|t| self.topology.iter().filter(|n| tier(n) == t).collect())
            .collect();
        let width = rows.iter().map(|r| r.len()).max().unwrap_or(1).max(1) * 130 + 40;
        let pos = |d: &str| -> (usize, usize) {
            for (t, row) in rows.iter().enumerate() {
                if let Some(i) = row.iter().position(|n| n.domain == d) {
                    let step = width / (row.len() + 1);
                    return (step * (i + 1), 50 + t * 120);
                }
            }
            (0, 0)
        };
        let mut svg = format!(
            "<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='340' font-family='sans-serif' font-size='12'>"
        );
        for n in &self.topology {
            let (x, y) = pos(&n.domain);
            if tier(n) > 0 {
                for r in &rows[0] {
                    let (rx, ry) = pos(&r.domain);
                    svg += &format!("<line x1='{x}' y1='{y}' x2='{rx}' y2='{ry}' stroke='#ccd' stroke-dasharray='3,3'/>");
                }
            }
            if let Some(e) = &n.exchange {
                let (ex, ey) = pos(e);
                svg += &format!(
                    "<line x1='{x}' y1='{y}' x2='{ex}' y2='{ey}' stroke='#58a' stroke-width='2'/>"
                );
            }
        }
        for n in &self.topology {
            let (x, y) = pos(&n.domain);
            let colour = ["#c84", "#48c", "#4a6"][tier(n)];
            svg += &format!(
                "<circle cx='{x}' cy='{y}' r='16' fill='{colour}'/><text x='{x}' y='{}' text-anchor='middle'>{}</text>",
                y + 32,
                crate::scenario::report::esc(&n.domain)
            );
        }
        svg + "</svg>"
    }

    /// The timeline: one mark per step at its time — faults in orange,
    /// message streams and flows in blue, failures in red — and a band while
    /// the federation is partitioned.
    pub fn timeline_svg(&self) -> String {
        let end = self.duration_secs.max(1.0);
        let w = 900.0;
        let x = |t: f64| 20.0 + (t / end) * (w - 40.0);
        let mut svg = format!(
            "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{}' font-family='sans-serif' font-size='11'>\
             <line x1='20' y1='30' x2='{}' y2='30' stroke='#333'/>",
            60 + 16 * self.steps.len(),
            w - 20.0
        );
        if let Some(c) = self.converged_secs {
            svg += &format!(
                "<rect x='20' y='24' width='{:.1}' height='12' fill='#dde'/><text x='22' y='18'>converging {c:.1} s</text>",
                x(c) - 20.0
            );
        }
        // Partitions in force: a band from each partition to the heal that lifts it.
        let mut split: Option<f64> = None;
        let mut bands = Vec::new();
        for st in &self.steps {
            match st.action.as_str() {
                "partition" => {
                    if let Some(a) = split.take() {
                        bands.push((a, st.at_secs));
                    }
                    split = Some(st.at_secs);
                }
                "heal" => {
                    if let Some(a) = split.take() {
                        bands.push((a, st.at_secs));
                    }
                }
                _ => {}
            }
        }
        if let Some(a) = split {
            bands.push((a, end));
        }
        for (a, b) in bands {
            svg += &format!(
                "<rect x='{:.1}' y='36' width='{:.1}' height='6' fill='#f9c'><title>partitioned</title></rect>",
                x(a),
                (x(b) - x(a)).max(1.0)
            );
        }
        for (i, st) in self.steps.iter().enumerate() {
            let colour = if !st.ok {
                "#d33"
            } else if matches!(
                st.action.as_str(),
                "kill"
                    | "stop"
                    | "start"
                    | "partition"
                    | "heal"
                    | "link_fault"
                    | "lose_acked"
                    | "forge_from"
            ) {
                "#e90"
            } else if matches!(st.action.as_str(), "messages" | "flow" | "presence_churn") {
                "#37c"
            } else {
                "#3a5"
            };
            let (px, py) = (x(st.at_secs), 50 + 16 * i);
            svg += &format!(
                "<line x1='{px:.1}' y1='30' x2='{px:.1}' y2='{py}' stroke='{colour}' stroke-width='1'/>\
                 <circle cx='{px:.1}' cy='30' r='4' fill='{colour}'/>\
                 <text x='{:.1}' y='{}' fill='{colour}' text-anchor='{}'>{:.1}s {} {}</text>",
                // Labels of the right half end at their mark, so none runs off the page.
                if px > w / 2.0 { px - 4.0 } else { px + 4.0 },
                py + 4,
                if px > w / 2.0 { "end" } else { "start" },
                st.at_secs,
                esc(&st.action),
                esc(&st.target)
            );
        }
        svg + "</svg>"
    }

    /// A page a person would rather look at than read.
    pub fn html(&self) -> String {
        let mut h = format!(
            "<!doctype html><html><head><meta charset='utf-8'><title>scenario {name}</title>\
             <style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}\
             .ok{{color:#282}}.bad{{color:#c22;font-weight:bold}}td{{padding:2px 8px;vertical-align:top}}</style></head><body>\
             <h1>scenario {name} — <span class='{cls}'>{verdict}</span></h1>\
             <p>{mode} mode, seed {seed}, {dur:.1} s{conv}</p><h2>Timeline</h2>{timeline}<h2>Topology</h2>{topo}\
             <h2>Steps</h2><table>",
            name = esc(&self.scenario),
            cls = if self.passed { "ok" } else { "bad" },
            verdict = if self.passed { "PASSED" } else { "FAILED" },
            mode = esc(&self.mode),
            seed = self.seed,
            dur = self.duration_secs,
            conv = self
                .converged_secs
                .map(|c| format!(", federation converged in {c:.1} s"))
                .unwrap_or_default()
                + &self
                    .faults_injected
                    .map(|f| format!("; faults injected: {}", faults_line(&f)))
                    .unwrap_or_default(),
            timeline = self.timeline_svg(),
            topo = self.topology_svg(),
        );
        for st in &self.steps {
            h += &format!(
                "<tr><td>{:.1}s</td><td class='{}'>{}</td><td>{} {}</td><td>{}</td></tr>",
                st.at_secs,
                if st.ok { "ok" } else { "bad" },
                if st.ok { "ok" } else { "FAILED" },
                esc(&st.action),
                esc(&st.target),
                esc(&st.detail)
            );
        }
        h += "</table><h2>Invariants</h2><table>";
        for i in &self.invariants {
            h += &format!(
                "<tr><td class='{}'>{}</td><td>{}</td><td>{}</td></tr>",
                if i.ok { "ok" } else { "bad" },
                if i.ok { "holds" } else { "BROKEN" },
                esc(&i.name),
                esc(&i.evidence)
            );
        }
        h + "</table></body></html>\n"
    }

    /// Writes `report.txt`, `report.json` and `report.html` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.txt"), self.text())?;
        std::fs::write(dir.join("report.html"), self.html())?;
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(self).map_err(std::io::Error::other)?,
        )
    }
}

/// Text for HTML and SVG.
pub fn esc(s: &str) -> String {
    intercloud_actors::element::escape(s)
}

/// "3 dials refused, 2 links cut, …" for the summary.
fn faults_line(f: &crate::net::fault::FaultCounts) -> String {
    format!(
        "{} dials refused, {} links cut, {} chunks lost, {} duplicated, {} delayed",
        f.refused, f.cut, f.lost, f.duplicated, f.delayed
    )
}
