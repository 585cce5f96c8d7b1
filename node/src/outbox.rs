//! Committed-but-undelivered rounds, kept in ZooKeeper under [`layout::OUTBOX`].
//!
//! The leader commits each round's [`RoundResult`] into the outbox in the same ZooKeeper
//! transaction that advances `/rounds/last` and releases the barrier, guarded by a check on
//! its election znode (see [`crate::round`]). Delivery then drains the outbox in round order,
//! in batches, and removes entries only after the API acknowledged them — again guarded by
//! the election znode. A leader that dies at any point leaves the outbox consistent, and the
//! next leader delivers what is left; the API's idempotency on `round` absorbs the one
//! possible duplicate (delivered, but the acknowledgement not yet recorded).
//!
//! The outbox is bounded ([`Outbox::limit`]): at the bound the leader stops opening rounds
//! (back-pressure, logged) until delivery makes room. Nothing is ever dropped silently: a
//! round the API refuses for good (a different value already stored) is moved to
//! [`CONFLICTS`] for an operator to inspect (`sensorctl status`, `sensorctl conflicts list`,
//! `sensorctl conflicts purge`).
//!
//! [`CONFLICTS`] is bounded too ([`Outbox::conflicts_limit`]), by dropping the **oldest**
//! set-aside rounds, each with an error log naming the round and its value, in the same
//! transaction that sets the new one aside. Not by pausing rounds: a set-aside round is one
//! the API already holds a value for, so the fleet's output is not at stake, only the
//! evidence of the disagreement; stopping the fleet for it would turn an operator's to-do
//! into an outage.

use std::time::Duration;

use zookeeper_client as zkc;

use crate::delivery::{Backoff, Delivery, DeliveryError};
use crate::layout;
use crate::zk::{self, Leadership, Session, ZkError};
use crate::RoundResult;
pub use sensor_coord::layout::{conflict_entry, CONFLICTS};
pub use sensor_coord::rounds::{read_u64, Versioned};
pub use sensor_coord::zk::election::multi_error;

/// Most rounds sent in one POST when draining a backlog.
pub const BATCH: usize = 100;

/// Set-aside rounds kept by default (`CONFLICTS_LIMIT`).
pub const DEFAULT_CONFLICTS_LIMIT: usize = 1000;

/// Access to the outbox.
#[derive(Clone, Debug)]
pub struct Outbox {
    session: Session,
    limit: usize,
    conflicts_limit: usize,
}

impl Outbox {
    /// An outbox holding at most `limit` undelivered rounds (and the default number of
    /// set-aside rounds).
    pub fn new(session: Session, limit: usize) -> Self {
        Outbox {
            session,
            limit: limit.max(1),
            conflicts_limit: DEFAULT_CONFLICTS_LIMIT,
        }
    }

    /// The same outbox keeping at most `limit` set-aside rounds under [`CONFLICTS`].
    pub fn with_conflicts_limit(mut self, limit: usize) -> Self {
        self.conflicts_limit = limit.max(1);
        self
    }

    /// The bound on undelivered rounds.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The bound on set-aside rounds (the oldest are dropped beyond it).
    pub fn conflicts_limit(&self) -> usize {
        self.conflicts_limit
    }

    /// Round numbers waiting in the outbox, ascending.
    pub async fn rounds(&self) -> Result<Vec<u64>, ZkError> {
        let client = self.session.wait_connected().await?;
        let names = match client.list_children(layout::OUTBOX).await {
            Ok(n) => n,
            Err(zkc::Error::NoNode) => Vec::new(),
            Err(e) => return Err(ZkError::zk("list", layout::OUTBOX, e)),
        };
        let mut rounds: Vec<u64> = names.iter().filter_map(|n| n.parse().ok()).collect();
        rounds.sort_unstable();
        Ok(rounds)
    }

    /// The oldest `max` pending results, ascending by round. An entry with unreadable JSON
    /// is reported (it would block the queue), never skipped silently.
    pub async fn oldest(&self, max: usize) -> Result<Vec<RoundResult>, ZkError> {
        let rounds = self.rounds().await?;
        let client = self.session.wait_connected().await?;
        let mut out = Vec::new();
        for round in rounds.into_iter().take(max) {
            let path = layout::outbox_entry(round);
            match client.get_data(&path).await {
                Ok((data, _)) => {
                    let r: RoundResult =
                        serde_json::from_slice(&data).map_err(|e| ZkError::Malformed {
                            path: path.clone(),
                            reason: e.to_string(),
                        })?;
                    out.push(r);
                }
                Err(zkc::Error::NoNode) => {}
                Err(e) => return Err(ZkError::zk("get", &path, e)),
            }
        }
        Ok(out)
    }

    /// Records that the API acknowledged `rounds` (ascending): deletes their entries and
    /// advances `/rounds/delivered`, in one transaction that commits only while `leader`
    /// still holds its election znode. Entries already gone are skipped. The reads before
    /// it (each entry's existence, `/rounds/delivered`) are sent at once: one round trip.
    pub async fn acknowledge(&self, leader: &Leadership, rounds: &[u64]) -> Result<(), ZkError> {
        let Some(&last) = rounds.last() else {
            return Ok(());
        };
        let client = self.session.client()?;
        let paths: Vec<String> = rounds.iter().map(|r| layout::outbox_entry(*r)).collect();
        let (stats, delivered) = tokio::join!(
            futures::future::join_all(paths.iter().map(|p| client.check_stat(p))),
            read_u64(&client, layout::ROUNDS_DELIVERED)
        );
        let delivered = delivered?;
        let mut existing = Vec::new();
        for (path, stat) in paths.iter().zip(stats) {
            if stat
                .map_err(|e| ZkError::zk("exists", layout::OUTBOX, e))?
                .is_some()
            {
                existing.push(path);
            }
        }
        let mut txn = leader.guarded_multi(&client, layout::OUTBOX);
        for path in existing {
            txn.delete(path, None);
        }
        if last > delivered.value {
            match delivered.version {
                Some(v) => txn.set_data(
                    layout::ROUNDS_DELIVERED,
                    last.to_string().as_bytes(),
                    Some(v),
                ),
                None => txn.create(
                    layout::ROUNDS_DELIVERED,
                    last.to_string().as_bytes(),
                    &zk::persistent(),
                ),
            };
        }
        txn.commit().await?;
        Ok(())
    }

    /// Moves a round the API refused for good to [`CONFLICTS`] (guarded like
    /// [`Outbox::acknowledge`]), so the queue moves on and the value is kept. At the bound
    /// ([`Outbox::conflicts_limit`]) the oldest set-aside rounds are dropped in the same
    /// transaction, each logged as an error naming the round.
    pub async fn set_aside(
        &self,
        leader: &Leadership,
        result: &RoundResult,
    ) -> Result<(), ZkError> {
        let client = self.session.client()?;
        zk::ensure_path(&client, CONFLICTS).await?;
        let data = serde_json::to_vec(result).map_err(|e| ZkError::Malformed {
            path: CONFLICTS.into(),
            reason: e.to_string(),
        })?;
        let mut kept: Vec<u64> = client
            .list_children(CONFLICTS)
            .await
            .map_err(|e| ZkError::zk("list", CONFLICTS, e))?
            .iter()
            .filter_map(|n| n.parse().ok())
            .filter(|r| *r != result.round)
            .collect();
        kept.sort_unstable();
        let excess = (kept.len() + 1).saturating_sub(self.conflicts_limit);
        let dropped = &kept[..excess.min(kept.len())];
        let mut txn = leader.guarded_multi(&client, CONFLICTS);
        for r in dropped {
            txn.delete(&conflict_entry(*r), None);
        }
        txn.delete(&layout::outbox_entry(result.round), None);
        txn.create(&conflict_entry(result.round), &data, &zk::persistent());
        txn.commit().await?;
        for r in dropped {
            tracing::error!(
                round = *r,
                limit = self.conflicts_limit,
                "set-aside round dropped: /rounds/conflicts is at CONFLICTS_LIMIT (the API keeps its own value for this round)"
            );
        }
        Ok(())
    }
}

/// Drains the outbox while `leader` leads: sends the oldest rounds in order, in batches of
/// up to [`BATCH`], retrying with jittered back-off while the API is unavailable, and
/// acknowledges what the API accepted. Returns when leadership is lost, the API says we are
/// a stale leader, or the session closes.
///
/// `committed` brings each round this leader commits ([`crate::round::lead_rounds`]), or
/// `None` after a commit whose outcome is unknown (its answer was lost). Once
/// a read found the outbox empty, the outbox holds exactly what came through `committed`
/// since and was not acknowledged (this leader is its only writer while it leads), so a
/// round is sent as soon as it is committed, without reading it back from ZooKeeper. Any
/// doubt (a failed acknowledgement, a round set aside, a read error) drops back to reading
/// the outbox.
pub async fn deliver_while_leading(
    outbox: &Outbox,
    delivery: &Delivery,
    leader: &Leadership,
    committed: &mut tokio::sync::mpsc::UnboundedReceiver<Option<RoundResult>>,
) {
    let mut backoff = Backoff::default();
    let mut failing_since: Option<tokio::time::Instant> = None;
    // `Some(queue)`: the outbox is known to hold exactly `queue`.
    let mut mirror: Option<std::collections::VecDeque<RoundResult>> = None;
    let mut acknowledged = 0u64;
    loop {
        if !leader.is_held() {
            return;
        }
        while let Ok(c) = committed.try_recv() {
            absorb(c, &mut mirror, acknowledged);
        }
        let batch: Vec<RoundResult> = match &mirror {
            Some(queue) => queue.iter().take(BATCH).cloned().collect(),
            None => match outbox.oldest(BATCH).await {
                Ok(b) => {
                    if b.is_empty() {
                        mirror = Some(Default::default());
                    }
                    b
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox read failed");
                    if sleep_or_lost(leader, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
            },
        };
        if batch.is_empty() {
            tokio::select! {
                c = committed.recv() => match c {
                    Some(c) => absorb(c, &mut mirror, acknowledged),
                    None => return, // the round loop ended
                },
                _ = leader.lost() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => mirror = None,
            }
            continue;
        }
        let rounds: Vec<u64> = batch.iter().map(|r| r.round).collect();
        let first = rounds[0];
        let last = rounds[rounds.len() - 1];
        let post_start = tokio::time::Instant::now();
        match delivery.deliver(&batch).await {
            Ok(_) => {
                let post_ms = post_start.elapsed().as_secs_f64() * 1e3;
                if let Some(since) = failing_since.take() {
                    tracing::info!(
                        outage_ms = since.elapsed().as_millis() as u64,
                        "API reachable again"
                    );
                }
                backoff.reset();
                let ack_start = tokio::time::Instant::now();
                match outbox.acknowledge(leader, &rounds).await {
                    Ok(()) => {
                        acknowledged = acknowledged.max(last);
                        if let Some(queue) = mirror.as_mut() {
                            queue.retain(|r| r.round > last);
                        }
                        tracing::info!(
                            first,
                            last,
                            count = rounds.len(),
                            post_ms,
                            ack_ms = ack_start.elapsed().as_secs_f64() * 1e3,
                            "rounds delivered"
                        )
                    }
                    Err(ZkError::LeadershipLost) => return,
                    Err(e) => {
                        mirror = None;
                        tracing::warn!(error = %e, "delivered, but recording it failed; will re-deliver (idempotent)")
                    }
                }
            }
            Err(DeliveryError::StaleLeader { .. }) => {
                tracing::error!(
                    fencing = leader.fencing_token(),
                    "API rejected our fencing token: a newer leader exists; stopping delivery"
                );
                return;
            }
            Err(DeliveryError::Conflict { round, .. }) => {
                mirror = None;
                let Some(result) = round.and_then(|round| batch.iter().find(|r| r.round == round))
                else {
                    tracing::error!(?round, "API reported a conflict it does not attribute to a round we sent; retrying later");
                    if sleep_or_lost(leader, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                };
                tracing::error!(round = result.round, value = result.value, "API holds a different value for this round; setting it aside under /rounds/conflicts");
                if let Err(e) = outbox.set_aside(leader, result).await {
                    tracing::warn!(error = %e, "could not set the conflicting round aside");
                    if sleep_or_lost(leader, backoff.next_delay()).await {
                        return;
                    }
                }
            }
            Err(e @ DeliveryError::Rejected { .. }) if e.is_taken_at() => {
                // The API finds the rounds' time implausible (too far ahead of its clock, or
                // older than its retention): a clock is wrong. Never dropped: they stay
                // queued and go through once the clocks agree (or the API's limits change).
                tracing::error!(error = %e, first, last, pending = rounds.len(), "API refuses the rounds' taken_at: clock skew between ZooKeeper (whose time stamps the rounds) or the leader that stamped them and the API; fix the clocks (NTP) or TAKEN_AT_MAX_AHEAD / TAKEN_AT_MAX_AGE; rounds stay queued");
                if sleep_or_lost(leader, backoff.next_delay()).await {
                    return;
                }
            }
            Err(e @ (DeliveryError::Unauthorized { .. } | DeliveryError::Rejected { .. })) => {
                // Needs an operator (token, version mismatch): keep the rounds, log each time.
                tracing::error!(error = %e, pending = rounds.len(), "API refused the delivery; rounds stay queued");
                if sleep_or_lost(leader, backoff.next_delay()).await {
                    return;
                }
            }
            Err(e) => {
                if failing_since.is_none() {
                    failing_since = Some(tokio::time::Instant::now());
                    tracing::warn!(error = %e, pending = rounds.len(), "API unavailable; rounds stay queued in ZooKeeper");
                }
                if sleep_or_lost(leader, backoff.next_delay()).await {
                    return;
                }
            }
        }
    }
}

/// Folds one message of the round loop into the delivery's `mirror` of the outbox: a
/// committed round joins the queue (unless already acknowledged); `None` (a commit whose
/// outcome is unknown) drops the mirror, so the outbox is read again.
fn absorb(
    committed: Option<RoundResult>,
    mirror: &mut Option<std::collections::VecDeque<RoundResult>>,
    acknowledged: u64,
) {
    match (committed, mirror.as_mut()) {
        (Some(r), Some(queue)) if r.round > acknowledged => queue.push_back(r),
        (None, _) => *mirror = None,
        _ => {}
    }
}

/// Sleeps; returns true if leadership was lost meanwhile.
async fn sleep_or_lost(leader: &Leadership, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => !leader.is_held(),
        _ = leader.lost() => true,
    }
}
