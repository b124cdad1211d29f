//! The README's main-job command: `intercloud demo` runs the paper's story through a local federation in-process (`--processes`: node processes); `demo --one-node` the dialog through one node.

mod common;

#[test]
fn demo_runs_the_dialog_and_exits() {
    let dir = common::temp_dir("demo");
    let out = common::cli(&[
        "demo",
        "--one-node",
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

#[test]
fn demo_runs_the_papers_story_through_a_federation() {
    let out = common::cli(&["demo"]);
    assert!(
        out.contains("Cloud 2, I would like to use your resources for storage replication using AMQP over UDT protocol"),
        "{out}"
    );
    assert!(out.contains("Cloud 1, please go ahead"), "{out}");
    assert!(out.contains("matchingClouds: cloud2, cloud5"), "{out}");
    assert!(out.contains("ended cloud5.test"), "{out}");
    assert!(out.contains("demo complete"), "{out}");
    assert!(out.contains("in-memory network"), "{out}");
    assert!(!out.contains("BROKEN"), "{out}");
}

#[test]
fn demo_runs_the_papers_story_with_node_processes() {
    let out = common::cli(&["demo", "--processes"]);
    assert!(out.contains("each a node process on loopback TCP"), "{out}");
    assert!(out.contains("ended cloud5.test"), "{out}");
    assert!(out.contains("demo complete"), "{out}");
    assert!(!out.contains("BROKEN"), "{out}");
}
