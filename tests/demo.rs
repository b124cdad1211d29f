//! The README's main-job command: `intercloud demo` runs the paper's dialog through a real node.

mod common;

#[test]
fn demo_runs_the_dialog_and_exits() {
    let dir = common::temp_dir("demo");
    let out = common::cli(&[
        "demo",
        "--exit",
        "--port",
        "0",
        "--dir",
        dir.join("node").to_str().unwrap(),
    ]);
    assert!(
        out.contains("storage replication using AMQP over UDT"),
        "{out}"
    );
    assert!(out.contains("please go ahead"), "{out}");
    assert!(out.contains("matchingClouds cloud2, cloud5"), "{out}");
    assert!(out.contains("demo dialog complete"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
