//! XEP-0050 Ad-Hoc Commands: actions, command responses, notes, the errors the XEP names, and disco for command nodes.

use crate::element::Element;
use crate::stanza::{error_reply, iq_result, NS_DISCO_INFO, NS_DISCO_ITEMS};

pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";

/// What the requester asks a command to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Execute,
    Cancel,
    Complete,
    Next,
    Prev,
}

/// An `action` the XEP does not define (answered with `malformed-action`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown action {0:?}")]
pub struct MalformedAction(pub String);

/// The `action` attribute (absent means execute).
pub fn action(cmd: &Element) -> Result<Action, MalformedAction> {
    Ok(match cmd.get_attr("action") {
        None | Some("execute") => Action::Execute,
        Some("cancel") => Action::Cancel,
        Some("complete") => Action::Complete,
        Some("next") => Action::Next,
        Some("prev") => Action::Prev,
        Some(other) => return Err(MalformedAction(other.to_string())),
    })
}

/// A stanza error with the XEP's application condition (`malformed-action`,
/// `bad-action`, `bad-locale`, `bad-payload`, `bad-sessionid`, `session-expired`).
pub fn error(iq: &Element, condition: &str, specific: Option<&str>, text: Option<&str>) -> Element {
    let mut e = error_reply(iq, condition, text);
    if let Some(s) = specific {
        if let Some(err) = e.get_child_mut("error", &iq.ns) {
            err.children
                .push(crate::element::Node::Element(Element::new(s, NS_COMMANDS)));
        }
    }
    e
}

/// `<note type='info|warn|error'>`.
pub fn note(kind: &str, text: &str) -> Element {
    Element::new("note", NS_COMMANDS)
        .attr("type", kind)
        .text(text)
}

/// The iq result carrying `<command node sessionid status>` and `payload`.
pub fn response(
    iq: &Element,
    node: &str,
    sessionid: &str,
    status: &str,
    payload: Vec<Element>,
) -> Element {
    let mut cmd = Element::new("command", NS_COMMANDS)
        .attr("node", node)
        .attr("sessionid", sessionid)
        .attr("status", status);
    if status == "executing" {
        cmd = cmd.child(
            Element::new("actions", NS_COMMANDS)
                .attr("execute", "complete")
                .child(Element::new("complete", NS_COMMANDS)),
        );
    }
    for p in payload {
        cmd = cmd.child(p);
    }
    iq_result(iq).child(cmd)
}

/// disco#items on the commands node: one item per command.
pub fn items(jid: &str, commands: &[(&str, &str)]) -> Element {
    let mut q = Element::new("query", NS_DISCO_ITEMS).attr("node", NS_COMMANDS);
    for (node, name) in commands {
        q = q.child(
            Element::new("item", NS_DISCO_ITEMS)
                .attr("jid", jid)
                .attr("node", *node)
                .attr("name", *name),
        );
    }
    q
}

/// disco#info on a command node (XEP-0050 §6.2.1), with extra features.
pub fn node_info(node: &str, name: &str, features: &[&str]) -> Element {
    let mut q = Element::new("query", NS_DISCO_INFO)
        .attr("node", node)
        .child(
            Element::new("identity", NS_DISCO_INFO)
                .attr("category", "automation")
                .attr("type", "command-node")
                .attr("name", name),
        )
        .child(Element::new("feature", NS_DISCO_INFO).attr("var", NS_COMMANDS));
    for f in features {
        q = q.child(Element::new("feature", NS_DISCO_INFO).attr("var", *f));
    }
    q
}
