//! Many-to-many traffic of a scenario: clouds' users subscribed to a publish-subscribe node at an exchange while one of them publishes (`pubsub.rs`), and clouds' users talking in a room at an exchange (`room.rs`); what was acknowledged and what each reader got, in what order (`tally.rs`).

use crate::federation::Member;
use crate::net::Net;
use crate::xmpp::client::{Client, ClientError};
use crate::xmpp::stream::WireError;
use intercloud_actors::element::{Element, NS_CLIENT};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod pubsub;
mod room;
mod tally;

pub use pubsub::{publish_items, subscribe};
pub use room::room;
pub use tally::ManyTally;

const T: Duration = Duration::from_secs(30);

pub(super) fn timeout(e: &ClientError) -> bool {
    matches!(e, ClientError::Wire(WireError::Timeout))
}

pub(super) async fn login(net: &Net, m: &Member, resource: &str) -> Result<Client, String> {
    let mut c = crate::scenario::traffic::demo_login(net, m, resource).await?;
    c.send_raw("<presence/>").await.map_err(|e| e.to_string())?;
    Ok(c)
}

/// Sends an iq and waits for its answer; Err with the error condition.
pub(super) async fn request(c: &mut Client, id: &str, iq: &str) -> Result<Element, String> {
    c.send_raw(iq).await.map_err(|e| e.to_string())?;
    let r = c
        .wait_for(T, |e| e.name == "iq" && e.get_attr("id") == Some(id))
        .await
        .map_err(|e| format!("no answer to {id}: {e}"))?;
    if r.get_attr("type") == Some("error") {
        return Err(r
            .get_child("error", NS_CLIENT)
            .and_then(|x| x.first_element())
            .map(|c| c.name.clone())
            .unwrap_or_else(|| r.to_xml()));
    }
    Ok(r)
}

/// When the senders are done, and whether their acknowledgements are final.
#[derive(Default)]
pub(super) struct Clock {
    pub(super) done_at: Mutex<Option<Instant>>,
    pub(super) settled: AtomicBool,
}
