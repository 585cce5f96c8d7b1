//! One round, follower side ([`run_sensor`]) and leader side ([`lead_rounds`]).
//!
//! ## The protocol
//! 1. The leader opens round `r = /rounds/last + 1` by creating `/barrier` (data: `r`), in a
//!    transaction that checks its election znode still exists. The barrier's czxid `B`
//!    identifies the round.
//! 2. Every node — the leader too — waits for a barrier newer than the last one it served
//!    ([`Barrier::wait_next`]), takes exactly one reading, writes it to its ephemeral
//!    `/mediciones/<id>` (ASCII decimal) and increments `/counter` once.
//! 3. After `sampling_period` (rounds close on a fixed cadence: each one
//!    `sampling_period` after the previous close) the leader reads `/mediciones/*` and averages the readings
//!    whose `mzxid > B`: written during this round. A stale value of a node that missed the
//!    round is excluded.
//! 4. The leader commits, in **one** ZooKeeper transaction: check own election znode;
//!    create `/rounds/outbox/<r>` (the [`RoundResult`]); set `/rounds/last = r` (compare-
//!    and-set on its version); delete `/barrier`. Either all of it happens or none.
//! 5. Delivery ([`crate::outbox`]) sends committed rounds to the API in order.
//!
//! ## Why no round is lost or delivered twice
//! * A deposed leader cannot commit: its election znode is gone (session expired) or it
//!   is not the owner any more, so the check in step 4 fails. Its in-process handle is
//!   revoked as soon as its connection is suspended, before ZooKeeper even decides.
//! * A leader that dies before step 4 leaves `/barrier` up and `/rounds/last = r - 1`; the
//!   next leader finds the barrier and finishes round `r` (same number, no gap).
//! * A leader that dies after step 4 leaves the result in the outbox; the next leader
//!   delivers it. The API is idempotent on `round`, so a delivery whose acknowledgement was
//!   not recorded is harmless, and it rejects lower fencing tokens (stale leaders).

use std::time::Duration;

use rand::RngExt;
use tokio::sync::watch;
use zookeeper_client as zkc;

use crate::layout;
use crate::outbox::{multi_error, read_u64, Outbox};
use crate::zk::{self, Barrier, ChildrenWatch, Counter, Leadership, Session, ZkError};
use crate::RoundResult;

/// Range of the simulated sensor, °C.
pub const READING_RANGE: std::ops::Range<f64> = 15.0..35.0;

/// Takes one reading (simulated: uniform in [`READING_RANGE`], two decimals).
pub fn take_reading() -> f64 {
    let v: f64 = rand::rng().random_range(READING_RANGE);
    (v * 100.0).round() / 100.0
}

/// Follower side, run by every node: one reading per barrier, until `stop` turns true.
///
/// Survives disconnections and session expiry (its ephemeral reading is re-created on the
/// next round). A stop request is honoured only between rounds: a reading once taken is
/// published and counted before the task returns, so `/counter` equals the readings taken.
pub async fn run_sensor(session: Session, id: String, mut stop: watch::Receiver<bool>) {
    let barrier = Barrier::new(session.clone(), layout::BARRIER);
    let counter = Counter::new(session.clone(), layout::COUNTER);
    let mut last_barrier: Option<i64> = None;
    loop {
        let next = tokio::select! {
            b = barrier.wait_next(last_barrier, None) => b,
            _ = stop.wait_for(|s| *s) => return,
        };
        let b = match next {
            Ok(b) => b,
            Err(ZkError::Closed) => return,
            Err(e) => {
                tracing::warn!(node = %id, error = %e, "waiting for the next round failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let value = take_reading();
        match publish_reading(&session, &id, value).await {
            Ok(mzxid) => {
                tracing::debug!(node = %id, barrier = b, value, mzxid, "reading taken");
                last_barrier = Some(b);
                if let Err(e) = counter.increment().await {
                    tracing::warn!(node = %id, error = %e, "counter increment failed");
                }
            }
            Err(ZkError::Closed) => return,
            Err(e) => {
                // Not marked as served: try again for the same barrier if it is still up.
                tracing::warn!(node = %id, barrier = b, error = %e, "publishing the reading failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Writes `value` to `/mediciones/<id>` (ephemeral, created if missing); returns the mzxid.
///
/// After a session expiry the old session's znode may linger for up to one session timeout:
/// if it exists but is owned by another session, it is deleted and re-created as ours.
pub async fn publish_reading(session: &Session, id: &str, value: f64) -> Result<i64, ZkError> {
    let client = session.wait_connected().await?;
    let path = layout::reading(id);
    let data = format_reading(value);
    let me = client.session_id().0;
    for _ in 0..5 {
        match client.check_stat(&path).await {
            Ok(Some(stat)) if stat.ephemeral_owner == me => {
                match client.set_data(&path, data.as_bytes(), None).await {
                    Ok(stat) => return Ok(stat.mzxid),
                    Err(zkc::Error::NoNode) => continue,
                    Err(e) => return Err(ZkError::zk("set", &path, e)),
                }
            }
            Ok(Some(_)) => match client.delete(&path, None).await {
                Ok(()) | Err(zkc::Error::NoNode) => continue,
                Err(e) => return Err(ZkError::zk("delete", &path, e)),
            },
            Ok(None) => {
                zk::ensure_path(&client, layout::READINGS).await?;
                match client
                    .create(&path, data.as_bytes(), &zk::ephemeral())
                    .await
                {
                    Ok((stat, _)) => return Ok(stat.mzxid),
                    Err(zkc::Error::NodeExists) => continue,
                    Err(e) => return Err(ZkError::zk("create", &path, e)),
                }
            }
            Err(e) => return Err(ZkError::zk("exists", &path, e)),
        }
    }
    Err(ZkError::zk("publish", &path, zkc::Error::NodeExists))
}

/// The reading as the kazoo implementations write it: ASCII decimal.
pub fn format_reading(value: f64) -> String {
    format!("{value}")
}

/// Everything the leader needs besides its [`Leadership`].
#[derive(Clone, Debug)]
pub struct LeaderContext {
    /// The session.
    pub session: Session,
    /// This node's id (goes into [`RoundResult::leader`]).
    pub id: String,
    /// Live sampling period.
    pub period: watch::Receiver<Duration>,
    /// The outbox (bounded).
    pub outbox: Outbox,
    /// The ensemble's cluster id, read at the start of each leadership term
    /// ([`crate::cluster`]); goes into [`RoundResult::cluster`].
    pub cluster: crate::ClusterId,
}

/// Why [`lead_rounds`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum LeadEnd {
    /// Leadership was lost (suspended, expired, deposed).
    Lost,
    /// The session was closed (shutdown).
    Closed,
}

/// Runs rounds while `leader` leads. Call [`crate::outbox::deliver_while_leading`] beside
/// it; `committed` is notified after every commit to wake delivery.
pub async fn lead_rounds(
    ctx: &LeaderContext,
    leader: &Leadership,
    committed: &tokio::sync::Notify,
) -> LeadEnd {
    let mut outbox_full_logged = false;
    // Rounds are paced by deadlines, not by sleeps after the work: each round closes at
    // `previous close + period`, so commit overhead does not make the fleet drift
    // (the kazoo seed loses ~3 rounds a minute that way).
    let mut last_close: Option<tokio::time::Instant> = None;
    loop {
        if ctx.session.is_closed() {
            return LeadEnd::Closed;
        }
        if !leader.is_held() {
            return LeadEnd::Lost;
        }
        let period = *ctx.period.borrow();
        // Back-pressure: a full outbox stops new rounds until delivery makes room.
        match ctx.outbox.rounds().await {
            Ok(pending) if pending.len() >= ctx.outbox.limit() => {
                if !outbox_full_logged {
                    tracing::warn!(node = %ctx.id, pending = pending.len(), limit = ctx.outbox.limit(), "outbox full: pausing rounds until the API takes the backlog");
                    outbox_full_logged = true;
                }
                if wait_or_lost(leader, period).await {
                    return LeadEnd::Lost;
                }
                last_close = None;
                continue;
            }
            Ok(_) => {
                if outbox_full_logged {
                    tracing::info!(node = %ctx.id, "outbox has room again: rounds resume");
                    outbox_full_logged = false;
                }
            }
            Err(e) => {
                tracing::warn!(node = %ctx.id, error = %e, "cannot read the outbox");
                if wait_or_lost(leader, Duration::from_millis(500)).await {
                    return LeadEnd::Lost;
                }
                continue;
            }
        }
        let now = tokio::time::Instant::now();
        let close_at = match last_close {
            // On schedule (or a little late): keep the cadence, as long as the sensors still
            // get at least half a period to read.
            Some(prev) if prev + period > now + period / 2 => prev + period,
            _ => now + period,
        };
        match one_round(ctx, leader, close_at).await {
            Ok(result) => {
                last_close = Some(close_at);
                tracing::info!(node = %ctx.id, role = "leader", round = result.round, value = result.value, samples = result.samples, fencing = result.fencing, "round committed");
                committed.notify_one();
            }
            Err(ZkError::LeadershipLost) => return LeadEnd::Lost,
            Err(ZkError::Closed) => return LeadEnd::Closed,
            Err(e) => {
                last_close = None;
                tracing::warn!(node = %ctx.id, error = %e, "round failed; retrying");
                if wait_or_lost(leader, Duration::from_millis(500)).await {
                    return LeadEnd::Lost;
                }
            }
        }
    }
}

/// Sleeps for `d`; true if leadership was lost meanwhile.
async fn wait_or_lost(leader: &Leadership, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => !leader.is_held(),
        _ = leader.lost() => true,
    }
}

/// Opens (or resumes) one round, waits until `close_at`, averages, commits.
async fn one_round(
    ctx: &LeaderContext,
    leader: &Leadership,
    close_at: tokio::time::Instant,
) -> Result<RoundResult, ZkError> {
    let client = ctx.session.client()?;
    zk::ensure_path(&client, layout::ROUNDS).await?;
    let last = read_u64(&client, layout::ROUNDS_LAST).await?;
    let round = last.value + 1;
    let barrier = match client.check_stat(layout::BARRIER).await {
        Ok(Some(stat)) => {
            tracing::info!(node = %ctx.id, round, "resuming the round left open by the previous leader");
            stat.czxid
        }
        Ok(None) => {
            let mut txn = client.new_multi_writer();
            let bad = |e| ZkError::zk("multi", layout::BARRIER, e);
            txn.add_check_version(leader.guard_path(), 0).map_err(bad)?;
            txn.add_create(
                layout::BARRIER,
                round.to_string().as_bytes(),
                &zk::persistent(),
            )
            .map_err(bad)?;
            match txn.commit().await {
                Ok(_) => {}
                Err(zkc::MultiWriteError::OperationFailed {
                    source: zkc::Error::NodeExists,
                    ..
                }) => {}
                Err(e) => return Err(multi_error(layout::BARRIER, e)),
            }
            // The multi's create Stat is invalid on ZooKeeper 3.8.0 (server bug): read it.
            match client.check_stat(layout::BARRIER).await {
                Ok(Some(stat)) => stat.czxid,
                Ok(None) => return Err(ZkError::zk("exists", layout::BARRIER, zkc::Error::NoNode)),
                Err(e) => return Err(ZkError::zk("exists", layout::BARRIER, e)),
            }
        }
        Err(e) => return Err(ZkError::zk("exists", layout::BARRIER, e)),
    };
    drop(client);
    let mut barrier = barrier;
    let mut close_at = close_at;
    let readings = loop {
        tracing::debug!(node = %ctx.id, round, barrier, "round open");
        let wait = close_at.saturating_duration_since(tokio::time::Instant::now());
        if wait_or_lost(leader, wait).await {
            return Err(ZkError::LeadershipLost);
        }
        let client = ctx.session.client()?;
        let readings = fresh_readings(&client, barrier).await?;
        if !readings.is_empty() {
            break readings;
        }
        // Nobody's reading for this barrier survives: e.g. every session expired after the
        // sensors had served it (their ephemeral readings vanished, and they will not read
        // the same barrier twice). Re-open the round under a new barrier, same number.
        tracing::warn!(node = %ctx.id, round, barrier, "no readings survived for this round; re-opening it");
        barrier = reopen_barrier(&client, leader, round).await?;
        close_at = tokio::time::Instant::now() + *ctx.period.borrow();
    };
    let client = ctx.session.client()?;
    let samples = readings.len() as u32;
    let value = readings.iter().map(|(_, v)| v).sum::<f64>() / samples as f64;
    let result = RoundResult {
        round,
        value,
        samples,
        leader: ctx.id.clone(),
        fencing: leader.fencing_token(),
        taken_at: now_rfc3339(),
        cluster: ctx.cluster.clone(),
    };
    let ids: Vec<&str> = readings.iter().map(|(id, _)| id.as_str()).collect();
    let data = serde_json::to_vec(&result).map_err(|e| ZkError::Malformed {
        path: layout::OUTBOX.into(),
        reason: e.to_string(),
    })?;
    zk::ensure_path(&client, layout::OUTBOX).await?;
    let mut txn = client.new_multi_writer();
    let bad = |e| ZkError::zk("multi", layout::ROUNDS, e);
    txn.add_check_version(leader.guard_path(), 0).map_err(bad)?;
    txn.add_create(&layout::outbox_entry(round), &data, &zk::persistent())
        .map_err(bad)?;
    match last.version {
        Some(v) => txn
            .add_set_data(layout::ROUNDS_LAST, round.to_string().as_bytes(), Some(v))
            .map_err(bad)?,
        None => txn
            .add_create(
                layout::ROUNDS_LAST,
                round.to_string().as_bytes(),
                &zk::persistent(),
            )
            .map_err(bad)?,
    }
    txn.add_delete(layout::BARRIER, None).map_err(bad)?;
    match txn.commit().await {
        Ok(_) => {
            tracing::debug!(node = %ctx.id, round, barrier, included = ?ids, "round readings averaged");
            Ok(result)
        }
        Err(zkc::MultiWriteError::RequestFailed { source })
            if zk::session::is_transient(&source) =>
        {
            // Outcome unknown. If it did commit, /rounds/last says so; the next pass (ours or
            // the next leader's) continues from whatever ZooKeeper holds.
            Err(ZkError::zk("multi", layout::ROUNDS, source))
        }
        Err(e) => Err(multi_error(layout::ROUNDS, e)),
    }
}

/// Replaces the open barrier by a new one (same round number), guarded by the election
/// znode; returns the new barrier's czxid.
async fn reopen_barrier(
    client: &zkc::Client,
    leader: &Leadership,
    round: u64,
) -> Result<i64, ZkError> {
    let mut txn = client.new_multi_writer();
    let bad = |e| ZkError::zk("multi", layout::BARRIER, e);
    txn.add_check_version(leader.guard_path(), 0).map_err(bad)?;
    txn.add_delete(layout::BARRIER, None).map_err(bad)?;
    txn.add_create(
        layout::BARRIER,
        round.to_string().as_bytes(),
        &zk::persistent(),
    )
    .map_err(bad)?;
    txn.commit()
        .await
        .map_err(|e| multi_error(layout::BARRIER, e))?;
    match client.check_stat(layout::BARRIER).await {
        Ok(Some(stat)) => Ok(stat.czxid),
        Ok(None) => Err(ZkError::zk("exists", layout::BARRIER, zkc::Error::NoNode)),
        Err(e) => Err(ZkError::zk("exists", layout::BARRIER, e)),
    }
}

/// Readings written after the barrier was created: `(node id, value)`, sorted by id.
/// Unparseable readings are skipped with a warning (a bad sensor must not stop rounds).
pub async fn fresh_readings(
    client: &zkc::Client,
    barrier: i64,
) -> Result<Vec<(String, f64)>, ZkError> {
    let names = match client.list_children(layout::READINGS).await {
        Ok(n) => n,
        Err(zkc::Error::NoNode) => Vec::new(),
        Err(e) => return Err(ZkError::zk("list", layout::READINGS, e)),
    };
    let mut out = Vec::new();
    for name in names {
        let path = layout::reading(&name);
        match client.get_data(&path).await {
            Ok((data, stat)) if stat.mzxid > barrier => {
                let text = String::from_utf8_lossy(&data);
                match text.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() => out.push((name, v)),
                    _ => tracing::warn!(node = %name, data = %text, "ignoring unparseable reading"),
                }
            }
            Ok(_) | Err(zkc::Error::NoNode) => {}
            Err(e) => return Err(ZkError::zk("get", &path, e)),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Now, RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Logs joins and leaves of `/mediciones` while `leader` leads: one line per change.
pub async fn log_membership(session: &Session, id: &str, leader: &Leadership) {
    let mut members = ChildrenWatch::start(session, layout::READINGS);
    let mut known: Option<Vec<String>> = None;
    loop {
        let now = members.borrow_and_update().clone();
        if now.known {
            if let Some(before) = &known {
                let joined: Vec<&String> =
                    now.names.iter().filter(|n| !before.contains(n)).collect();
                let left: Vec<&String> = before.iter().filter(|n| !now.names.contains(n)).collect();
                if !joined.is_empty() || !left.is_empty() {
                    tracing::info!(node = %id, role = "leader", ?joined, ?left, live = ?now.names, "membership changed");
                }
            } else {
                tracing::info!(node = %id, role = "leader", live = ?now.names, "devices live");
            }
            known = Some(now.names);
        }
        tokio::select! {
            r = members.changed() => if r.is_err() { return },
            _ = leader.lost() => return,
        }
    }
}
