//! Fuzz target: the XML stream decoder fed arbitrary bytes in arbitrary chunks; every stanza it yields must survive being written and parsed again.
#![no_main]

use intercloud::xmpp::codec::{parse_stanza, Decoder, Event, Limits};
use intercloud_actors::element::NS_CLIENT;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so the fuzzer explores splits.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let chunk = (split as usize % 64) + 1;
    let limits = Limits {
        max_stanza_bytes: 4096,
        max_depth: 16,
    };
    let mut d = Decoder::new(limits);
    let header = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='x.test' version='1.0'>";
    // Half the inputs start inside an open stream, the other half raw.
    let input: Vec<u8> = if split & 0x80 != 0 {
        header.iter().chain(rest).copied().collect()
    } else {
        rest.to_vec()
    };
    for part in input.chunks(chunk) {
        d.feed(part);
        loop {
            match d.next_event() {
                Ok(Some(Event::Stanza(e))) => {
                    let xml = e.to_xml_in(NS_CLIENT);
                    let again = parse_stanza(&xml, NS_CLIENT).unwrap_or_else(|| {
                        panic!("a stanza we parsed does not parse again: {xml}")
                    });
                    assert_eq!(again, e, "round trip changed {xml}");
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // What waits undecoded stays within one stanza's bound and a chunk.
        assert!(
            d.pending() <= limits.max_stanza_bytes + header.len() + chunk,
            "{} bytes buffered",
            d.pending()
        );
    }
});
