//! The CLI's ad-hoc command client: wraps an input into an XEP-0050 request, sends it from a logged-in account, and follows `executing` to completion.

use crate::xmpp::client::{Client, ClientError};
use intercloud_actors::adhoc::NS_COMMANDS;
use intercloud_actors::element::Element;
use intercloud_actors::iodata::NS_IODATA;
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::time::Duration;

/// The id of the request this client sends.
const ID: &str = "cli-command-1";

/// The name of the first element in an XML text (after a declaration or comments).
fn root_name(text: &str) -> Option<&str> {
    let mut rest = text;
    loop {
        let i = rest.find('<')?;
        rest = &rest[i + 1..];
        if rest.starts_with('?') || rest.starts_with('!') {
            continue;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        return Some(&rest[..end]);
    }
}

/// Strips `<?xml …?>` so the text can be embedded.
fn body(text: &str) -> &str {
    let t = text.trim_start();
    match t
        .strip_prefix("<?xml")
        .and_then(|r| r.find("?>").map(|i| &r[i + 2..]))
    {
        Some(r) => r,
        None => t,
    }
}

/// The `<iq>` to send for `input` (whole iq, command, iodata, or the inside of `<in>`).
pub fn request(to: &str, node: &str, input: &str) -> String {
    let to_attr = intercloud_actors::element::escape(to);
    let node_attr = intercloud_actors::element::escape(node);
    let inner = body(input);
    let command = |payload: &str| {
        format!("<command xmlns='{NS_COMMANDS}' node='{node_attr}' action='execute'>{payload}</command>")
    };
    let iq = |cmd: String| format!("<iq type='set' to='{to_attr}' id='{ID}'>{cmd}</iq>");
    match root_name(inner) {
        Some("iq") => {
            // Our account and server decide `from`; the id we wait for is ours.
            let mut el = inner.to_string();
            if let (Some(a), Some(b)) = (el.find("<iq"), el.find('>')) {
                let head: String = el[a..b].to_string();
                let mut h = head.clone();
                for attr in ["from", "to", "id"] {
                    h = strip_attr(&h, attr);
                }
                el = el.replacen(&head, &format!("{h} to='{to_attr}' id='{ID}'"), 1);
            }
            el
        }
        Some("command") => iq(inner.to_string()),
        Some("iodata") => iq(command(inner)),
        None if inner.trim().is_empty() => iq(command("")),
        _ => iq(command(&format!(
            "<iodata xmlns='{NS_IODATA}' type='input'><in>{inner}</in></iodata>"
        ))),
    }
}

/// Removes one attribute (quoted either way, whitespace allowed around `=`) from a start tag.
fn strip_attr(tag: &str, name: &str) -> String {
    let bytes = tag.as_bytes();
    let mut i = 0;
    while let Some(pos) = tag[i..].find(name) {
        let start = i + pos;
        let before_ok = start > 0 && bytes[start - 1].is_ascii_whitespace();
        let mut j = start + name.len();
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if before_ok && j < bytes.len() && bytes[j] == b'=' {
            j += 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < bytes.len() && (bytes[j] == b'\'' || bytes[j] == b'"') {
                let q = bytes[j];
                if let Some(k) = tag[j + 1..].find(q as char) {
                    return format!("{}{}", &tag[..start], &tag[j + 1 + k + 1..]);
                }
            }
        }
        i = start + name.len();
    }
    tag.to_string()
}

/// Logs in, sends `xml`, and returns the answer (and, after `executing`, the completion message).
pub async fn run(
    net: &crate::net::Net,
    server: SocketAddr,
    jid: &str,
    password: &str,
    pinned: CertificateDer<'static>,
    xml: &str,
) -> Result<Vec<Element>, ClientError> {
    let (user, domain) = jid
        .split_once('@')
        .ok_or_else(|| ClientError::Unexpected(format!("{jid}: not user@domain")))?;
    let domain = domain.split('/').next().unwrap_or(domain);
    let mut c = Client::login_on(net, server, domain, pinned, user, password, None).await?;
    c.send_raw(xml).await?;
    let t = Duration::from_secs(600);
    let r = c
        .wait_for(t, |e| e.name == "iq" && e.get_attr("id") == Some(ID))
        .await?;
    let executing = r
        .get_child("command", NS_COMMANDS)
        .map(|c| {
            c.get_attr("status") == Some("executing")
                && c.get_child("iodata", NS_IODATA)
                    .map(|io| io.get_attr("type") == Some("status"))
                    .unwrap_or(false)
        })
        .unwrap_or(false);
    let mut out = vec![r];
    if executing {
        let done = c
            .wait_for(t, |e| {
                e.name == "message" && e.get_child("command", NS_COMMANDS).is_some()
            })
            .await?;
        out.push(done);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_every_kind_of_input() {
        let paper =
            "<iq type='set'\nfrom='user@cloudl.org'\nto='service.x'\nid='a'>\n<command/></iq>";
        let r = request("service.ex.test", "n", paper);
        assert!(
            r.starts_with("<iq type='set'  to='service.ex.test' id='cli-command-1'>")
                || r.contains("to='service.ex.test' id='cli-command-1'"),
            "{r}"
        );
        assert!(!r.contains("cloudl"), "{r}");
        let r = request("s", "n", "<constraints/>");
        assert!(
            r.contains("<iodata") && r.contains("<in><constraints/></in>"),
            "{r}"
        );
        let r = request(
            "s",
            "n",
            "<?xml version='1.0'?><iodata xmlns='urn:xmpp:tmp:io-data' type='input'/>",
        );
        assert!(r.contains("action='execute'><iodata"), "{r}");
        assert!(request("s", "list_clouds", "")
            .contains("node='list_clouds' action='execute'></command>"));
    }
}
