//! The store's accounts, rosters and offline messages.

use super::*;

#[test]
fn accounts_rosters_offline() {
    let s = Store::in_memory().unwrap();
    s.add_user("a@x", "pw", 64).unwrap();
    assert!(matches!(
        s.add_user("a@x", "pw", 64),
        Err(StoreError::AlreadyExists(_))
    ));
    let k = s.scram_keys("a@x", ScramHash::Sha256).unwrap().unwrap();
    assert!(k.verify_password(ScramHash::Sha256, "pw"));
    let mut it = RosterItem::new("b@x");
    it.groups = vec!["g1".into(), "g2".into()];
    it.subscription = Subscription::To;
    s.put_roster_item("a@x", &it).unwrap();
    assert_eq!(s.roster("a@x").unwrap(), vec![it]);
    assert!(s.push_offline("a@x", "<m/>", 2).unwrap());
    assert!(s.push_offline("a@x", "<m/>", 2).unwrap());
    assert!(!s.push_offline("a@x", "<m/>", 2).unwrap());
    let off = s.offline("a@x").unwrap();
    s.delete_offline(&[off[0].id]).unwrap();
    assert_eq!(s.offline("a@x").unwrap().len(), 1);
    s.remove_user("a@x").unwrap();
    assert!(s.roster("a@x").unwrap().is_empty());
    s.put_zone_record("record:x", "{1}").unwrap();
    s.put_zone_record("record:x", "{2}").unwrap();
    assert_eq!(s.zone_records().unwrap(), vec!["{2}"]);
    s.append_audit(0, "a").unwrap();
    s.append_audit(0, "b").unwrap();
    s.append_audit(1, "c").unwrap();
    assert_eq!(s.audit_entries().unwrap(), vec!["a", "c"]);
    assert!(!s.user_exists("a@x").unwrap());
}
