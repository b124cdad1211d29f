//! The presence actor's bookkeeping of remote presence, fed stanzas
//! directly (no sockets).
use super::*;
use crate::element::NS_CLIENT;
use crate::{Cloud, Settings};

fn available(from: &str) -> InboundPresence {
    InboundPresence(
        Element::new("presence", NS_CLIENT)
            .attr("from", from)
            .attr("to", "alice@local.test"),
    )
}

#[actix_rt::test]
async fn remote_presences_tracked_are_bounded() {
    let cloud = Cloud::start(
        Settings {
            domain: "local.test".into(),
            max_remote_presences: 10,
            ..Settings::default()
        },
        Arc::new(Store::in_memory().unwrap()),
    );
    // A remote server may send presence from any resource of its domain.
    for i in 0..50 {
        cloud
            .presence
            .send(available(&format!("u@remote.test/r{i}")))
            .await
            .unwrap();
    }
    assert_eq!(cloud.presence.send(CountRemote).await.unwrap(), 10);
    // Unavailable from one tracked frees its place; the link dying frees all.
    let mut gone = available("u@remote.test/r0");
    gone.0.set_attr("type", "unavailable");
    cloud.presence.send(gone).await.unwrap();
    assert_eq!(cloud.presence.send(CountRemote).await.unwrap(), 9);
    cloud
        .presence
        .send(DomainDown("remote.test".into()))
        .await
        .unwrap();
    assert_eq!(cloud.presence.send(CountRemote).await.unwrap(), 0);
}
