//! The many-to-many steps (subscribe, publish_item, room): each runs its traffic through `scenario::many` and books what was acknowledged and delivered for the run's invariant.

use super::*;

/// The `subscribe` step.
pub(super) fn subscribe(
    r: &mut Fleet,
    book: &mut Book,
    exchange: &str,
    node: &str,
    clouds: &[String],
) -> StepOutcome {
    let x = r.member(exchange).clone();
    let members: Vec<_> = clouds.iter().map(|c| r.member(c).clone()).collect();
    let net = r.client_net();
    let target = format!("{node} at {exchange}");
    match block_on(crate::scenario::many::subscribe(&net, &x, node, &members)) {
        Ok(d) => {
            let subs = book
                .subscribed
                .entry((exchange.to_string(), node.to_string()))
                .or_default();
            for c in clouds {
                if !subs.contains(c) {
                    subs.push(c.clone());
                }
            }
            ("subscribe".into(), target, true, d)
        }
        Err(e) => ("subscribe".into(), target, false, e),
    }
}

/// Books a many-to-many outcome: the step holds when nothing broke the promise.
fn booked(
    book: &mut Book,
    action: &str,
    target: String,
    res: Result<crate::scenario::many::ManyTally, String>,
) -> StepOutcome {
    match res {
        Err(e) => (action.into(), target, false, e),
        Ok(t) => {
            let problems = t.problems();
            let mut d = t.summary();
            for p in &problems {
                d.push_str("; ");
                d.push_str(p);
            }
            book.many.push((book.step, target.clone(), t));
            (action.into(), target, problems.is_empty(), d)
        }
    }
}

/// The `publish_item` step; `load` is (count, rate, within_secs).
pub(super) fn publish_item(
    r: &mut Fleet,
    book: &mut Book,
    from: &str,
    exchange: &str,
    node: &str,
    load: (u64, f64, u64),
) -> StepOutcome {
    let (count, rate, within) = load;
    let subs: Vec<_> = book
        .subscribed
        .get(&(exchange.to_string(), node.to_string()))
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| r.member(c).clone())
        .collect();
    let (f, x) = (r.member(from).clone(), r.member(exchange).clone());
    let net = r.client_net();
    let res = block_on(crate::scenario::many::publish_items(
        &net,
        &x,
        node,
        &f,
        &subs,
        count,
        rate,
        Duration::from_secs(within),
    ));
    booked(
        book,
        "publish_item",
        format!(
            "{from} -> {node} at {exchange} ({} subscribers)",
            subs.len()
        ),
        res,
    )
}

/// The `room` step; `load` is (count, rate, within_secs).
pub(super) fn room(
    r: &mut Fleet,
    book: &mut Book,
    exchange: &str,
    room: &str,
    clouds: &[String],
    load: (u64, f64, u64),
) -> StepOutcome {
    let (count, rate, within) = load;
    let x = r.member(exchange).clone();
    let members: Vec<_> = clouds.iter().map(|c| r.member(c).clone()).collect();
    let net = r.client_net();
    let res = block_on(crate::scenario::many::room(
        &net,
        &x,
        room,
        &members,
        count,
        rate,
        Duration::from_secs(within),
    ));
    booked(
        book,
        "room",
        format!("{room} at {exchange} ({} clouds)", clouds.len()),
        res,
    )
}
