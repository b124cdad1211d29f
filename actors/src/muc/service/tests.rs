//! The multi-user chat service's decisions, stanza by stanza, on an in-memory store: no actors, no sockets, the time given.

use super::*;

const HOST: &str = "conference.a.test";

fn service(store: &Arc<Store>) -> Muc {
    Muc::load(
        HOST,
        "a.test",
        Limits {
            max_rooms: 3,
            max_occupants_per_room: 3,
            max_history: 5,
            max_affiliations_per_room: 10,
        },
        store.clone(),
    )
    .unwrap()
}

fn new() -> (Muc, Arc<Store>) {
    let store = Arc::new(Store::in_memory().unwrap());
    (service(&store), store)
}

fn join(from: &str, room: &str, nick: &str) -> Element {
    Element::new("presence", NS_CLIENT)
        .attr("from", from)
        .attr("to", format!("{room}@{HOST}/{nick}"))
        .child(Element::new("x", NS_MUC))
}

fn join_with(from: &str, room: &str, nick: &str, x: Element) -> Element {
    Element::new("presence", NS_CLIENT)
        .attr("from", from)
        .attr("to", format!("{room}@{HOST}/{nick}"))
        .child(x)
}

fn leave(from: &str, room: &str, nick: &str) -> Element {
    Element::new("presence", NS_CLIENT)
        .attr("from", from)
        .attr("to", format!("{room}@{HOST}/{nick}"))
        .attr("type", "unavailable")
}

fn say(from: &str, room: &str, text: &str) -> Element {
    Element::new("message", NS_CLIENT)
        .attr("from", from)
        .attr("to", format!("{room}@{HOST}"))
        .attr("type", "groupchat")
        .child(Element::new("body", NS_CLIENT).text(text))
}

fn iq(from: &str, room: &str, ty: &str, q: Element) -> Element {
    Element::new("iq", NS_CLIENT)
        .attr("from", from)
        .attr("to", format!("{room}@{HOST}"))
        .attr("type", ty)
        .attr("id", "q1")
        .child(q)
}

/// Alice creates `room` and accepts the default configuration (an instant room).
fn instant(m: &mut Muc, room: &str) -> Vec<Element> {
    let mut out = m.handle(&join("alice@a.test/a", room, "alice"), 0);
    let q = Element::new("query", NS_OWNER).child(Form::new("submit").to_element());
    out.extend(m.handle(&iq("alice@a.test/a", room, "set", q), 0));
    out
}

fn configure(m: &mut Muc, room: &str, fields: &[(&str, &str)]) -> Vec<Element> {
    let mut f = Form::new("submit").with_type(ROOMCONFIG);
    for (k, v) in fields {
        f = f.field(crate::dataform::Field::new(k, "").value(*v));
    }
    let q = Element::new("query", NS_OWNER).child(f.to_element());
    m.handle(&iq("alice@a.test/a", room, "set", q), 0)
}

/// The status codes of the muc#user element of a stanza.
fn codes(e: &Element) -> Vec<String> {
    e.get_child("x", NS_USER)
        .map(|x| {
            x.elements()
                .filter(|c| c.name == "status")
                .filter_map(|c| c.get_attr("code").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn item(e: &Element) -> &Element {
    e.get_child("x", NS_USER)
        .and_then(|x| x.get_child("item", NS_USER))
        .unwrap_or_else(|| panic!("no item in {}", e.to_xml()))
}

/// What went to `to`: (stanza name, from, type).
fn to<'a>(out: &'a [Element], to: &str) -> Vec<&'a Element> {
    out.iter()
        .filter(|e| e.get_attr("to") == Some(to))
        .collect()
}

fn error_of(out: &[Element]) -> String {
    let e = out
        .iter()
        .find(|e| e.get_attr("type") == Some("error"))
        .unwrap_or_else(|| panic!("no error in {out:?}"));
    e.get_child("error", NS_CLIENT)
        .unwrap()
        .elements()
        .next()
        .unwrap()
        .name
        .clone()
}

#[test]
fn a_new_room_is_locked_until_configured_and_its_creator_owns_it() {
    let (mut m, _) = new();
    let out = m.handle(&join("alice@a.test/a", "r", "alice"), 0);
    let me: Vec<&Element> = to(&out, "alice@a.test/a");
    // Her own presence (110, 201: created), then the (empty) subject.
    assert_eq!(me[0].name, "presence");
    assert_eq!(codes(me[0]), ["110", "201"]);
    assert_eq!(
        (
            item(me[0]).get_attr("affiliation"),
            item(me[0]).get_attr("role")
        ),
        (Some("owner"), Some("moderator"))
    );
    assert_eq!(
        me.last()
            .unwrap()
            .child_text("subject", NS_CLIENT)
            .as_deref(),
        Some("")
    );
    // Locked: nobody else enters yet.
    assert_eq!(
        error_of(&m.handle(&join("bob@b.test/b", "r", "bob"), 0)),
        "item-not-found"
    );
    let q = Element::new("query", NS_OWNER).child(Form::new("submit").to_element());
    let out = m.handle(&iq("alice@a.test/a", "r", "set", q), 0);
    assert_eq!(out[0].get_attr("type"), Some("result"));
    let out = m.handle(&join("bob@b.test/b", "r", "bob"), 0);
    // Bob sees alice, then himself (110), then the subject; alice sees bob.
    let bob: Vec<&Element> = to(&out, "bob@b.test/b");
    assert_eq!(bob[0].get_attr("from"), Some("r@conference.a.test/alice"));
    assert_eq!(codes(bob[1]), ["110"]);
    assert_eq!(bob.len(), 3);
    let alice = to(&out, "alice@a.test/a");
    assert_eq!(alice.len(), 1);
    // Alice moderates: she sees bob's real JID in a semi-anonymous room; bob does not see hers.
    assert_eq!(item(alice[0]).get_attr("jid"), Some("bob@b.test/b"));
    assert_eq!(item(bob[0]).get_attr("jid"), None);
    // Accounts of other servers do not create rooms.
    assert_eq!(
        error_of(&m.handle(&join("bob@b.test/b", "other", "bob"), 0)),
        "not-allowed"
    );
}

#[test]
fn groupchat_goes_to_everyone_in_order_and_history_is_kept() {
    let (mut m, _) = new();
    instant(&mut m, "r");
    m.handle(&join("bob@b.test/b", "r", "bob"), 0);
    for i in 0..7 {
        let out = m.handle(&say("alice@a.test/a", "r", &format!("m{i}")), 100 + i);
        let got: Vec<_> = out.iter().map(|e| e.get_attr("to").unwrap()).collect();
        assert_eq!(got, ["alice@a.test/a", "bob@b.test/b"]);
        assert_eq!(out[0].get_attr("from"), Some("r@conference.a.test/alice"));
    }
    // Strangers do not talk in the room.
    assert_eq!(
        error_of(&m.handle(&say("eve@c.test/e", "r", "hi"), 200)),
        "not-acceptable"
    );
    // A newcomer gets the last five (the service's limit), oldest first, stamped.
    let out = m.handle(&join("carol@a.test/c", "r", "carol"), 300);
    let hist: Vec<String> = to(&out, "carol@a.test/c")
        .iter()
        .filter(|e| e.get_child("body", NS_CLIENT).is_some())
        .map(|e| e.child_text("body", NS_CLIENT).unwrap())
        .collect();
    assert_eq!(hist, ["m2", "m3", "m4", "m5", "m6"]);
    let stamped = to(&out, "carol@a.test/c")
        .into_iter()
        .find(|e| e.child_text("body", NS_CLIENT).as_deref() == Some("m2"))
        .unwrap();
    assert_eq!(
        stamped
            .get_child("delay", crate::stanza::NS_DELAY)
            .unwrap()
            .get_attr("stamp"),
        Some("1970-01-01T00:01:42Z")
    );
    // maxstanzas and seconds narrow it.
    let x =
        Element::new("x", NS_MUC).child(Element::new("history", NS_MUC).attr("maxstanzas", "2"));
    let out = m.handle(&join_with("dave@a.test/d", "r", "dave", x), 300);
    assert_eq!(
        error_of(&out),
        "service-unavailable",
        "the room holds three"
    );
    m.handle(&leave("carol@a.test/c", "r", "carol"), 300);
    let x =
        Element::new("x", NS_MUC).child(Element::new("history", NS_MUC).attr("maxstanzas", "2"));
    let out = m.handle(&join_with("dave@a.test/d", "r", "dave", x), 300);
    assert_eq!(
        out.iter()
            .filter(|e| e.get_child("body", NS_CLIENT).is_some())
            .count(),
        2
    );
    m.handle(&leave("dave@a.test/d", "r", "dave"), 300);
    let x = Element::new("x", NS_MUC).child(Element::new("history", NS_MUC).attr("seconds", "195"));
    let out = m.handle(&join_with("dave@a.test/d", "r", "dave", x), 300);
    let recent: Vec<String> = out
        .iter()
        .filter_map(|e| e.child_text("body", NS_CLIENT))
        .collect();
    assert_eq!(recent, ["m5", "m6"]);
}

#[test]
fn the_door_checks_bans_members_passwords_nicks_and_size() {
    let (mut m, _) = new();
    instant(&mut m, "r");
    configure(
        &mut m,
        "r",
        &[
            ("muc#roomconfig_passwordprotectedroom", "1"),
            ("muc#roomconfig_roomsecret", "s3"),
        ],
    );
    assert_eq!(
        error_of(&m.handle(&join("bob@b.test/b", "r", "bob"), 0)),
        "not-authorized"
    );
    let x = Element::new("x", NS_MUC).child(Element::new("password", NS_MUC).text("s3"));
    let out = m.handle(&join_with("bob@b.test/b", "r", "bob", x), 0);
    assert!(to(&out, "bob@b.test/b").len() >= 2, "{out:?}");
    // Nick taken by someone else.
    let x = Element::new("x", NS_MUC).child(Element::new("password", NS_MUC).text("s3"));
    assert_eq!(
        error_of(&m.handle(&join_with("carol@a.test/c", "r", "bob", x), 0)),
        "conflict"
    );
    // Members only.
    configure(
        &mut m,
        "r",
        &[
            ("muc#roomconfig_passwordprotectedroom", "0"),
            ("muc#roomconfig_membersonly", "1"),
        ],
    );
    assert_eq!(
        error_of(&m.handle(&join("carol@a.test/c", "r", "carol"), 0)),
        "registration-required"
    );
    // A ban keeps out, and removes who is in with 301.
    let ban = Element::new("query", NS_ADMIN).child(
        Element::new("item", NS_ADMIN)
            .attr("jid", "bob@b.test")
            .attr("affiliation", "outcast"),
    );
    let out = m.handle(&iq("alice@a.test/a", "r", "set", ban), 0);
    let bob = to(&out, "bob@b.test/b");
    assert_eq!(bob[0].get_attr("type"), Some("unavailable"));
    assert_eq!(codes(bob[0]), ["110", "301"]);
    assert_eq!(
        error_of(&m.handle(&join("bob@b.test/b", "r", "bob"), 0)),
        "forbidden"
    );
}

#[test]
fn moderators_kick_and_silence_and_only_admins_touch_moderators() {
    let (mut m, _) = new();
    instant(&mut m, "r");
    configure(&mut m, "r", &[("muc#roomconfig_moderatedroom", "1")]);
    let out = m.handle(&join("bob@b.test/b", "r", "bob"), 0);
    assert_eq!(
        item(to(&out, "bob@b.test/b")[1]).get_attr("role"),
        Some("visitor")
    );
    // A visitor has no voice in a moderated room.
    assert_eq!(
        error_of(&m.handle(&say("bob@b.test/b", "r", "hi"), 0)),
        "forbidden"
    );
    let voice = |nick: &str, role: &str| {
        Element::new("query", NS_ADMIN).child(
            Element::new("item", NS_ADMIN)
                .attr("nick", nick)
                .attr("role", role),
        )
    };
    let out = m.handle(
        &iq("alice@a.test/a", "r", "set", voice("bob", "participant")),
        0,
    );
    assert_eq!(out[0].get_attr("type"), Some("result"));
    assert_eq!(m.handle(&say("bob@b.test/b", "r", "hi"), 0).len(), 2);
    // A participant kicks nobody.
    m.handle(&join("carol@a.test/c", "r", "carol"), 0);
    assert_eq!(
        error_of(&m.handle(&iq("bob@b.test/b", "r", "set", voice("carol", "none")), 0)),
        "forbidden"
    );
    // Nobody kicks the owner.
    let out = m.handle(
        &iq("alice@a.test/a", "r", "set", voice("bob", "moderator")),
        0,
    );
    assert_eq!(out[0].get_attr("type"), Some("result"));
    assert_eq!(
        error_of(&m.handle(&iq("bob@b.test/b", "r", "set", voice("alice", "none")), 0)),
        "not-allowed"
    );
    // The kick: 307 to all, with the reason to the one kicked.
    let kick = Element::new("query", NS_ADMIN).child(
        Element::new("item", NS_ADMIN)
            .attr("nick", "carol")
            .attr("role", "none")
            .child(Element::new("reason", NS_ADMIN).text("spam")),
    );
    let out = m.handle(&iq("bob@b.test/b", "r", "set", kick), 0);
    let carol = to(&out, "carol@a.test/c");
    assert_eq!(codes(carol[0]), ["110", "307"]);
    assert_eq!(
        carol[0]
            .get_child("x", NS_USER)
            .unwrap()
            .child_text("reason", NS_USER)
            .as_deref(),
        Some("spam")
    );
    assert_eq!(codes(to(&out, "alice@a.test/a")[0]), ["307"]);
    // Gone: carol's groupchat is refused.
    assert_eq!(
        error_of(&m.handle(&say("carol@a.test/c", "r", "x"), 0)),
        "not-acceptable"
    );
}

#[test]
fn nick_changes_private_messages_and_the_subject() {
    let (mut m, _) = new();
    instant(&mut m, "r");
    m.handle(&join("bob@b.test/b", "r", "bob"), 0);
    let out = m.handle(&join("bob@b.test/b", "r", "robert"), 0);
    let alice = to(&out, "alice@a.test/a");
    assert_eq!(alice[0].get_attr("type"), Some("unavailable"));
    assert_eq!(codes(alice[0]), ["303"]);
    assert_eq!(item(alice[0]).get_attr("nick"), Some("robert"));
    assert_eq!(
        alice[1].get_attr("from"),
        Some("r@conference.a.test/robert")
    );
    // A private message goes to the occupant's real JID from the sender's nick.
    let pm = Element::new("message", NS_CLIENT)
        .attr("from", "alice@a.test/a")
        .attr("to", format!("r@{HOST}/robert"))
        .attr("type", "chat")
        .child(Element::new("body", NS_CLIENT).text("psst"));
    let out = m.handle(&pm, 0);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].get_attr("to"), out[0].get_attr("from")),
        (Some("bob@b.test/b"), Some("r@conference.a.test/alice"))
    );
    // Only moderators set the subject here.
    let subject = |from: &str| {
        Element::new("message", NS_CLIENT)
            .attr("from", from)
            .attr("to", format!("r@{HOST}"))
            .attr("type", "groupchat")
            .child(Element::new("subject", NS_CLIENT).text("Plans"))
    };
    assert_eq!(
        error_of(&m.handle(&subject("bob@b.test/b"), 0)),
        "forbidden"
    );
    assert_eq!(m.handle(&subject("alice@a.test/a"), 0).len(), 2);
    let out = m.handle(&join("carol@a.test/c", "r", "carol"), 0);
    let last = to(&out, "carol@a.test/c").into_iter().last().unwrap();
    assert_eq!(
        last.child_text("subject", NS_CLIENT).as_deref(),
        Some("Plans")
    );
    assert_eq!(last.get_attr("from"), Some("r@conference.a.test/alice"));
}

#[test]
fn persistent_rooms_survive_a_restart_and_temporary_ones_go_when_empty() {
    let (mut m, store) = new();
    instant(&mut m, "keep");
    configure(
        &mut m,
        "keep",
        &[
            ("muc#roomconfig_persistentroom", "1"),
            ("muc#roomconfig_roomname", "Kept"),
        ],
    );
    let member = Element::new("query", NS_ADMIN).child(
        Element::new("item", NS_ADMIN)
            .attr("jid", "bob@b.test")
            .attr("affiliation", "member"),
    );
    m.handle(&iq("alice@a.test/a", "keep", "set", member), 0);
    instant(&mut m, "temp");
    m.handle(&leave("alice@a.test/a", "temp", "alice"), 0);
    assert_eq!(m.room_count(), 1);
    m.handle(&leave("alice@a.test/a", "keep", "alice"), 0);
    assert_eq!(m.room_count(), 1);
    let mut again = service(&store);
    assert_eq!(again.room_count(), 1);
    // Bob's membership and the name came back; the room is open (not locked).
    configure(&mut again, "keep", &[]);
    let list = Element::new("query", NS_ADMIN)
        .child(Element::new("item", NS_ADMIN).attr("affiliation", "member"));
    let out = again.handle(&iq("alice@a.test/a", "keep", "get", list), 0);
    let q = out[0].get_child("query", NS_ADMIN).unwrap();
    assert_eq!(
        q.elements()
            .map(|i| i.get_attr("jid").unwrap())
            .collect::<Vec<_>>(),
        ["bob@b.test"]
    );
    let out = again.handle(&join("bob@b.test/b", "keep", "bob"), 0);
    assert_eq!(
        item(to(&out, "bob@b.test/b")[0]).get_attr("affiliation"),
        Some("member")
    );
    // Destroyed: gone from the store too.
    let destroy = Element::new("query", NS_OWNER).child(Element::new("destroy", NS_OWNER));
    let out = again.handle(&iq("alice@a.test/a", "keep", "set", destroy), 0);
    let bob = to(&out, "bob@b.test/b");
    assert!(bob[0]
        .get_child("x", NS_USER)
        .unwrap()
        .get_child("destroy", NS_USER)
        .is_some());
    assert_eq!(service(&store).room_count(), 0);
}

#[test]
fn rooms_are_bounded_and_an_occupant_whose_client_bounces_leaves() {
    let (mut m, _) = new();
    for r in ["r1", "r2", "r3"] {
        instant(&mut m, r);
    }
    assert_eq!(
        error_of(&m.handle(&join("alice@a.test/a", "r4", "alice"), 0)),
        "resource-constraint"
    );
    m.handle(&join("bob@b.test/b", "r1", "bob"), 0);
    let bounce = Element::new("message", NS_CLIENT)
        .attr("from", "bob@b.test/b")
        .attr("to", format!("r1@{HOST}"))
        .attr("type", "error");
    let out = m.handle(&bounce, 0);
    assert_eq!(
        to(&out, "alice@a.test/a")[0].get_attr("type"),
        Some("unavailable")
    );
    assert_eq!(
        error_of(&m.handle(&say("bob@b.test/b", "r1", "x"), 0)),
        "not-acceptable"
    );
    // A nick is needed to join.
    let bare = Element::new("presence", NS_CLIENT)
        .attr("from", "bob@b.test/b")
        .attr("to", format!("r1@{HOST}"));
    assert_eq!(error_of(&m.handle(&bare, 0)), "jid-malformed");
}

#[test]
fn occupants_of_an_unreachable_domain_leave_with_333() {
    let (mut m, _) = new();
    instant(&mut m, "r");
    m.handle(&join("bob@b.test/b", "r", "bob"), 0);
    m.handle(&join("carol@a.test/c", "r", "carol"), 0);
    let out = m.domain_gone("b.test");
    // Alice and carol hear bob left; nothing goes to b.test.
    let alice = to(&out, "alice@a.test/a");
    assert_eq!(alice[0].get_attr("from"), Some("r@conference.a.test/bob"));
    assert_eq!(alice[0].get_attr("type"), Some("unavailable"));
    assert_eq!(codes(alice[0]), ["333"]);
    assert_eq!(to(&out, "carol@a.test/c").len(), 1);
    assert!(to(&out, "bob@b.test/b").is_empty(), "{out:?}");
    assert_eq!(m.occupant_count(), 2);
    // Another domain going leaves the room as it is.
    assert!(m.domain_gone("z.test").is_empty());
}
