//! XEP-0244 IO Data: reading `<iodata type='input'>` leniently, and building output, status and schemata payloads.

use crate::element::Element;

pub const NS_IODATA: &str = "urn:xmpp:tmp:io-data";
const NS_XSD: &str = "http://www.w3.org/2001/XMLSchema";

/// The kinds of request IO Data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    SchemataGet,
    Input,
    GetStatus,
    GetOutput,
}

/// An `<iodata>` whose type the XEP does not define for requests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("iodata type {0:?} is not a request")]
pub struct NotARequest(pub Option<String>);

/// The command's `<iodata>` child and its type; None when there is none,
/// Err when it is there with a type the XEP does not define for requests.
pub fn request(cmd: &Element) -> Result<Option<(Request, &Element)>, NotARequest> {
    let Some(io) = cmd.get_child("iodata", NS_IODATA) else {
        return Ok(None);
    };
    let t = match io.get_attr("type") {
        Some("io-schemata-get") => Request::SchemataGet,
        Some("input") => Request::Input,
        Some("getStatus") => Request::GetStatus,
        Some("getOutput") => Request::GetOutput,
        other => return Err(NotARequest(other.map(str::to_string))),
    };
    Ok(Some((t, io)))
}

/// The `<in>` element of an input (in any namespace: clients put it unqualified too).
pub fn input(io: &Element) -> Option<&Element> {
    io.elements().find(|e| e.name == "in")
}

/// `<iodata type='output'><out>…</out></iodata>`.
pub fn output(children: Vec<Element>) -> Element {
    let mut out = Element::new("out", NS_IODATA);
    for c in children {
        out = out.child(c);
    }
    Element::new("iodata", NS_IODATA)
        .attr("type", "output")
        .child(out)
}

/// `<iodata type='status'>` for a job still running.
pub fn status(elapsed_secs: u64, information: &str) -> Element {
    Element::new("iodata", NS_IODATA)
        .attr("type", "status")
        .child(
            Element::new("status", NS_IODATA)
                .child(Element::new("elapsed", NS_IODATA).text(elapsed_secs.to_string()))
                .child(Element::new("information", NS_IODATA).text(information)),
        )
}

/// `<iodata type='io-schemata-result'>` with the input and output schemas.
pub fn schemata(input: Element, output: Element) -> Element {
    Element::new("iodata", NS_IODATA)
        .attr("type", "io-schemata-result")
        .child(Element::new("in", NS_IODATA).child(input))
        .child(Element::new("out", NS_IODATA).child(output))
}

/// A small XSD: one root element in `target_ns` whose children are
/// (name, XSD type, repeatable) leaves, or nested (name, children) sequences.
pub enum Xsd {
    Leaf(&'static str, &'static str, bool),
    Seq(&'static str, bool, Vec<Xsd>),
}

fn xsd_element(x: &Xsd) -> Element {
    let occurs = |e: Element, many: bool| {
        if many {
            e.attr("minOccurs", "0").attr("maxOccurs", "unbounded")
        } else {
            e
        }
    };
    match x {
        Xsd::Leaf(name, ty, many) => occurs(
            Element::new("element", NS_XSD)
                .attr("name", *name)
                .attr("type", *ty),
            *many,
        ),
        Xsd::Seq(name, many, children) => {
            let mut seq = Element::new("sequence", NS_XSD);
            for c in children {
                seq = seq.child(xsd_element(c));
            }
            occurs(
                Element::new("element", NS_XSD)
                    .attr("name", *name)
                    .child(Element::new("complexType", NS_XSD).child(seq)),
                *many,
            )
        }
    }
}

/// `<schema>` declaring `root` in `target_ns` (types resolve against the XSD namespace).
pub fn schema(target_ns: &str, root: Xsd) -> Element {
    Element::new("schema", NS_XSD)
        .attr("targetNamespace", target_ns)
        .attr("elementFormDefault", "qualified")
        .child(xsd_element(&root))
}
