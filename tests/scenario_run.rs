//! `intercloud scenario run` in processes mode: the shipped paper.toml, root-failover.toml and chaos-soak.toml pass (every step, every invariant) and leave no process behind, chaos giving the same faults and verdicts for the same seed; a scenario whose oracle disagrees with the catalog fails, with the evidence in its report.

mod common;

use std::process::Command;

fn run(file: &std::path::Path, report: &std::path::Path) -> (bool, String, serde_json::Value) {
    let out = Command::new(common::BIN)
        .args(["scenario", "run"])
        .arg(file)
        .arg("--report")
        .arg(report)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let json = std::fs::read_to_string(report.join("report.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    (out.status.success(), text, json)
}

#[test]
fn the_papers_scenario_passes() {
    let dir = common::temp_dir("scenario-paper");
    let (ok, text, r) = run(&common::repo().join("scenarios/paper.toml"), &dir);
    assert!(ok, "{text}");
    assert_eq!(r["passed"], true, "{text}");
    let steps = r["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 7, "{text}");
    assert!(steps.iter().all(|s| s["ok"] == true), "{text}");
    assert!(
        text.contains("negotiate cloud1.test: ended cloud2.test"),
        "{text}"
    );
    assert!(
        text.contains("negotiate cloud1.test: ended cloud5.test"),
        "{text}"
    );
    let inv = r["invariants"].as_array().unwrap();
    assert!(
        inv.len() >= 4 && inv.iter().all(|i| i["ok"] == true),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_root_fails_and_comes_back() {
    let dir = common::temp_dir("scenario-root-failover");
    let (ok, text, r) = run(&common::repo().join("scenarios/root-failover.toml"), &dir);
    assert!(ok, "{text}");
    assert_eq!(r["passed"], true, "{text}");
    assert!(text.contains("kill root1.test: SIGKILL"), "{text}");
    assert!(
        text.contains("negotiate cloud1.test: ended cloud2.test"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chaos_is_seeded_the_same_seed_gives_the_same_faults_and_verdicts() {
    let file = common::repo().join("scenarios/chaos-soak.toml");
    let faults = |r: &serde_json::Value| -> Vec<(String, String)> {
        r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["detail"].as_str().unwrap_or("").starts_with("chaos;"))
            .map(|s| {
                (
                    s["action"].as_str().unwrap().to_string(),
                    s["target"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let verdicts = |r: &serde_json::Value| -> Vec<(String, bool)> {
        r["invariants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["name"].as_str().unwrap().to_string(), i["ok"] == true))
            .collect()
    };
    let mut seen = Vec::new();
    for _ in 0..2 {
        let dir = common::temp_dir("scenario-chaos");
        let out = Command::new(common::BIN)
            .args(["scenario", "run"])
            .arg(&file)
            .args(["--seed", "7", "--report"])
            .arg(&dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        assert!(faults(&r).len() >= 8, "{text}");
        seen.push((faults(&r), verdicts(&r), r["passed"].clone()));
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert_eq!(seen[0], seen[1]);
}

#[test]
fn a_broken_expectation_fails_with_evidence() {
    let dir = common::temp_dir("scenario-broken");
    let data = common::repo().join("scenarios/data");
    let file = dir.join("broken.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "broken"
[federation]
roots = 1
exchanges = 1
clouds = 1
import = ["{data}/paper-catalog"]

[[step]]
action = "query"
from = "cloud1.test"
exchange = "exchange1.test"
request = "{data}/paper_request.xml"
expect = ["cloud5", "cloud2"]
"#,
            data = data.display()
        ),
    )
    .unwrap();
    let report = dir.join("report");
    let (ok, text, r) = run(&file, &report);
    assert!(!ok, "{text}");
    assert_eq!(r["passed"], false, "{text}");
    let oracle = r["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"].as_str().unwrap().contains("oracle"))
        .unwrap()
        .clone();
    assert_eq!(oracle["ok"], false, "{text}");
    assert!(
        oracle["evidence"]
            .as_str()
            .unwrap()
            .contains("[\"cloud2\", \"cloud5\"]"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
