//! What the catalog commands return besides forms: SPARQL results in the SPARQL Query Results XML Format, and the XEP-0244 io-schemata of each command.

use super::*;

/// SPARQL Query Results XML Format.
pub(super) fn sparql_results(a: &Answer) -> Element {
    let mut root = Element::new("sparql", NS_SPARQL_RESULTS);
    match a {
        Answer::Boolean(b) => {
            root = root
                .child(Element::new("head", NS_SPARQL_RESULTS))
                .child(Element::new("boolean", NS_SPARQL_RESULTS).text(b.to_string()));
        }
        Answer::Rows {
            vars,
            rows,
            truncated,
        } => {
            let mut head = Element::new("head", NS_SPARQL_RESULTS);
            for v in vars {
                head =
                    head.child(Element::new("variable", NS_SPARQL_RESULTS).attr("name", v.clone()));
            }
            let mut results = Element::new("results", NS_SPARQL_RESULTS);
            if *truncated {
                results = results.attr("truncated", "true");
            }
            for row in rows {
                let mut r = Element::new("result", NS_SPARQL_RESULTS);
                for (v, val) in vars.iter().zip(row) {
                    if let Some(val) = val {
                        let (kind, text) = match val {
                            crate::catalog::Value::Iri(s) => ("uri", s),
                            crate::catalog::Value::Blank(s) => ("bnode", s),
                            crate::catalog::Value::Literal(s) => ("literal", s),
                        };
                        r = r.child(
                            Element::new("binding", NS_SPARQL_RESULTS)
                                .attr("name", v.clone())
                                .child(Element::new(kind, NS_SPARQL_RESULTS).text(text.clone())),
                        );
                    }
                }
                results = results.child(r);
            }
            root = root.child(head).child(results);
        }
    }
    root
}

/// The XSDs of a command's input and output (XEP-0244 io-schemata-result).
pub(super) fn schemata(node: &str) -> Element {
    let (input, output) = match node {
        CONSTRAINTS => (
            iodata::schema(
                NS_RES,
                Xsd::Seq(
                    "constraints",
                    false,
                    vec![Xsd::Seq(
                        "constraint",
                        true,
                        vec![
                            Xsd::Leaf("attribute", "string", false),
                            Xsd::Leaf("value", "string", false),
                        ],
                    )],
                ),
            ),
            iodata::schema(
                NS_RES,
                Xsd::Seq(
                    "matchingClouds",
                    false,
                    vec![Xsd::Leaf("cloudName", "string", true)],
                ),
            ),
        ),
        SPARQL => (
            iodata::schema(NS_IODATA, Xsd::Leaf("query", "string", false)),
            iodata::schema(NS_SPARQL_RESULTS, Xsd::Leaf("sparql", "anyType", false)),
        ),
        PUBLISH => (
            iodata::schema(NS_IODATA, Xsd::Leaf("description", "string", false)),
            iodata::schema(NS_RES, Xsd::Leaf("published", "anyType", false)),
        ),
        _ => (
            iodata::schema(NS_IODATA, Xsd::Seq("in", false, vec![])),
            iodata::schema(
                NS_RES,
                Xsd::Seq("clouds", false, vec![Xsd::Leaf("cloud", "anyType", true)]),
            ),
        ),
    };
    iodata::schemata(input, output)
}
