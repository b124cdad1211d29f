//! The scenario runner's verdicts on capacity, refusals and agreeing roots, on made-up fleets.

use super::*;
use intercloud_actors::store::Agreement;

fn offer(capacity: u64) -> Offer {
    Offer {
        service: "storage-replication".into(),
        protocols: vec![],
        transports: vec![],
        capacity,
        unit: "GB".into(),
        max_duration_secs: 0,
    }
}

fn agreement(amount: u64) -> Agreement {
    Agreement {
        id: format!("a{amount}"),
        peer: "gateway@c.test".into(),
        role: "provider".into(),
        service: "storage-replication".into(),
        protocol: "AMQP".into(),
        transport: "UDT".into(),
        amount,
        unit: "GB".into(),
        duration_secs: 3600,
        terms: String::new(),
        created: 1000,
    }
}

#[test]
fn capacity_passes_only_when_something_was_checked_and_readable() {
    let ok = vec![(
        "p.test".to_string(),
        Ok((vec![offer(10)], vec![agreement(4), agreement(6)])),
    )];
    assert_eq!(capacity_verdict(ok, 1001), Ok("1 offers checked".into()));
    let over = vec![(
        "p.test".to_string(),
        Ok((vec![offer(10)], vec![agreement(4), agreement(7)])),
    )];
    assert!(capacity_verdict(over, 1001)
        .unwrap_err()
        .contains("promised 11"));
    let unreadable = vec![
        ("p.test".to_string(), Ok((vec![offer(10)], vec![]))),
        ("q.test".to_string(), Err("store: locked".to_string())),
    ];
    assert_eq!(
        capacity_verdict(unreadable, 1001),
        Err("q.test: cannot read store: locked".into())
    );
    let nothing = vec![("p.test".to_string(), Ok((vec![], vec![])))];
    assert_eq!(
        capacity_verdict(nothing, 1001),
        Err("no offer to check".into())
    );
}

#[test]
fn a_refusal_is_right_only_when_every_match_is_full() {
    let names = vec!["cloud2".to_string(), "cloud5".to_string()];
    let full = |_: &str| Ok(3);
    assert_eq!(refusal_verdict(&names, 5, full), Ok(()));
    let one_roomy = |n: &str| Ok(if n == "cloud5" { 8 } else { 0 });
    assert_eq!(
        refusal_verdict(&names, 5, one_roomy),
        Err("refused by every match although cloud5 has 8 free".into())
    );
    let unreadable = |_: &str| Err("store: locked".to_string());
    assert!(refusal_verdict(&names, 5, unreadable).is_err());
}

#[test]
fn roots_agree_only_on_the_same_non_empty_zone() {
    let z = |d: &str, recs: &[&str]| (d.to_string(), recs.iter().map(|r| r.to_string()).collect());
    assert_eq!(
        zones_agree(&[z("r1", &["a", "b"]), z("r2", &["a", "b"])]),
        Ok(())
    );
    assert!(zones_agree(&[z("r1", &["a", "b"]), z("r2", &["a"])]).is_err());
    assert!(zones_agree(&[z("r1", &[]), z("r2", &[])]).is_err());
    assert!(zones_agree(&[]).is_err());
}
