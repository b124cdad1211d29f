//! XML element trees: the value every stanza travels as between codec and actors.

use std::fmt::Write;

pub const NS_CLIENT: &str = "jabber:client";
pub const NS_SERVER: &str = "jabber:server";
pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// A child of an element.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// An attribute; `ns` is set for namespace-qualified attributes (e.g. `xml:lang`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attr {
    pub ns: Option<String>,
    pub name: String,
    pub value: String,
}

/// An XML element with its namespace resolved (serializable, for what is
/// stored as it came: pubsub items).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Element {
    pub name: String,
    pub ns: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn new(name: &str, ns: &str) -> Element {
        Element {
            name: name.to_string(),
            ns: ns.to_string(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// About the bytes this element holds and takes when written: its
    /// names, attribute values and text, with a little for the markup. What
    /// queues bounded by bytes count.
    pub fn weight(&self) -> usize {
        let mut n = 2 * self.name.len() + 5;
        for a in &self.attrs {
            n += a.name.len() + a.value.len() + 4;
        }
        for c in &self.children {
            n += match c {
                Node::Element(e) => e.weight(),
                Node::Text(t) => t.len(),
            };
        }
        n
    }

    /// Builder: sets an unqualified attribute.
    pub fn attr(mut self, name: &str, value: impl Into<String>) -> Element {
        self.set_attr(name, value);
        self
    }

    /// Builder: appends a child element.
    pub fn child(mut self, child: Element) -> Element {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: appends text.
    pub fn text(mut self, text: impl Into<String>) -> Element {
        self.children.push(Node::Text(text.into()));
        self
    }

    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// The value of an unqualified attribute.
    pub fn get_attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_none() && a.name == name)
            .map(|a| a.value.as_str())
    }

    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .attrs
            .iter_mut()
            .find(|a| a.ns.is_none() && a.name == name)
        {
            Some(a) => a.value = value,
            None => self.attrs.push(Attr {
                ns: None,
                name: name.to_string(),
                value,
            }),
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let i = self
            .attrs
            .iter()
            .position(|a| a.ns.is_none() && a.name == name)?;
        Some(self.attrs.remove(i).value)
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this name and namespace.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.elements_mut().find(|e| e.is(name, ns))
    }

    /// The first child element, whatever its name.
    pub fn first_element(&self) -> Option<&Element> {
        self.elements().next()
    }

    /// The concatenated text children.
    pub fn text_content(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Text of the first child `name` in `ns`.
    pub fn child_text(&self, name: &str, ns: &str) -> Option<String> {
        self.get_child(name, ns).map(|e| e.text_content())
    }

    /// Serialises this element; `parent_ns` is the default namespace in scope
    /// (an `xmlns` is written only where it differs).
    pub fn write_to(&self, out: &mut String, parent_ns: &str) {
        out.push('<');
        out.push_str(&self.name);
        if self.ns != parent_ns {
            out.push_str(" xmlns='");
            escape_into(out, &self.ns);
            out.push('\'');
        }
        let mut prefixes: Vec<&str> = Vec::new();
        for a in &self.attrs {
            out.push(' ');
            match a.ns.as_deref() {
                None => {}
                Some(NS_XML) => out.push_str("xml:"),
                Some(ns) => {
                    let idx = match prefixes.iter().position(|p| *p == ns) {
                        Some(i) => i,
                        None => {
                            prefixes.push(ns);
                            let i = prefixes.len() - 1;
                            let _ = write!(out, "xmlns:a{i}='");
                            escape_into(out, ns);
                            out.push_str("' ");
                            i
                        }
                    };
                    let _ = write!(out, "a{idx}:");
                }
            }
            out.push_str(&a.name);
            out.push_str("='");
            escape_into(out, &a.value);
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for c in &self.children {
            match c {
                Node::Element(e) => e.write_to(out, &self.ns),
                Node::Text(t) => escape_into(out, t),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }

    /// Serialises as a top-level stanza inside a stream whose default
    /// namespace is `stream_ns`.
    pub fn to_xml_in(&self, stream_ns: &str) -> String {
        let mut s = String::with_capacity(128);
        self.write_to(&mut s, stream_ns);
        s
    }

    /// Serialises standalone (with its own `xmlns`).
    pub fn to_xml(&self) -> String {
        self.to_xml_in("")
    }
}

/// Escapes text or an attribute value (single-quoted) into `out`.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// Escapes a string into a new one.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    escape_into(&mut o, s);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_with_namespaces_and_escaping() {
        let e = Element::new("message", NS_CLIENT)
            .attr("to", "a@b")
            .child(Element::new("body", NS_CLIENT).text("1 < 2 & 'q'"))
            .child(Element::new("x", "urn:x").child(Element::new("y", "urn:x")));
        assert_eq!(
            e.to_xml_in(NS_CLIENT),
            "<message to='a@b'><body>1 &lt; 2 &amp; &apos;q&apos;</body><x xmlns='urn:x'><y/></x></message>"
        );
        let mut l = Element::new("a", "urn:a");
        l.attrs.push(Attr {
            ns: Some(NS_XML.into()),
            name: "lang".into(),
            value: "en".into(),
        });
        assert_eq!(l.to_xml(), "<a xmlns='urn:a' xml:lang='en'/>");
    }
}
