//! `intercloud federation manifests`: the same federation as `federation up`, for a Kubernetes cluster — per node a Secret (config, TLS, directory key), a Service and a StatefulSet — and the scenario faults' counterparts as Chaos Mesh resources.
//!
//! Every object is one JSON file (JSON is YAML; `kubectl apply -R -f DIR`
//! takes the tree). Nodes find each other by their Services' cluster DNS
//! names: static s2s routes for every domain, and `/dns4/…` bootstrap
//! addresses for the roots' libp2p hosts.

use crate::config::Config;
use crate::federation::{edit, exchange_for, wire, FederationError};
use crate::init::{init, InitOptions};
use crate::scenario::model::{Scenario, Step};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Ports every node listens on inside its pod.
pub const C2S_PORT: u16 = 5222;
pub const S2S_PORT: u16 = 5269;
pub const P2P_PORT: u16 = 4001;
pub const METRICS_PORT: u16 = 9100;

/// Where the container finds its files (see Containerfile).
const CONFIG_DIR: &str = "/etc/intercloud";
const DATA_DIR: &str = "/var/lib/intercloud";

/// What to write.
pub struct Spec {
    pub roots: usize,
    pub exchanges: usize,
    pub clouds: usize,
    pub namespace: String,
    pub image: String,
    /// A scenario whose partition, link_fault and kill steps become Chaos Mesh resources.
    pub scenario: Option<PathBuf>,
}

/// One node: its domain, roles and Kubernetes name.
struct NodeSpec {
    domain: String,
    roles: Vec<String>,
    name: String,
}

/// A Kubernetes object name for a domain (`cloud1.test` → `cloud1-test`).
pub fn name_of(domain: &str) -> String {
    domain
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> FederationError + '_ {
    move |e| FederationError::Io(p.to_path_buf(), e)
}

fn setup(e: impl std::fmt::Display) -> FederationError {
    FederationError::Setup(e.to_string())
}

fn write_json(path: &Path, v: &Value) -> Result<(), FederationError> {
    let text = serde_json::to_string_pretty(v).map_err(setup)?;
    std::fs::write(path, text + "\n").map_err(io(path))
}

/// Writes the manifests under `dir` (node material in `dir/nodes`, objects
/// in `dir/k8s`); returns the object files written.
pub fn write(dir: &Path, spec: &Spec) -> Result<Vec<PathBuf>, FederationError> {
    if spec.roots == 0 {
        return Err(setup("a federation needs at least one root"));
    }
    let k8s = dir.join("k8s");
    if k8s.exists() {
        return Err(setup(format!(
            "{} exists; remove it or choose another directory",
            k8s.display()
        )));
    }
    let nodes: Vec<NodeSpec> = (1..=spec.roots)
        .map(|i| (format!("root{i}.test"), vec!["cloud", "root"]))
        .chain(
            (1..=spec.exchanges).map(|i| (format!("exchange{i}.test"), vec!["cloud", "exchange"])),
        )
        .chain((1..=spec.clouds).map(|i| (format!("cloud{i}.test"), vec!["cloud"])))
        .map(|(domain, roles)| NodeSpec {
            name: name_of(&domain),
            roles: roles.into_iter().map(String::from).collect(),
            domain,
        })
        .collect();
    let host = |n: &NodeSpec| format!("{}.{}.svc.cluster.local", n.name, spec.namespace);
    let token = format!("{:032x}", rand::random::<u128>());
    let material = dir.join("nodes");
    // Each node's directory, as `init` makes it, with the ports of the pod.
    for n in &nodes {
        init(&InitOptions {
            dir: &material.join(&n.domain),
            domain: &n.domain,
            roles: n.roles.clone(),
            c2s_port: C2S_PORT,
            s2s_port: S2S_PORT,
            p2p_port: P2P_PORT,
        })
        .map_err(setup)?;
    }
    let config_of = |n: &NodeSpec| material.join(&n.domain).join("intercloud.toml");
    let mut keys = Vec::new();
    let mut bootstrap = Vec::new();
    for n in &nodes {
        // Every node's directory key is made here: it travels in its Secret.
        let c = Config::load(&config_of(n)).map_err(setup)?;
        let id = crate::p2p::directory::peer_addr(&c).map_err(setup)?;
        if n.roles.iter().any(|r| r == "root") {
            keys.push(crate::p2p::directory::public_key(&c).map_err(setup)?);
            let peer = id.rsplit("/p2p/").next().unwrap_or_default().to_string();
            bootstrap.push((
                n.domain.clone(),
                format!("/dns4/{}/tcp/{P2P_PORT}/p2p/{peer}", host(n)),
            ));
        }
    }
    let exchanges: Vec<String> = nodes
        .iter()
        .filter(|n| n.roles.iter().any(|r| r == "exchange"))
        .map(|n| n.domain.clone())
        .collect();
    let mut files = Vec::new();
    std::fs::create_dir_all(&k8s).map_err(io(&k8s))?;
    let ns = k8s.join("namespace.json");
    write_json(
        &ns,
        &json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": spec.namespace },
        }),
    )?;
    files.push(ns);
    for (i, n) in nodes.iter().enumerate() {
        let p = config_of(n);
        // Inside a pod: listen on every interface (c2s, s2s, p2p, metrics),
        // keep data on the volume.
        let mut text = std::fs::read_to_string(&p).map_err(io(&p))?;
        text = text.replacen("bind = \"127.0.0.1\"", "bind = \"0.0.0.0\"", 4);
        std::fs::write(&p, &text).map_err(io(&p))?;
        edit(
            &p,
            "data_dir = \"data\"",
            &format!("data_dir = {DATA_DIR:?}"),
        )?;
        edit(&p, "port = 0\n", &format!("port = {METRICS_PORT}\n"))?;
        let others: Vec<String> = bootstrap
            .iter()
            .filter(|(d, _)| *d != n.domain)
            .map(|(_, a)| a.clone())
            .collect();
        let exchange = exchange_for(i, &exchanges, &nodes[0].domain);
        wire(&p, &n.roles, &keys, &others, &token, &exchange)?;
        let routes: String = nodes
            .iter()
            .filter(|o| o.domain != n.domain)
            .map(|o| format!("{:?} = \"{}:{S2S_PORT}\"\n", o.domain, host(o)))
            .collect();
        edit(&p, "[s2s.routes]\n", &format!("[s2s.routes]\n{routes}"))?;
        // The config must still load as the node will read it.
        Config::load(&p).map_err(|e| setup(format!("{}: {e}", p.display())))?;
        let node_dir = k8s.join(&n.name);
        std::fs::create_dir_all(&node_dir).map_err(io(&node_dir))?;
        for (file, v) in [
            (
                "secret.json",
                secret(n, &spec.namespace, &material.join(&n.domain))?,
            ),
            ("service.json", service(n, &spec.namespace)),
            (
                "statefulset.json",
                statefulset(n, &spec.namespace, &spec.image),
            ),
        ] {
            let f = node_dir.join(file);
            write_json(&f, &v)?;
            files.push(f);
        }
    }
    let chaos_dir = k8s.join("chaos");
    std::fs::create_dir_all(&chaos_dir).map_err(io(&chaos_dir))?;
    let chaos = match &spec.scenario {
        Some(f) => chaos_of(&Scenario::load(f).map_err(setup)?, &spec.namespace),
        None => sample_chaos(&nodes, &spec.namespace),
    };
    for (file, v) in chaos {
        let f = chaos_dir.join(file);
        write_json(&f, &v)?;
        files.push(f);
    }
    Ok(files)
}

fn labels(n: &NodeSpec) -> Value {
    json!({
        "app.kubernetes.io/name": "intercloud",
        "app.kubernetes.io/instance": n.name,
        "intercloud.org/domain": n.domain,
    })
}

/// The node's config, TLS pair and directory key, base64 in a Secret.
fn secret(n: &NodeSpec, ns: &str, dir: &Path) -> Result<Value, FederationError> {
    use base64::Engine;
    let b64 = |p: PathBuf| -> Result<String, FederationError> {
        let bytes = std::fs::read(&p).map_err(io(&p))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    };
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": n.name, "namespace": ns, "labels": labels(n) },
        "type": "Opaque",
        "data": {
            "intercloud.toml": b64(dir.join("intercloud.toml"))?,
            "cert.pem": b64(dir.join("tls/cert.pem"))?,
            "key.pem": b64(dir.join("tls/key.pem"))?,
            "node.key": b64(dir.join("data/node.key"))?,
        },
    }))
}

fn service(n: &NodeSpec, ns: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": n.name, "namespace": ns, "labels": labels(n) },
        "spec": {
            "selector": { "app.kubernetes.io/instance": n.name },
            "ports": [
                { "name": "xmpp-client", "port": C2S_PORT, "targetPort": C2S_PORT, "protocol": "TCP" },
                { "name": "xmpp-server", "port": S2S_PORT, "targetPort": S2S_PORT, "protocol": "TCP" },
                { "name": "libp2p", "port": P2P_PORT, "targetPort": P2P_PORT, "protocol": "TCP" },
                { "name": "metrics", "port": METRICS_PORT, "targetPort": METRICS_PORT, "protocol": "TCP" },
            ],
        },
    })
}

/// One pod per node, its data on a volume of its own; the directory key is
/// copied there on first start (the node keeps it with its data).
fn statefulset(n: &NodeSpec, ns: &str, image: &str) -> Value {
    let key_copy = format!(
        "[ -f {DATA_DIR}/node.key ] || cp {CONFIG_DIR}/secret/node.key {DATA_DIR}/node.key"
    );
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": { "name": n.name, "namespace": ns, "labels": labels(n) },
        "spec": {
            "serviceName": n.name,
            "replicas": 1,
            "selector": { "matchLabels": { "app.kubernetes.io/instance": n.name } },
            "template": {
                "metadata": {
                    "labels": labels(n),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": METRICS_PORT.to_string(),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "securityContext": { "runAsNonRoot": true, "runAsUser": 10001, "fsGroup": 10001 },
                    "initContainers": [{
                        "name": "directory-key",
                        "image": image,
                        "command": ["/bin/sh", "-c", key_copy],
                        "volumeMounts": [
                            { "name": "secret", "mountPath": format!("{CONFIG_DIR}/secret"), "readOnly": true },
                            { "name": "data", "mountPath": DATA_DIR },
                        ],
                    }],
                    "containers": [{
                        "name": "intercloud",
                        "image": image,
                        "args": ["node", "--config", format!("{CONFIG_DIR}/intercloud.toml")],
                        "ports": [
                            { "name": "xmpp-client", "containerPort": C2S_PORT },
                            { "name": "xmpp-server", "containerPort": S2S_PORT },
                            { "name": "libp2p", "containerPort": P2P_PORT },
                            { "name": "metrics", "containerPort": METRICS_PORT },
                        ],
                        "volumeMounts": [
                            { "name": "config", "mountPath": CONFIG_DIR, "readOnly": true },
                            { "name": "data", "mountPath": DATA_DIR },
                        ],
                        "livenessProbe": {
                            "httpGet": { "path": "/healthz", "port": METRICS_PORT },
                            "initialDelaySeconds": 5,
                            "periodSeconds": 10,
                        },
                        "readinessProbe": {
                            "tcpSocket": { "port": C2S_PORT },
                            "periodSeconds": 5,
                        },
                        "resources": {
                            "requests": { "cpu": "100m", "memory": "128Mi" },
                            "limits": { "memory": "1Gi" },
                        },
                    }],
                    "volumes": [
                        {
                            "name": "config",
                            "secret": {
                                "secretName": n.name,
                                "items": [
                                    { "key": "intercloud.toml", "path": "intercloud.toml" },
                                    { "key": "cert.pem", "path": "tls/cert.pem" },
                                    { "key": "key.pem", "path": "tls/key.pem" },
                                ],
                            },
                        },
                        {
                            "name": "secret",
                            "secret": {
                                "secretName": n.name,
                                "items": [{ "key": "node.key", "path": "node.key" }],
                            },
                        },
                    ],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": { "requests": { "storage": "1Gi" } },
                },
            }],
        },
    })
}

/// Pods of these domains ("*": every node).
fn selector(ns: &str, domains: &[String]) -> Value {
    if domains.iter().any(|d| d == "*") {
        return json!({ "namespaces": [ns], "labelSelectors": { "app.kubernetes.io/name": "intercloud" } });
    }
    json!({
        "namespaces": [ns],
        "expressionSelectors": [{
            "key": "intercloud.org/domain",
            "operator": "In",
            "values": domains,
        }],
    })
}

fn chaos_object(kind: &str, name: &str, ns: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": kind,
        "metadata": { "name": name, "namespace": ns },
        "spec": spec,
    })
}

/// A scenario's faults as Chaos Mesh resources: partition → NetworkChaos
/// `partition` between each pair of groups; link_fault → NetworkChaos
/// `delay`/`loss`/`duplicate`/`bandwidth` between its two ends; kill →
/// PodChaos `pod-kill`. Each lasts until the next step of its kind would
/// change it (here: until deleted; `duration` is left to the operator).
pub fn chaos_of(s: &Scenario, ns: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (i, step) in s.steps.iter().enumerate() {
        let n = i + 1;
        match step {
            Step::Partition { groups } => {
                for (a, ga) in groups.iter().enumerate() {
                    for gb in groups.iter().skip(a + 1) {
                        let name = format!("step{n}-partition-{}", out.len() + 1);
                        out.push((
                            format!("{name}.json"),
                            chaos_object(
                                "NetworkChaos",
                                &name,
                                ns,
                                json!({
                                    "action": "partition",
                                    "mode": "all",
                                    "selector": selector(ns, ga),
                                    "direction": "both",
                                    "target": { "mode": "all", "selector": selector(ns, gb) },
                                }),
                            ),
                        ));
                    }
                }
            }
            Step::LinkFault {
                a,
                b,
                delay_ms,
                loss,
                duplicate,
                bytes_per_sec,
            } => {
                let base = |action: &str| {
                    json!({
                        "action": action,
                        "mode": "all",
                        "selector": selector(ns, std::slice::from_ref(a)),
                        "direction": "both",
                        "target": { "mode": "all", "selector": selector(ns, std::slice::from_ref(b)) },
                    })
                };
                let mut push = |action: &str, field: &str, v: Value| {
                    let mut spec = base(action);
                    spec[field] = v;
                    let name = format!("step{n}-{action}");
                    out.push((
                        format!("{name}.json"),
                        chaos_object("NetworkChaos", &name, ns, spec),
                    ));
                };
                if *delay_ms > 0 {
                    push(
                        "delay",
                        "delay",
                        json!({ "latency": format!("{delay_ms}ms") }),
                    );
                }
                if *loss > 0.0 {
                    push("loss", "loss", json!({ "loss": percent(*loss) }));
                }
                if *duplicate > 0.0 {
                    push(
                        "duplicate",
                        "duplicate",
                        json!({ "duplicate": percent(*duplicate) }),
                    );
                }
                if *bytes_per_sec > 0 {
                    push(
                        "bandwidth",
                        "bandwidth",
                        json!({ "rate": format!("{}bps", bytes_per_sec * 8), "limit": 20971520, "buffer": 10000 }),
                    );
                }
            }
            Step::Kill { node } => {
                let name = format!("step{n}-kill");
                out.push((
                    format!("{name}.json"),
                    chaos_object(
                        "PodChaos",
                        &name,
                        ns,
                        json!({
                            "action": "pod-kill",
                            "mode": "all",
                            "selector": selector(ns, std::slice::from_ref(node)),
                            "gracePeriod": 0,
                        }),
                    ),
                ));
            }
            _ => {}
        }
    }
    out
}

/// A probability as Chaos Mesh's percentage string.
fn percent(p: f64) -> String {
    format!("{}", (p * 100.0).clamp(0.0, 100.0))
}

/// Without a scenario: one of each kind, on the first cloud.
fn sample_chaos(nodes: &[NodeSpec], ns: &str) -> Vec<(String, Value)> {
    let cloud = nodes
        .iter()
        .rfind(|n| n.roles == ["cloud"])
        .unwrap_or(&nodes[nodes.len() - 1]);
    let roots: Vec<String> = nodes
        .iter()
        .filter(|n| n.roles.iter().any(|r| r == "root"))
        .map(|n| n.domain.clone())
        .collect();
    let s = Scenario {
        steps: vec![
            Step::Partition {
                groups: vec![vec![cloud.domain.clone()], roots],
            },
            Step::LinkFault {
                a: cloud.domain.clone(),
                b: "*".into(),
                delay_ms: 200,
                loss: 0.1,
                duplicate: 0.05,
                bytes_per_sec: 0,
            },
            Step::Kill {
                node: cloud.domain.clone(),
            },
        ],
        ..Scenario::empty()
    };
    chaos_of(&s, ns)
}
