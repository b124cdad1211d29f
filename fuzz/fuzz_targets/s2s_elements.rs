//! Fuzz target: elements a peer server sends — dialback results and verifies (written back with the db: prefix must parse to the same element) and XEP-0198 counters.
#![no_main]

use intercloud::xmpp::codec::parse_stanza;
use intercloud::xmpp::dialback::{self, NS_DIALBACK};
use intercloud_actors::element::{Element, NS_SERVER};
use intercloud_actors::sm::{self, StreamManagement, Unacked};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(e) = parse_stanza(text, NS_SERVER) else {
        return;
    };
    if e.ns == NS_DIALBACK {
        let from = e.get_attr("from").unwrap_or("");
        let to = e.get_attr("to").unwrap_or("");
        let id = e.get_attr("id").unwrap_or("");
        let key = dialback::key("a secret of sixteen+", to, from, id);
        assert!(dialback::verify("a secret of sixteen+", to, from, id, &key));
        assert!(
            !dialback::verify("a secret of sixteen+", to, from, id, &e.text_content())
                || e.text_content().trim() == key
        );
        // What we write for it declares db: and parses back the same.
        let wire = dialback::wire(&e);
        let framed = format!(
            "<stream:stream xmlns='jabber:server' xmlns:db='{NS_DIALBACK}' xmlns:stream='http://etherx.jabber.org/streams'>{wire}"
        );
        let mut d = intercloud::xmpp::codec::Decoder::new(Default::default());
        d.feed(framed.as_bytes());
        let mut back = None;
        while let Ok(Some(ev)) = d.next_event() {
            if let intercloud::xmpp::codec::Event::Stanza(s) = ev {
                back = Some(s);
                break;
            }
        }
        let back = back.unwrap_or_else(|| panic!("{wire} does not parse"));
        assert_eq!(back.name, e.name);
        assert_eq!(back.get_attr("from"), e.get_attr("from"));
        assert_eq!(back.get_attr("to"), e.get_attr("to"));
        assert_eq!(back.get_attr("type"), e.get_attr("type"));
        assert_eq!(back.text_content(), e.text_content());
    }
    // Acknowledgements never take more than was sent.
    if let Some(h) = sm::h_of(&e) {
        let mut s = StreamManagement::new(false);
        for i in 0..(data.len() % 7) {
            s.sent(
                Unacked::Stanza(Element::new("message", NS_SERVER).attr("id", i.to_string())),
                5,
            );
        }
        let before = s.unacked_len();
        match s.ack(h) {
            Ok(()) => assert!(s.unacked_len() <= before),
            Err(_) => assert_eq!(s.unacked_len(), before),
        }
    }
});
