//! The product's modules form no import cycle and do not depend on the lab (scripts/modgraph.py over actors/src and src), and the check does fail on a tree that breaks either rule.

mod common;

use std::process::Command;

fn modgraph(args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(common::repo().join("scripts/modgraph.py"))
        .args(args)
        .output()
        .expect("python3");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[test]
fn the_modules_have_no_import_cycle() {
    let (ok, text) = modgraph(&["--check"]);
    assert!(ok, "{text}");
    assert!(text.contains("\ncycles: 0\nproduct -> lab: 0\n"), "{text}");
}

#[test]
fn a_cycle_fails_the_check() {
    let dir = common::temp_dir("modgraph");
    std::fs::create_dir_all(dir.join("actors/src")).unwrap();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("actors/src/lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(
        dir.join("actors/src/a.rs"),
        "use crate::b::B;\npub struct A;\n",
    )
    .unwrap();
    std::fs::write(dir.join("actors/src/b.rs"), "pub struct B(crate::a::A);\n").unwrap();
    std::fs::write(dir.join("src/lib.rs"), "use intercloud_actors::a::A;\n").unwrap();
    let (ok, text) = modgraph(&["--check", "--root", dir.to_str().unwrap()]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("\ncycles: 1\n  actors::a, actors::b\n"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_product_module_using_the_lab_fails_the_check() {
    let dir = common::temp_dir("modgraph-lab");
    std::fs::create_dir_all(dir.join("actors/src")).unwrap();
    std::fs::create_dir_all(dir.join("src/scenario")).unwrap();
    std::fs::write(dir.join("actors/src/lib.rs"), "pub mod a;\n").unwrap();
    std::fs::write(dir.join("actors/src/a.rs"), "pub struct A;\n").unwrap();
    std::fs::write(dir.join("src/lib.rs"), "pub mod node;\npub mod scenario;\n").unwrap();
    std::fs::write(dir.join("src/scenario/mod.rs"), "use crate::node::Node;\n").unwrap();
    std::fs::write(
        dir.join("src/node.rs"),
        "pub struct Node;\nfn f() { crate::scenario::run(); }\n",
    )
    .unwrap();
    let (ok, text) = modgraph(&["--check", "--root", dir.to_str().unwrap()]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("\ncycles: 1\n")
            && text.contains("product -> lab: 1\n    intercloud::node -> intercloud::scenario\n"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
