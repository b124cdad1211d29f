//! The stream decoder's events and errors on well-formed, hostile and split input.

use super::*;
use intercloud_actors::element::NS_CLIENT;

fn all_events(chunks: &[&[u8]], limits: Limits) -> Result<Vec<Event>, CodecError> {
    let mut d = Decoder::new(limits);
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c);
        while let Some(e) = d.next_event()? {
            out.push(e);
        }
    }
    Ok(out)
}

/// Feeds `sample` split at every byte boundary (and byte by byte) and
/// checks each split yields the same events as feeding it whole.
fn check_splits(sample: &[u8]) -> Result<Vec<Event>, CodecError> {
    let whole = all_events(&[sample], Limits::default());
    for i in 0..=sample.len() {
        let (a, b) = sample.split_at(i);
        assert_eq!(
            all_events(&[a, b], Limits::default()),
            whole,
            "split at {i}"
        );
    }
    let bytes: Vec<&[u8]> = sample.chunks(1).collect();
    assert_eq!(all_events(&bytes, Limits::default()), whole, "byte by byte");
    whole
}

const PAPER_HEADER: &str = "<stream:stream\n    xmlns='jabber:client'\n    xmlns:stream='http://etherx.jabber.org/streams'\n    to='intercloudexchg.com'\n    version='1.0'>";

#[test]
fn paper_stream_and_starttls() {
    let s = format!("{PAPER_HEADER}\n<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    let ev = check_splits(s.as_bytes()).unwrap();
    assert_eq!(ev.len(), 2);
    match &ev[0] {
        Event::StreamStart(h) => {
            assert_eq!(h.default_ns, NS_CLIENT);
            assert_eq!(h.get("to"), Some("intercloudexchg.com"));
        }
        e => panic!("{e:?}"),
    }
    match &ev[1] {
        Event::Stanza(e) => assert!(e.is("starttls", "urn:ietf:params:xml:ns:xmpp-tls")),
        e => panic!("{e:?}"),
    }
}

#[test]
fn stanzas_text_cdata_entities_and_close() {
    let s = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='x'> \n\
        <message to='a@x' xml:lang='en'><body>h&amp;i &lt;&#x263A;&#65;<![CDATA[<raw>]]>ü</body><x xmlns='urn:a' xmlns:p='urn:p' p:k='v'><p:y/></x></message>  \
        <iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>";
    let ev = check_splits(s.as_bytes()).unwrap();
    assert_eq!(ev.len(), 4);
    let Event::Stanza(m) = &ev[1] else { panic!() };
    assert_eq!(m.ns, NS_CLIENT);
    assert_eq!(m.child_text("body", NS_CLIENT).unwrap(), "h&i <☺A<raw>ü");
    assert_eq!(m.attrs[1].ns.as_deref(), Some(NS_XML));
    let x = m.get_child("x", "urn:a").unwrap();
    assert_eq!(x.attrs[0].ns.as_deref(), Some("urn:p"));
    assert!(x.get_child("y", "urn:p").is_some());
    assert_eq!(ev[3], Event::StreamEnd);
    // Serialising and parsing again gives the same tree.
    let again = format!(
        "{}{}",
        stream_header(NS_CLIENT, None, Some("x"), None, &[]),
        m.to_xml_in(NS_CLIENT)
    );
    let ev2 = check_splits(again.as_bytes()).unwrap();
    assert_eq!(ev2[1], ev[1]);
}

#[test]
fn refuses_dtd_and_entities() {
    let s = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;'>]><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    assert!(matches!(
        check_splits(s.as_bytes()),
        Err(CodecError::RestrictedXml(_))
    ));
    let s = format!("{PAPER_HEADER}<message><body>&lol;</body></message>");
    assert!(matches!(
        check_splits(s.as_bytes()),
        Err(CodecError::NotWellFormed(_))
    ));
    let s = format!("{PAPER_HEADER}<message><!-- hi --></message>");
    assert!(matches!(
        check_splits(s.as_bytes()),
        Err(CodecError::RestrictedXml(_))
    ));
    let s = format!("{PAPER_HEADER}<?php x ?>");
    assert!(matches!(
        check_splits(s.as_bytes()),
        Err(CodecError::RestrictedXml(_))
    ));
}

#[test]
fn refuses_bad_structure() {
    for bad in [
        "<stream:stream xmlns:stream='urn:wrong'>",
        "<stream xmlns='jabber:client'>",
    ] {
        assert!(matches!(
            check_splits(bad.as_bytes()),
            Err(CodecError::InvalidNamespace(_))
        ));
    }
    for bad in [
        format!("{PAPER_HEADER}<a></b>"),
        format!("{PAPER_HEADER}garbage"),
        format!("{PAPER_HEADER}<a x='1' x='2'/>"),
        format!("{PAPER_HEADER}<q:a/>"),
        "\u{1}\u{2}\u{3}<<<>>>".to_string(),
        format!("{PAPER_HEADER}<<<>>>"),
        format!("{PAPER_HEADER}<message><body>\u{1}</body></message>"),
        format!("{PAPER_HEADER}<message><body>a\u{1}"),
        format!("{PAPER_HEADER}<1a/>"),
    ] {
        assert!(check_splits(bad.as_bytes()).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn limits_size_and_depth() {
    let limits = Limits {
        max_stanza_bytes: 1000,
        max_depth: 8,
    };
    let big = format!(
        "{PAPER_HEADER}<message><body>{}</body></message>",
        "a".repeat(2000)
    );
    assert!(matches!(
        all_events(&[big.as_bytes()], limits),
        Err(CodecError::PolicyViolation(_))
    ));
    // An unterminated huge tag is refused before it completes.
    let open = format!("{PAPER_HEADER}<message to='{}", "a".repeat(2000));
    assert!(matches!(
        all_events(&[open.as_bytes()], limits),
        Err(CodecError::PolicyViolation(_))
    ));
    let deep = format!("{PAPER_HEADER}{}", "<a>".repeat(10));
    assert!(matches!(
        all_events(&[deep.as_bytes()], limits),
        Err(CodecError::PolicyViolation(_))
    ));
    let ok = format!("{PAPER_HEADER}{}{}", "<a>".repeat(8), "</a>".repeat(8));
    assert_eq!(all_events(&[ok.as_bytes()], limits).unwrap().len(), 2);
    // Many stanzas in a row each count from zero.
    let many = format!(
        "{PAPER_HEADER}{}",
        "<message><body>0123456789</body></message>".repeat(100)
    );
    assert_eq!(all_events(&[many.as_bytes()], limits).unwrap().len(), 101);
}
