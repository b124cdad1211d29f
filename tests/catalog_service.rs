//! The catalog service of an exchange through a real node: the paper's §6 request byte for byte, XEP-0050/XEP-0244 behaviour, and each bad request refused with its error and nothing changed.

mod common;

use common::Node;
use intercloud::xmpp::client::Client;
use intercloud_actors::adhoc::NS_COMMANDS;
use intercloud_actors::catalog::constraints::NS_RES;
use intercloud_actors::element::Element;
use intercloud_actors::iodata::NS_IODATA;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const SVC: &str = "service.exchange.test";

/// An exchange whose catalog holds the 12 fixture clouds.
fn exchange(tag: &str, edits: &[(&str, &str)]) -> Node {
    let n = Node::init(tag, "exchange.test", &[]);
    n.edit("roles = [\"cloud\"]", "roles = [\"cloud\", \"exchange\"]");
    for (a, b) in edits {
        n.edit(a, b);
    }
    n.import_paper_catalog();
    n.add_user("user", "pw");
    n
}

async fn iq(c: &mut Client, id: &str, xml: String) -> Element {
    c.send_raw(&xml).await.unwrap();
    c.wait_for(T, |e| e.name == "iq" && e.get_attr("id") == Some(id))
        .await
        .unwrap()
}

/// Sends `<command node action sessionid>` with `payload` (raw XML).
async fn command(c: &mut Client, id: &str, node: &str, extra: &str, payload: &str) -> Element {
    iq(
        c,
        id,
        format!(
            "<iq type='set' to='{SVC}' id='{id}'><command xmlns='{NS_COMMANDS}' node='{node}' {extra}>{payload}</command></iq>"
        ),
    )
    .await
}

fn input(inner: &str) -> String {
    format!("<iodata xmlns='{NS_IODATA}' type='input'><in>{inner}</in></iodata>")
}

fn constraint(attr: &str, value: &str) -> String {
    format!("<constraint><attribute>{attr}</attribute><value>{value}</value></constraint>")
}

fn cmd_of(r: &Element) -> &Element {
    r.get_child("command", NS_COMMANDS)
        .unwrap_or_else(|| panic!("no command in {}", r.to_xml()))
}

fn names(r: &Element) -> Vec<String> {
    let m = cmd_of(r)
        .get_child("iodata", NS_IODATA)
        .and_then(|io| io.get_child("out", NS_IODATA))
        .and_then(|o| o.get_child("matchingClouds", NS_RES))
        .unwrap_or_else(|| panic!("no matchingClouds in {}", r.to_xml()));
    m.elements().map(|e| e.text_content()).collect()
}

fn error_of(r: &Element) -> String {
    assert_eq!(r.get_attr("type"), Some("error"), "{}", r.to_xml());
    r.to_xml()
}

async fn clouds(c: &mut Client, id: &str) -> usize {
    let r = command(c, id, "list_clouds", "action='execute'", "").await;
    let out = cmd_of(&r)
        .get_child("iodata", NS_IODATA)
        .and_then(|io| io.get_child("out", NS_IODATA))
        .and_then(|o| o.get_child("clouds", NS_RES))
        .unwrap_or_else(|| panic!("{}", r.to_xml()));
    out.elements().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_papers_request_and_the_xeps_rules() {
    let mut n = exchange("cat", &[]);
    n.start();
    let mut c = n.login("user", "pw", None).await;

    // The paper's request, whitespace and all; only the addresses are ours.
    let paper =
        std::fs::read_to_string(common::repo().join("scenarios/data/paper_request.xml")).unwrap();
    let xml = paper
        .replace("from='user@cloudl.org'\n", "")
        .replace("to='service.intercloudexchg.com'", &format!("to='{SVC}'"));
    let r = iq(&mut c, "cloudl_idl", xml).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{}", r.to_xml());
    let cmd = cmd_of(&r);
    assert_eq!(cmd.get_attr("status"), Some("completed"));
    assert_eq!(cmd.get_attr("node"), Some("constraint_catalog_resources"));
    assert!(!cmd.get_attr("sessionid").unwrap_or_default().is_empty());
    assert_eq!(r.get_attr("from"), Some(SVC));
    assert_eq!(names(&r), vec!["cloud2", "cloud5"], "ranked by headroom");

    // XEP-0030: the commands and their nodes.
    let r = iq(&mut c, "items", format!("<iq type='get' to='{SVC}' id='items'><query xmlns='http://jabber.org/protocol/disco#items' node='{NS_COMMANDS}'/></iq>")).await;
    let xml = r.to_xml();
    for node in [
        "constraint_catalog_resources",
        "sparql_query",
        "publish_resources",
        "list_clouds",
    ] {
        assert!(
            xml.contains(&format!("node='{node}'")) || xml.contains(&format!("node=\"{node}\"")),
            "{xml}"
        );
    }
    let r = iq(&mut c, "info", format!("<iq type='get' to='{SVC}' id='info'><query xmlns='http://jabber.org/protocol/disco#info' node='sparql_query'/></iq>")).await;
    let xml = r.to_xml();
    assert!(
        xml.contains("command-node")
            && xml.contains("automation")
            && xml.contains(NS_IODATA)
            && xml.contains(NS_COMMANDS),
        "{xml}"
    );

    // XEP-0244: schemata first, then the input in the same session.
    let r = command(
        &mut c,
        "s1",
        "constraint_catalog_resources",
        "",
        &format!("<iodata xmlns='{NS_IODATA}' type='io-schemata-get'/>"),
    )
    .await;
    let cmd = cmd_of(&r);
    assert_eq!(cmd.get_attr("status"), Some("executing"));
    let sid = cmd.get_attr("sessionid").unwrap().to_string();
    assert!(
        r.to_xml().contains("io-schemata-result") && r.to_xml().contains("XMLSchema"),
        "{}",
        r.to_xml()
    );
    // Unqualified children in <in>, a constraint in another unit: 40 TB is 40000 GB.
    let payload = format!(
        "<iodata xmlns='{NS_IODATA}' type='input'><in><constraints xmlns=''>{}{}</constraints></in></iodata>",
        constraint("storageCapacity", "60000 GB"),
        constraint("tierCountries", "japan"),
    );
    let r = command(
        &mut c,
        "s2",
        "constraint_catalog_resources",
        &format!("sessionid='{sid}' action='execute'"),
        &payload,
    )
    .await;
    // Largest capacity first: 1 PB, 1 PB, 500 TB, 200 TB, 200 TB, 100 TB, 80000 GB.
    assert_eq!(
        names(&r),
        ["cloud6", "cloud7", "cloud2", "cloud8", "cloud9", "cloud12", "cloud5"]
    );

    // Errors the XEPs name.
    let bad = command(
        &mut c,
        "e1",
        "constraint_catalog_resources",
        "",
        &input(&format!(
            "<constraints>{}</constraints>",
            constraint("colour", "blue")
        )),
    )
    .await;
    let x = error_of(&bad);
    assert!(x.contains("bad-request") && x.contains("colour"), "{x}");
    let bad = command(
        &mut c,
        "e2",
        "constraint_catalog_resources",
        "",
        &format!("<iodata xmlns='{NS_IODATA}' type='bogus'/>"),
    )
    .await;
    let x = error_of(&bad);
    assert!(
        x.contains("bad-request") && x.contains("bad-payload"),
        "{x}"
    );
    let bad = command(&mut c, "e3", "list_clouds", "action='dance'", "").await;
    assert!(error_of(&bad).contains("malformed-action"));
    let bad = command(&mut c, "e4", "list_clouds", "sessionid='nope'", "").await;
    assert!(error_of(&bad).contains("bad-sessionid"));
    let bad = command(&mut c, "e5", "no_such_command", "", "").await;
    assert!(error_of(&bad).contains("item-not-found"));
    // SPARQL updates are refused, and change nothing.
    let bad = command(
        &mut c,
        "e6",
        "sparql_query",
        "",
        &input("<query>DELETE WHERE { ?s ?p ?o }</query>"),
    )
    .await;
    let x = error_of(&bad);
    assert!(x.contains("not-allowed") && x.contains("read-only"), "{x}");
    assert_eq!(clouds(&mut c, "l1").await, 12);
    // Nobody publishes triples about another cloud.
    let foreign = std::fs::read_to_string(
        common::repo().join("scenarios/data/paper-catalog/cloud2.test.ttl"),
    )
    .unwrap();
    let bad = command(
        &mut c,
        "e7",
        "publish_resources",
        "",
        &input(&format!(
            "<description>{}</description>",
            intercloud_actors::element::escape(&foreign)
        )),
    )
    .await;
    let x = error_of(&bad);
    assert!(x.contains("forbidden") && x.contains("cloud2.test"), "{x}");
    assert_eq!(clouds(&mut c, "l2").await, 12);
    // Its own description is published, and survives a kill -9.
    let own = foreign
        .replace("cloud2.test", "exchange.test")
        .replace("\"cloud2\"", "\"exchange\"");
    let ok = command(
        &mut c,
        "p1",
        "publish_resources",
        "",
        &input(&format!(
            "<description>{}</description>",
            intercloud_actors::element::escape(&own)
        )),
    )
    .await;
    assert_eq!(
        cmd_of(&ok).get_attr("status"),
        Some("completed"),
        "{}",
        ok.to_xml()
    );
    assert_eq!(clouds(&mut c, "l3").await, 13);
    // A SELECT answers in the SPARQL results format.
    let r = command(&mut c, "q1", "sparql_query", "", &input("<query>PREFIX ic: &lt;urn:intercloud:ontology#&gt; SELECT ?n WHERE { ?c ic:cloudName ?n } ORDER BY ?n LIMIT 2</query>")).await;
    let x = r.to_xml();
    assert!(
        x.contains("sparql-results") && x.contains("<literal") && x.contains("cloud1"),
        "{x}"
    );
    drop(c);
    n.kill9();
    n.start();
    let mut c = n.login("user", "pw", None).await;
    assert_eq!(clouds(&mut c, "l4").await, 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_query_answers_executing_then_stops_at_its_time_limit() {
    let mut n = exchange(
        "cat-slow",
        &[
            ("query_time_ms = 10000", "query_time_ms = 3000"),
            ("async_after_secs = 5", "async_after_secs = 1"),
            ("max_running_queries = 4", "max_running_queries = 1"),
        ],
    );
    n.start();
    let mut c = n.login("user", "pw", None).await;
    // Tens of millions of rows, each probing the store: it cannot finish in 3 s.
    let heavy = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i FILTER NOT EXISTS { ?a ?h ?d } }";
    let t0 = std::time::Instant::now();
    let r = command(
        &mut c,
        "h1",
        "sparql_query",
        "",
        &input(&format!("<query>{heavy}</query>")),
    )
    .await;
    let cmd = cmd_of(&r);
    assert_eq!(cmd.get_attr("status"), Some("executing"), "{}", r.to_xml());
    let sid = cmd.get_attr("sessionid").unwrap().to_string();
    assert!(
        r.to_xml().contains("type='status'") || r.to_xml().contains("type=\"status\""),
        "{}",
        r.to_xml()
    );
    // While it runs: getStatus says so, and no second query fits (max_running_queries = 1).
    let s = command(
        &mut c,
        "h2",
        "sparql_query",
        &format!("sessionid='{sid}'"),
        &format!("<iodata xmlns='{NS_IODATA}' type='getStatus'/>"),
    )
    .await;
    assert_eq!(
        cmd_of(&s).get_attr("status"),
        Some("executing"),
        "{}",
        s.to_xml()
    );
    let busy = command(
        &mut c,
        "h3",
        "sparql_query",
        "",
        &input("<query>ASK { ?s ?p ?o }</query>"),
    )
    .await;
    assert!(error_of(&busy).contains("resource-constraint"));
    // The completion message arrives at the time limit, with the error in a note.
    let m = c
        .wait_for(T, |e| {
            e.name == "message" && e.get_child("command", NS_COMMANDS).is_some()
        })
        .await
        .unwrap();
    // Not before the limit (how late it may be is the wait's bound, T).
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    let x = m.to_xml();
    let cmd = m.get_child("command", NS_COMMANDS).unwrap();
    assert_eq!(cmd.get_attr("status"), Some("completed"), "{x}");
    let note = cmd
        .get_child("note", NS_COMMANDS)
        .unwrap_or_else(|| panic!("no note: {x}"));
    assert_eq!(note.get_attr("type"), Some("error"), "{x}");
    assert!(note.text_content().contains("time limit"), "{x}");
    let o = command(
        &mut c,
        "h4",
        "sparql_query",
        &format!("sessionid='{sid}'"),
        &format!("<iodata xmlns='{NS_IODATA}' type='getOutput'/>"),
    )
    .await;
    assert_eq!(
        cmd_of(&o).get_attr("status"),
        Some("completed"),
        "{}",
        o.to_xml()
    );
    // The evaluation itself stopped: the one query slot is free again.
    let mut ok = false;
    for i in 0..20 {
        let r = command(
            &mut c,
            &format!("a{i}"),
            "sparql_query",
            "",
            &input("<query>ASK { ?s ?p ?o }</query>"),
        )
        .await;
        if r.get_attr("type") == Some("result") {
            assert!(r.to_xml().contains(">true<"), "{}", r.to_xml());
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the cancelled query still holds its slot");
}

#[test]
fn slixmpp_drives_the_papers_request_with_its_xep_0050_plugin() {
    let mut n = exchange("cat-slix", &[]);
    n.start();
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(common::repo().join("tests/py/catalog_adhoc.py"))
        .args(["--port", &n.port.to_string(), "--domain", &n.domain])
        .arg("--fixture")
        .arg(common::repo().join("scenarios/data/paper_request.xml"))
        .output()
        .expect("/usr/bin/python3 must exist (apt-get install python3-slixmpp)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "slixmpp XEP-0050 flow failed:\n{stdout}\n{}\nnode log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        n.log()
    );
    assert!(
        stdout.contains("\"matching\": [\"cloud2\", \"cloud5\"]"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_in_another_domain_queries_and_publishes_over_s2s() {
    let ca = common::Ca::new("cat-s2s");
    let mut ex = exchange("cat-s2s-ex", &[]);
    let mut cloud = Node::init("cat-s2s-c", "cloud13.test", &[]);
    ex.federate(&cloud, Some(&ca), Some("external"));
    cloud.add_user("user", "pw");
    // cloud13 publishes its own description to the exchange by itself, over s2s.
    let own = std::fs::read_to_string(
        common::repo().join("scenarios/data/paper-catalog/cloud2.test.ttl"),
    )
    .unwrap()
    .replace("cloud2.test", "cloud13.test")
    .replace("\"cloud2\"", "\"cloud13\"");
    std::fs::write(cloud.dir.join("resources.ttl"), &own).unwrap();
    cloud.edit("resources = \"\"", "resources = \"resources.ttl\"");
    cloud.edit("publish_to = []", "publish_to = [\"exchange.test\"]");
    ex.start();
    cloud.start();
    let mut c = cloud.login("user", "pw", None).await;
    // The paper's request from a user of cloud13.test, over s2s.
    let paper =
        std::fs::read_to_string(common::repo().join("scenarios/data/paper_request.xml")).unwrap();
    let xml = paper
        .replace("from='user@cloudl.org'\n", "")
        .replace("to='service.intercloudexchg.com'", &format!("to='{SVC}'"));
    c.send_raw(&xml).await.unwrap();
    let r = c
        .wait_for(T, |e| {
            e.name == "iq" && e.get_attr("id") == Some("cloudl_idl")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", cloud.log(), ex.log()));
    assert_eq!(r.get_attr("from"), Some(SVC));
    let first = names(&r);
    assert!(
        first.ends_with(&["cloud2".to_string(), "cloud5".to_string()]),
        "{first:?}"
    );
    // cloud13's own publication arrived; it matches from then on.
    common::wait_for("cloud13 published", || {
        ex.log()
            .contains("resource description published domain=cloud13.test")
    });
    let xml = paper
        .replace("from='user@cloudl.org'\n", "")
        .replace("to='service.intercloudexchg.com'", &format!("to='{SVC}'"))
        .replace("cloudl_idl", "again");
    let r = iq(&mut c, "again", xml).await;
    assert!(
        cloud
            .log()
            .contains("resource description published exchange=exchange.test"),
        "{}",
        cloud.log()
    );
    // Same availability as cloud2: the tie goes by name.
    assert_eq!(names(&r), ["cloud13", "cloud2", "cloud5"]);
}

#[test]
fn the_cli_client_runs_the_papers_request() {
    let mut n = exchange("cat-cli", &[]);
    n.start();
    let out = common::cli(&[
        "client",
        "command",
        "--jid",
        "user@exchange.test",
        "--password",
        "pw",
        "--to",
        SVC,
        "--node",
        "constraint_catalog_resources",
        "--server",
        &format!("127.0.0.1:{}", n.port),
        "--cert",
        &n.dir.join("tls/cert.pem").display().to_string(),
        "--input",
        &common::repo()
            .join("scenarios/data/paper_request.xml")
            .display()
            .to_string(),
    ]);
    assert!(
        out.contains("status=\"completed\"") || out.contains("status='completed'"),
        "{out}"
    );
    let c2 = out.find("cloud2<").expect(&out);
    let c5 = out.find("cloud5<").expect(&out);
    assert!(c2 < c5, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_sessions_are_bounded_per_requester() {
    let mut node = exchange(
        "cat-sessions",
        &[(
            "max_command_sessions_per_jid = 32",
            "max_command_sessions_per_jid = 3",
        )],
    );
    node.add_user("other", "pw");
    node.start();
    let schemata = format!("<iodata xmlns='{NS_IODATA}' type='io-schemata-get'/>");
    let mut c = node.login("user", "pw", None).await;
    let mut sids = Vec::new();
    for i in 0..3 {
        let r = command(
            &mut c,
            &format!("s{i}"),
            "constraint_catalog_resources",
            "",
            &schemata,
        )
        .await;
        sids.push(cmd_of(&r).get_attr("sessionid").unwrap().to_string());
    }
    // A fourth session of the same requester is refused; its open ones go on.
    let r = command(&mut c, "s3", "constraint_catalog_resources", "", &schemata).await;
    assert!(
        error_of(&r).contains("<resource-constraint"),
        "{}",
        r.to_xml()
    );
    let r = command(
        &mut c,
        "in0",
        "constraint_catalog_resources",
        &format!("sessionid='{}' action='execute'", sids[0]),
        &format!(
            "<iodata xmlns='{NS_IODATA}' type='input'><in><constraints xmlns=''>{}</constraints></in></iodata>",
            constraint("storageCapacity", "60000 GB")
        ),
    )
    .await;
    assert_eq!(
        cmd_of(&r).get_attr("status"),
        Some("completed"),
        "{}",
        r.to_xml()
    );
    // Another requester is served.
    let mut o = node.login("other", "pw", None).await;
    let r = command(&mut o, "o1", "constraint_catalog_resources", "", &schemata).await;
    assert_eq!(
        cmd_of(&r).get_attr("status"),
        Some("executing"),
        "{}",
        r.to_xml()
    );
}

/// The node's query worker processes: (pid, RSS in KiB).
fn workers_of(node: u32) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid: Option<u32> = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok());
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == Some(node) && String::from_utf8_lossy(&cmd).contains("sparql-worker") {
            out.push((pid, common::rss_kib(pid)));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_multiplies_inline_data_is_stopped_in_time_and_memory() {
    let mut n = exchange(
        "cat-values",
        &[
            ("query_time_ms = 10000", "query_time_ms = 3000"),
            ("query_memory_mb = 256", "query_memory_mb = 128"),
        ],
    );
    n.start();
    let mut c = n.login("user", "pw", None).await;
    // The hostile-input campaign's query: 200^3 rows made and sorted before
    // the first one, without reading the store (so without a time check).
    let values = |v: &str| {
        let xs: Vec<String> = (0..200).map(|i| i.to_string()).collect();
        format!("VALUES ?{v} {{ {} }}", xs.join(" "))
    };
    let q = format!(
        "SELECT ?a ?b ?c WHERE {{ {} {} {} }} ORDER BY DESC(?a) DESC(?b) DESC(?c) LIMIT 1",
        values("a"),
        values("b"),
        values("c")
    );
    let before = common::rss_kib(n.pid());
    // Four at once (max_running_queries): each ends in an error.
    for i in 0..4 {
        c.send_raw(&format!(
            "<iq type='set' to='{SVC}' id='v{i}'><command xmlns='{NS_COMMANDS}' node='sparql_query'>{}</command></iq>",
            input(&format!("<query>{q}</query>"))
        ))
        .await
        .unwrap();
    }
    let mut notes = Vec::new();
    while notes.len() < 4 {
        let e = c
            .wait_for(Duration::from_secs(60), |e| {
                e.get_child("command", NS_COMMANDS).is_some() || e.get_attr("type") == Some("error")
            })
            .await
            .unwrap();
        let x = e.to_xml();
        let Some(cmd) = e.get_child("command", NS_COMMANDS) else {
            panic!("{x}");
        };
        if cmd.get_attr("status") == Some("executing") {
            continue;
        }
        let note = cmd
            .get_child("note", NS_COMMANDS)
            .unwrap_or_else(|| panic!("an answer to a query that cannot finish: {x}"));
        assert_eq!(note.get_attr("type"), Some("error"), "{x}");
        let text = note.text_content();
        assert!(
            text.contains("time limit") || text.contains("memory limit"),
            "{x}"
        );
        notes.push(text);
    }
    // The work stopped: no worker is left holding what the queries made,
    // and the node itself did not do it.
    for (pid, rss) in workers_of(n.pid()) {
        assert!(rss < 128 * 1024, "worker {pid} still holds {rss} KiB");
    }
    let grown = common::rss_kib(n.pid()).saturating_sub(before);
    eprintln!("notes: {notes:?}; node grew {grown} KiB");
    assert!(grown < 100 * 1024, "the node grew by {grown} KiB");
    // And the service answers the next query.
    let r = command(
        &mut c,
        "after",
        "sparql_query",
        "",
        &input("<query>ASK { ?s ?p ?o }</query>"),
    )
    .await;
    assert!(r.to_xml().contains(">true<"), "{}", r.to_xml());
    let log = n.log();
    assert!(
        log.contains("SPARQL query past its time limit: its worker was killed")
            || log.contains("SPARQL query worker ended (past its memory limit)"),
        "{log}"
    );
}
