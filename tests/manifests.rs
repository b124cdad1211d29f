//! `intercloud federation manifests`: the Kubernetes objects validate against the Kubernetes schemas (kubernetes-validate, offline), hang together (secrets, services, routes, bootstrap addresses, Containerfile ports), and a scenario's faults become the Chaos Mesh resources they stand for.

mod common;

use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where tests/run-all.sh installs kubernetes-validate (pip --target).
fn validator_path() -> PathBuf {
    std::env::var_os("INTERCLOUD_PYTHONPATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/intercloud-py")
        })
}

/// kubernetes-validate on `files` (strict: unknown fields are errors): (ok, output).
fn validate(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("python3")
        .env("PYTHONPATH", validator_path())
        .args(["-m", "kubernetes_validate", "--strict", "-k", "1.30.0"])
        .args(files)
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

const SCENARIO: &str = r#"name = "k8s"
[federation]
roots = 2
exchanges = 1
clouds = 2

[[step]]
action = "partition"
groups = [["cloud1.test"], ["root1.test", "root2.test"]]

[[step]]
action = "link_fault"
a = "cloud2.test"
b = "exchange1.test"
delay_ms = 150
loss = 0.25
duplicate = 0.1

[[step]]
action = "kill"
node = "cloud1.test"
"#;

#[test]
fn manifests_validate_and_hang_together() {
    let dir = common::temp_dir("manifests");
    let scenario = dir.join("k8s-faults.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let out = common::cli(&[
        "federation",
        "manifests",
        dir.join("fed").to_str().unwrap(),
        "--roots",
        "2",
        "--exchanges",
        "1",
        "--clouds",
        "2",
        "--namespace",
        "ic-test",
        "--scenario",
        scenario.to_str().unwrap(),
    ]);
    assert!(out.contains("wrote 21 objects"), "{out}");
    let k8s = dir.join("fed/k8s");
    let all = files_under(&k8s);
    let (chaos, core): (Vec<PathBuf>, Vec<PathBuf>) = all
        .into_iter()
        .partition(|p| p.starts_with(k8s.join("chaos")));
    assert_eq!(core.len(), 1 + 5 * 3, "{core:?}");

    // 1. Every Kubernetes object against the official schemas.
    let (ok, text) = validate(&core);
    assert!(ok, "kubernetes-validate refused the manifests:\n{text}");

    // 2. They hang together.
    let objects: Vec<Value> = core.iter().map(|p| read(p)).collect();
    let by_kind = |k: &str| -> Vec<&Value> { objects.iter().filter(|o| o["kind"] == k).collect() };
    let secrets: BTreeMap<String, &Value> = by_kind("Secret")
        .into_iter()
        .map(|s| (s["metadata"]["name"].as_str().unwrap().to_string(), s))
        .collect();
    let services: Vec<String> = by_kind("Service")
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        services,
        [
            "cloud1-test",
            "cloud2-test",
            "exchange1-test",
            "root1-test",
            "root2-test"
        ]
    );
    let containerfile = std::fs::read_to_string(common::repo().join("Containerfile")).unwrap();
    let exposed = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE in the Containerfile")
        .to_string();
    for sts in by_kind("StatefulSet") {
        let name = sts["metadata"]["name"].as_str().unwrap();
        assert_eq!(sts["metadata"]["namespace"], "ic-test");
        let pod = &sts["spec"]["template"]["spec"];
        let secret_names: Vec<&str> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["secret"]["secretName"].as_str().unwrap())
            .collect();
        assert!(
            secret_names.iter().all(|s| secrets.contains_key(*s)),
            "{name}"
        );
        let ports: Vec<String> = pod["containers"][0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["containerPort"].to_string())
            .collect();
        assert_eq!(
            ports.join(" "),
            exposed,
            "{name}: ports vs the Containerfile"
        );
        assert_eq!(
            pod["containers"][0]["livenessProbe"]["httpGet"]["path"],
            "/healthz"
        );
    }
    // The configs the Secrets carry load, route to every other node's
    // Service, and bootstrap from the roots' Services.
    let mut roots_peer = Vec::new();
    for (name, s) in &secrets {
        let cfg = base64::engine::general_purpose::STANDARD
            .decode(s["data"]["intercloud.toml"].as_str().unwrap())
            .unwrap();
        let node_dir = dir.join("check").join(name);
        std::fs::create_dir_all(&node_dir).unwrap();
        let path = node_dir.join("intercloud.toml");
        std::fs::write(&path, &cfg).unwrap();
        let c = intercloud::config::Config::load(&path).unwrap();
        assert_eq!(intercloud::manifests::name_of(&c.node.domain), *name);
        assert_eq!(c.s2s.bind, "0.0.0.0");
        assert_eq!(c.metrics.port, intercloud::manifests::METRICS_PORT);
        assert_eq!(c.node.data_dir, Path::new("/var/lib/intercloud"));
        let routed: Vec<String> = c.s2s.routes.keys().cloned().collect();
        assert_eq!(routed.len(), 4, "{name}: {routed:?}");
        for (domain, addr) in &c.s2s.routes {
            assert_eq!(
                addr,
                &format!(
                    "{}.ic-test.svc.cluster.local:5269",
                    intercloud::manifests::name_of(domain)
                )
            );
        }
        for b in &c.p2p.bootstrap {
            let host = b
                .strip_prefix("/dns4/")
                .and_then(|r| r.split('/').next())
                .unwrap_or_else(|| panic!("{name}: bootstrap {b}"));
            let svc = host.strip_suffix(".ic-test.svc.cluster.local").unwrap();
            assert!(
                svc.starts_with("root") && services.iter().any(|s| s == svc),
                "{b}"
            );
        }
        if c.has_role("root") {
            assert_eq!(c.p2p.bootstrap.len(), 1, "the other root");
            roots_peer.push(name.clone());
        } else {
            assert_eq!(c.p2p.bootstrap.len(), 2, "{name}: both roots");
        }
    }
    assert_eq!(roots_peer, ["root1-test", "root2-test"]);

    // 3. The scenario's faults, as Chaos Mesh resources.
    let chaos: BTreeMap<String, Value> = chaos
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                read(p),
            )
        })
        .collect();
    let names: Vec<&str> = chaos.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "step1-partition-1.json",
            "step2-delay.json",
            "step2-duplicate.json",
            "step2-loss.json",
            "step3-kill.json"
        ]
    );
    for v in chaos.values() {
        assert_eq!(v["apiVersion"], "chaos-mesh.org/v1alpha1");
        assert_eq!(v["metadata"]["namespace"], "ic-test");
    }
    let domains = |sel: &Value| -> Vec<String> {
        sel["expressionSelectors"][0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect()
    };
    let p = &chaos["step1-partition-1.json"];
    assert_eq!(p["kind"], "NetworkChaos");
    assert_eq!(p["spec"]["action"], "partition");
    assert_eq!(p["spec"]["direction"], "both");
    assert_eq!(domains(&p["spec"]["selector"]), ["cloud1.test"]);
    assert_eq!(
        domains(&p["spec"]["target"]["selector"]),
        ["root1.test", "root2.test"]
    );
    let d = &chaos["step2-delay.json"]["spec"];
    assert_eq!(d["action"], "delay");
    assert_eq!(d["delay"]["latency"], "150ms");
    assert_eq!(domains(&d["selector"]), ["cloud2.test"]);
    assert_eq!(domains(&d["target"]["selector"]), ["exchange1.test"]);
    assert_eq!(chaos["step2-loss.json"]["spec"]["loss"]["loss"], "25");
    assert_eq!(
        chaos["step2-duplicate.json"]["spec"]["duplicate"]["duplicate"],
        "10"
    );
    let k = &chaos["step3-kill.json"];
    assert_eq!(k["kind"], "PodChaos");
    assert_eq!(k["spec"]["action"], "pod-kill");
    assert_eq!(domains(&k["spec"]["selector"]), ["cloud1.test"]);
    // Every domain a chaos resource names is a node's label.
    let labelled: Vec<String> = by_kind("StatefulSet")
        .iter()
        .map(|s| {
            s["spec"]["template"]["metadata"]["labels"]["intercloud.org/domain"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for v in chaos.values() {
        for sel in [&v["spec"]["selector"], &v["spec"]["target"]["selector"]] {
            if sel.is_null() {
                continue;
            }
            for d in domains(sel) {
                assert!(labelled.contains(&d), "{d} labels no pod");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The validator really checks: a StatefulSet with a port that is no
/// number, and one with a field Kubernetes does not have, are refused.
#[test]
fn the_validator_refuses_broken_objects() {
    let dir = common::temp_dir("manifests-bad");
    common::cli(&[
        "federation",
        "manifests",
        dir.join("fed").to_str().unwrap(),
        "--roots",
        "1",
        "--exchanges",
        "0",
        "--clouds",
        "0",
    ]);
    let sts = dir.join("fed/k8s/root1-test/statefulset.json");
    let good = read(&sts);
    let mut port = good.clone();
    port["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] =
        Value::String("c2s".into());
    let mut field = good.clone();
    field["spec"]["replica"] = Value::from(1);
    for (tag, bad) in [("port", port), ("field", field)] {
        let f = dir.join(format!("{tag}.json"));
        std::fs::write(&f, serde_json::to_string(&bad).unwrap()).unwrap();
        let (ok, text) = validate(&[f]);
        assert!(!ok, "{tag}: kubernetes-validate took it:\n{text}");
    }
    let (ok, text) = validate(&[sts]);
    assert!(ok, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
