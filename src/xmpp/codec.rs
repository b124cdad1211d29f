//! Incremental XMPP stream codec on quick-xml: bytes in any chunking -> stream events and stanza trees.
//!
//! The decoder is sans-IO: callers `feed` whatever the socket gave them and
//! pull `Event`s. It enforces RFC 6120 §11 restricted XML (no DTD, entity
//! declarations, comments or processing instructions), a maximum stanza
//! size and a maximum nesting depth.

use intercloud_actors::element::{escape, Attr, Element, Node, NS_XML};
use quick_xml::events::{BytesStart, Event as XEvent};
use quick_xml::Reader;

pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";

/// Limits the decoder enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest stanza, in bytes of its serialized form as received.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza (the stanza itself is depth 1).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 64,
        }
    }
}

/// The opening `<stream:stream>` of a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamHeader {
    /// The default namespace (`jabber:client` or `jabber:server`).
    pub default_ns: String,
    pub attrs: Vec<Attr>,
    /// Extra prefixed namespace declarations (e.g. `xmlns:db`).
    pub prefixes: Vec<(String, String)>,
}

impl StreamHeader {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_none() && a.name == name)
            .map(|a| a.value.as_str())
    }
}

/// What the decoder yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    StreamStart(StreamHeader),
    Stanza(Element),
    StreamEnd,
}

/// A stream-level failure, named after the RFC 6120 §4.9.3 condition it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("not well-formed: {0}")]
    NotWellFormed(String),
    #[error("restricted XML: {0}")]
    RestrictedXml(String),
    #[error("policy violation: {0}")]
    PolicyViolation(String),
    #[error("invalid namespace: {0}")]
    InvalidNamespace(String),
}

impl CodecError {
    /// The RFC 6120 stream error condition element name.
    pub fn condition(&self) -> &'static str {
        match self {
            CodecError::NotWellFormed(_) => "not-well-formed",
            CodecError::RestrictedXml(_) => "restricted-xml",
            CodecError::PolicyViolation(_) => "policy-violation",
            CodecError::InvalidNamespace(_) => "invalid-namespace",
        }
    }
}

type Scope = Vec<(Option<String>, String)>;

/// The incremental stream decoder.
pub struct Decoder {
    limits: Limits,
    buf: Vec<u8>,
    pos: usize,
    started: bool,
    ended: bool,
    scopes: Vec<Scope>,
    /// Elements under construction (index 0 is the stanza).
    stack: Vec<Element>,
    /// Raw names of open elements in the current stanza, for end-tag checks.
    names: Vec<Vec<u8>>,
    stanza_bytes: usize,
    failed: Option<CodecError>,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            buf: Vec::new(),
            pos: 0,
            started: false,
            ended: false,
            scopes: Vec::new(),
            stack: Vec::new(),
            names: Vec::new(),
            stanza_bytes: 0,
            failed: None,
        }
    }

    /// Forgets everything: used for the stream restarts after STARTTLS and SASL.
    pub fn reset(&mut self) {
        *self = Decoder::new(self.limits);
    }
}

/// Parses one serialized stanza (e.g. from offline storage) as if it came
/// on a stream of `stream_ns`, under the same rules and default limits.
pub fn parse_stanza(xml: &str, stream_ns: &str) -> Option<Element> {
    let mut d = Decoder::new(Limits {
        max_stanza_bytes: xml.len().max(1),
        ..Limits::default()
    });
    d.feed(
        format!(
            "<stream:stream xmlns='{stream_ns}' xmlns:stream='http://etherx.jabber.org/streams'>"
        )
        .as_bytes(),
    );
    d.feed(xml.as_bytes());
    loop {
        match d.next_event() {
            Ok(Some(Event::Stanza(e))) => return Some(e),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

impl Decoder {
    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            // After a large stanza, do not keep its buffer for an idle stream.
            if self.buf.capacity() > 64 * 1024 {
                self.buf.shrink_to(4096);
            }
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet consumed as events.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete event, `Ok(None)` when more input is needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.next_inner();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        if matches!(r, Ok(None)) && self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        r
    }

    fn next_inner(&mut self) -> Result<Option<Event>, CodecError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            let input = &self.buf[self.pos..];
            if input.is_empty() {
                return Ok(None);
            }
            // Restricted XML is refused before quick-xml is asked to make sense of it.
            if input[0] == b'<' && input.len() >= 2 {
                if input[1] == b'!' {
                    let rest = &input[2..];
                    let cdata = b"[CDATA[";
                    let n = rest.len().min(cdata.len());
                    if rest[..n] != cdata[..n] {
                        return Err(CodecError::RestrictedXml(
                            "DTDs, entity declarations and comments are not allowed".into(),
                        ));
                    }
                    if n < cdata.len() {
                        // Too short to tell yet.
                        self.check_size(input.len())?;
                        return Ok(None);
                    }
                    if self.stack.is_empty() {
                        return Err(CodecError::NotWellFormed(
                            "character data outside a stanza".into(),
                        ));
                    }
                } else if input[1] == b'?' {
                    let decl = b"<?xml ";
                    let n = input.len().min(decl.len());
                    if self.started || input[..n] != decl[..n] {
                        return Err(CodecError::RestrictedXml(
                            "processing instructions are not allowed".into(),
                        ));
                    }
                }
            }
            let mut reader = Reader::from_reader(input);
            {
                let c = reader.config_mut();
                c.check_end_names = false;
                c.expand_empty_elements = false;
                c.trim_text_start = false;
                c.trim_text_end = false;
                c.allow_unmatched_ends = true;
            }
            let ev = reader.read_event();
            let consumed = reader.buffer_position() as usize;
            let complete_len = input.len();
            let ev = match ev {
                Ok(ev) => ev,
                Err(quick_xml::Error::Syntax(_)) => {
                    // Input ended inside markup: wait for more, within the limit.
                    self.check_size(complete_len)?;
                    return Ok(None);
                }
                Err(e) => return Err(CodecError::NotWellFormed(e.to_string())),
            };
            match ev {
                XEvent::Eof => return Ok(None),
                XEvent::Text(t) => {
                    let raw: &[u8] = &t;
                    let at_end = consumed >= complete_len;
                    if self.stack.is_empty() {
                        if raw.iter().all(|b| b.is_ascii_whitespace()) {
                            // Whitespace between stanzas (keepalives) is consumed as it comes.
                            self.pos += consumed;
                            continue;
                        }
                        return Err(CodecError::NotWellFormed(
                            "character data outside a stanza".into(),
                        ));
                    }
                    if at_end {
                        if let Some(b) = raw
                            .iter()
                            .find(|b| **b < 0x20 && !matches!(**b, b'\t' | b'\n' | b'\r'))
                        {
                            return Err(CodecError::NotWellFormed(format!(
                                "character U+{b:04X} is not allowed in XML"
                            )));
                        }
                        self.check_size(complete_len)?;
                        return Ok(None);
                    }
                    let text = t.unescape().map_err(|e| {
                        CodecError::NotWellFormed(format!("bad character data: {e}"))
                    })?;
                    let text = text.into_owned();
                    check_chars(&text)?;
                    self.account(consumed)?;
                    self.pos += consumed;
                    push_text(self.stack.last_mut().expect("open element"), text);
                }
                XEvent::CData(c) => {
                    let text = std::str::from_utf8(&c)
                        .map_err(|_| CodecError::NotWellFormed("invalid UTF-8".into()))?
                        .to_string();
                    check_chars(&text)?;
                    self.account(consumed)?;
                    self.pos += consumed;
                    push_text(self.stack.last_mut().expect("open element"), text);
                }
                XEvent::Decl(_) => {
                    self.pos += consumed;
                }
                XEvent::PI(_) | XEvent::DocType(_) | XEvent::Comment(_) => {
                    return Err(CodecError::RestrictedXml(
                        "DTDs, comments and processing instructions are not allowed".into(),
                    ))
                }
                XEvent::Start(s) => {
                    let s = s.into_owned();
                    self.pos += consumed;
                    if let Some(ev) = self.start(&s, false, consumed)? {
                        return Ok(Some(ev));
                    }
                }
                XEvent::Empty(s) => {
                    let s = s.into_owned();
                    self.pos += consumed;
                    if let Some(ev) = self.start(&s, true, consumed)? {
                        return Ok(Some(ev));
                    }
                }
                XEvent::End(e) => {
                    let name = e.name().as_ref().to_vec();
                    self.pos += consumed;
                    if let Some(ev) = self.end(&name, consumed)? {
                        return Ok(Some(ev));
                    }
                }
            }
        }
    }

    fn check_size(&self, pending: usize) -> Result<(), CodecError> {
        if self.stanza_bytes + pending > self.limits.max_stanza_bytes {
            return Err(CodecError::PolicyViolation(format!(
                "stanza larger than {} bytes",
                self.limits.max_stanza_bytes
            )));
        }
        Ok(())
    }

    fn account(&mut self, n: usize) -> Result<(), CodecError> {
        self.stanza_bytes += n;
        self.check_size(0)
    }

    fn resolve(&self, prefix: Option<&str>) -> Option<&str> {
        if prefix == Some("xml") {
            return Some(NS_XML);
        }
        for scope in self.scopes.iter().rev() {
            for (p, ns) in scope.iter().rev() {
                if p.as_deref() == prefix {
                    return Some(ns);
                }
            }
        }
        None
    }

    fn start(
        &mut self,
        s: &BytesStart<'_>,
        empty: bool,
        consumed: usize,
    ) -> Result<Option<Event>, CodecError> {
        if !self.started {
            // The stream header is not a stanza and does not count towards its size.
        } else {
            if self.stack.is_empty() {
                self.stanza_bytes = 0;
            }
            self.account(consumed)?;
            if self.stack.len() >= self.limits.max_depth {
                return Err(CodecError::PolicyViolation(format!(
                    "elements nested deeper than {}",
                    self.limits.max_depth
                )));
            }
        }
        let qname = utf8(s.name().as_ref())?.to_string();
        let (prefix, local) = split_qname(&qname)?;
        let mut scope: Scope = Vec::new();
        let mut plain: Vec<(String, String)> = Vec::new();
        for a in s.attributes() {
            let a = a.map_err(|e| CodecError::NotWellFormed(format!("bad attribute: {e}")))?;
            let key = utf8(a.key.as_ref())?.to_string();
            let value = a
                .unescape_value()
                .map_err(|e| CodecError::NotWellFormed(format!("bad attribute value: {e}")))?
                .into_owned();
            check_chars(&value)?;
            if key == "xmlns" {
                scope.push((None, value));
            } else if let Some(p) = key.strip_prefix("xmlns:") {
                if value.is_empty() {
                    return Err(CodecError::NotWellFormed("empty prefix binding".into()));
                }
                scope.push((Some(p.to_string()), value));
            } else {
                plain.push((key, value));
            }
        }
        self.scopes.push(scope);
        let ns = match self.resolve(prefix) {
            Some(ns) => ns.to_string(),
            None if prefix.is_none() => String::new(),
            None => {
                return Err(CodecError::NotWellFormed(format!(
                    "undeclared prefix in <{qname}>"
                )))
            }
        };
        let mut attrs = Vec::with_capacity(plain.len());
        for (k, v) in plain {
            let (p, l) = split_qname(&k)?;
            let ans = match p {
                None => None,
                Some(p) => Some(
                    self.resolve(Some(p))
                        .ok_or_else(|| {
                            CodecError::NotWellFormed(format!("undeclared prefix in {k}"))
                        })?
                        .to_string(),
                ),
            };
            attrs.push(Attr {
                ns: ans,
                name: l.to_string(),
                value: v,
            });
        }

        if !self.started {
            if local != "stream" || ns != NS_STREAM {
                return Err(CodecError::InvalidNamespace(format!(
                    "stream root must be <stream xmlns='{NS_STREAM}'>"
                )));
            }
            if empty {
                return Err(CodecError::NotWellFormed("empty stream element".into()));
            }
            self.started = true;
            let own = self.scopes.last().cloned().unwrap_or_default();
            let default_ns = own
                .iter()
                .find(|(p, _)| p.is_none())
                .map(|(_, n)| n.clone())
                .unwrap_or_default();
            let prefixes = own
                .into_iter()
                .filter_map(|(p, n)| p.map(|p| (p, n)))
                .collect();
            return Ok(Some(Event::StreamStart(StreamHeader {
                default_ns,
                attrs,
                prefixes,
            })));
        }
        let el = Element {
            name: local.to_string(),
            ns,
            attrs,
            children: Vec::new(),
        };
        if empty {
            self.scopes.pop();
            return Ok(self.close(el));
        }
        self.stack.push(el);
        self.names.push(qname.into_bytes());
        Ok(None)
    }

    fn end(&mut self, name: &[u8], consumed: usize) -> Result<Option<Event>, CodecError> {
        if self.stack.is_empty() {
            // The closing </stream:stream>.
            let qname = utf8(name)?;
            let (p, l) = split_qname(qname)?;
            if l == "stream" && self.resolve(p) == Some(NS_STREAM) {
                self.ended = true;
                return Ok(Some(Event::StreamEnd));
            }
            return Err(CodecError::NotWellFormed(format!("unexpected </{qname}>")));
        }
        self.account(consumed)?;
        let open = self.names.pop().expect("open element name");
        if open != name {
            return Err(CodecError::NotWellFormed(format!(
                "</{}> closes <{}>",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(&open)
            )));
        }
        self.scopes.pop();
        let el = self.stack.pop().expect("open element");
        Ok(self.close(el))
    }

    fn close(&mut self, el: Element) -> Option<Event> {
        match self.stack.last_mut() {
            Some(parent) => {
                parent.children.push(Node::Element(el));
                None
            }
            None => {
                self.stanza_bytes = 0;
                Some(Event::Stanza(el))
            }
        }
    }
}

fn push_text(el: &mut Element, text: String) {
    if let Some(Node::Text(t)) = el.children.last_mut() {
        t.push_str(&text);
    } else {
        el.children.push(Node::Text(text));
    }
}

fn utf8(b: &[u8]) -> Result<&str, CodecError> {
    std::str::from_utf8(b).map_err(|_| CodecError::NotWellFormed("invalid UTF-8".into()))
}

fn split_qname(q: &str) -> Result<(Option<&str>, &str), CodecError> {
    let bad = || CodecError::NotWellFormed(format!("bad name {q:?}"));
    let (p, l) = match q.split_once(':') {
        None => (None, q),
        Some((p, l)) => (Some(p), l),
    };
    if !is_ncname(l) || p.map(|p| !is_ncname(p)).unwrap_or(false) {
        return Err(bad());
    }
    Ok((p, l))
}

/// An XML NCName (no colon): a letter or `_` first, then name characters.
fn is_ncname(s: &str) -> bool {
    let mut c = s.chars();
    match c.next() {
        Some(f) if f.is_alphabetic() || f == '_' => {}
        _ => return false,
    }
    c.all(|ch| {
        ch.is_alphanumeric() || matches!(ch, '-' | '.' | '_' | '\u{b7}') || (ch as u32) > 0x7f
    })
}

/// Refuses characters XML 1.0 does not allow (control characters but TAB, LF, CR).
fn check_chars(s: &str) -> Result<(), CodecError> {
    match s.chars().find(|c| {
        (*c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(*c, '\u{fffe}' | '\u{ffff}')
    }) {
        Some(c) => Err(CodecError::NotWellFormed(format!(
            "character U+{:04X} is not allowed in XML",
            c as u32
        ))),
        None => Ok(()),
    }
}

/// The opening tag of a stream we send.
pub fn stream_header(
    default_ns: &str,
    from: Option<&str>,
    to: Option<&str>,
    id: Option<&str>,
    extra_ns: &[(&str, &str)],
) -> String {
    let mut s = String::from("<?xml version='1.0'?><stream:stream xmlns='");
    s.push_str(&escape(default_ns));
    s.push_str("' xmlns:stream='");
    s.push_str(NS_STREAM);
    s.push('\'');
    for (p, ns) in extra_ns {
        s.push_str(&format!(" xmlns:{p}='{}'", escape(ns)));
    }
    if let Some(f) = from {
        s.push_str(&format!(" from='{}'", escape(f)));
    }
    if let Some(t) = to {
        s.push_str(&format!(" to='{}'", escape(t)));
    }
    if let Some(i) = id {
        s.push_str(&format!(" id='{}'", escape(i)));
    }
    s.push_str(" version='1.0' xml:lang='en'>");
    s
}

/// A `<stream:error>` carrying `condition`, followed by the stream close.
pub fn stream_error(condition: &str, text: Option<&str>) -> String {
    let mut s = format!("<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    if let Some(t) = text {
        s.push_str(&format!(
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{}</text>",
            escape(t)
        ));
    }
    s.push_str("</stream:error></stream:stream>");
    s
}

/// Serialises a `<stream:features>` element whose children are `features`.
pub fn features(features: &[Element]) -> String {
    let mut s = String::from("<stream:features>");
    for f in features {
        f.write_to(&mut s, "");
    }
    s.push_str("</stream:features>");
    s
}

#[cfg(test)]
mod tests;
