//! Test helpers for the protocol cores: what a peer sends, parsed as a driver would parse it (test builds only).

use super::codec::{Decoder, Event, Limits, StreamHeader};
use super::dialback::NS_DIALBACK;
use intercloud_actors::element::Element;

const LIMITS: Limits = Limits {
    max_stanza_bytes: 65536,
    max_depth: 16,
};
const STREAMS: &str = "http://etherx.jabber.org/streams";

/// A stream header with `default_ns` and these attributes.
pub fn header(default_ns: &str, attrs: &str) -> StreamHeader {
    let mut d = Decoder::new(LIMITS);
    d.feed(
        format!(
            "<stream:stream xmlns='{default_ns}' xmlns:stream='{STREAMS}' \
             xmlns:db='{NS_DIALBACK}' {attrs}>"
        )
        .as_bytes(),
    );
    match d.next_event() {
        Ok(Some(Event::StreamStart(h))) => h,
        other => panic!("not a header: {other:?}"),
    }
}

/// One element as it arrives inside a stream whose default namespace is `default_ns`.
pub fn element(default_ns: &str, xml: &str) -> Element {
    let mut d = Decoder::new(LIMITS);
    d.feed(
        format!("<stream:stream xmlns='{default_ns}' xmlns:stream='{STREAMS}' xmlns:db='{NS_DIALBACK}'>{xml}")
            .as_bytes(),
    );
    assert!(matches!(d.next_event(), Ok(Some(Event::StreamStart(_)))));
    match d.next_event() {
        Ok(Some(Event::Stanza(e))) => e,
        other => panic!("not an element: {other:?}"),
    }
}

/// A header followed by features, as a server answers: the header and the features' names.
pub fn answer(xml: &str) -> (StreamHeader, Vec<String>) {
    let mut d = Decoder::new(LIMITS);
    d.feed(xml.as_bytes());
    let Ok(Some(Event::StreamStart(h))) = d.next_event() else {
        panic!("no header in {xml}")
    };
    match d.next_event() {
        Ok(Some(Event::Stanza(f))) if f.name == "features" => {
            (h, f.elements().map(|c| c.name.clone()).collect())
        }
        other => panic!("no features in {xml}: {other:?}"),
    }
}
