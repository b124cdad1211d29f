//! Checks of the configuration: the template and the README's reference hold every setting at its default; validation refuses what a node cannot run with.

use super::*;

/// The dotted names of every setting in `v` (a table with no entries,
/// or an array, is one setting).
fn keys(v: &toml::Value) -> std::collections::BTreeSet<String> {
    let mut out = Default::default();
    flat(v, "", &mut out);
    out.into_keys().collect()
}

/// What `init` writes sets every setting the structs have, to the value
/// the structs default to (but for what `init` is told).
#[test]
fn the_template_holds_every_setting_at_its_default() {
    let secret = "0123456789abcdef0123";
    let t = template("c.test", &["cloud".into()], 5222, 5269, 4001, secret);
    let written: Config = toml::from_str(&t).unwrap();
    let minimal = format!("[node]\ndomain = \"c.test\"\n[s2s]\ndialback_secret = \"{secret}\"\n");
    let defaults: Config = toml::from_str(&minimal).unwrap();
    let (w, d) = (
        toml::Value::try_from(&written).unwrap(),
        toml::Value::try_from(&defaults).unwrap(),
    );
    let (wk, dk) = (keys(&toml::from_str(&t).unwrap()), keys(&d));
    let missing: Vec<_> = dk.difference(&wk).collect();
    assert!(missing.is_empty(), "the template lacks {missing:?}");
    let unknown: Vec<_> = wk.difference(&dk).collect();
    assert!(unknown.is_empty(), "the template has unknown {unknown:?}");
    // Values: all but what init sets from its arguments.
    let (mut wv, mut dv) = (Default::default(), Default::default());
    flat(&w, "", &mut wv);
    flat(&d, "", &mut dv);
    for k in ["c2s.port", "s2s.port", "p2p.port"] {
        wv.remove(k);
        dv.remove(k);
    }
    let differ: Vec<_> = dv
        .iter()
        .filter(|(k, v)| wv.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: template {:?}, default {v}", wv.get(k)))
        .collect();
    assert!(differ.is_empty(), "{differ:#?}");
}

/// Every setting in `v` by dotted name, with its value written as TOML.
fn flat(v: &toml::Value, prefix: &str, out: &mut std::collections::BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) if !t.is_empty() => {
            for (k, v) in t {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flat(v, &name, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The README's configuration reference names every setting there is,
/// and no other.
#[test]
fn the_readme_documents_every_setting() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Configuration reference")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a configuration reference");
    let mut documented = std::collections::BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split(" | ").next().unwrap_or("");
        for name in first.trim_start_matches("| ").split(", ") {
            documented.insert(name.trim_matches('`').to_string());
        }
    }
    let t = template(
        "c.test",
        &["cloud".into()],
        5222,
        5269,
        4001,
        "0123456789abcdef0123",
    );
    let c: Config = toml::from_str(&t).unwrap();
    let settings = keys(&toml::Value::try_from(&c).unwrap());
    let missing: Vec<_> = settings.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "the README does not document {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&settings).collect();
    assert!(
        stale.is_empty(),
        "the README documents what is no setting: {stale:?}"
    );
    // And gives each its default, where it writes one as a value.
    let minimal =
        "[node]\ndomain = \"c.test\"\n[s2s]\ndialback_secret = \"0123456789abcdef0123\"\n";
    let d: Config = toml::from_str(minimal).unwrap();
    let mut defaults = Default::default();
    flat(&toml::Value::try_from(&d).unwrap(), "", &mut defaults);
    let mut wrong = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let names: Vec<&str> = cells[0].trim_start_matches("| ").split(", ").collect();
        let values: Vec<&str> = cells[1].split("`, `").collect();
        if names.len() != values.len() || !cells[1].starts_with('`') {
            continue;
        }
        for (n, v) in names.iter().zip(values) {
            let n = n.trim_matches('`');
            let v = v.trim_matches('`');
            match defaults.get(n) {
                Some(want) if want == v => {}
                Some(want) => wrong.push(format!("{n}: README {v}, default {want}")),
                None => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn template_parses_to_defaults() {
    let t = template(
        "cloud1.test",
        &["cloud".into(), "root".into()],
        5222,
        5269,
        4001,
        "0123456789abcdef0123",
    );
    let c: Config = toml::from_str(&t).unwrap();
    assert_eq!(c.node.domain, "cloud1.test");
    assert_eq!(c.node.roles, vec!["cloud", "root"]);
    assert_eq!(
        c.limits.max_stanza_bytes,
        Limits::default().max_stanza_bytes
    );
    c.validate().unwrap();
}
