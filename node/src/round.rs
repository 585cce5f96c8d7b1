//! One round, follower side ([`run_sensor`]) and leader side ([`lead_rounds`]).
//!
//! ## The protocol
//! 1. The leader opens round `r = /rounds/last + 1` by creating `/barrier` (data: `r`), in a
//!    transaction that checks its election znode still exists (before the very first round
//!    the same transaction creates `/rounds/last = 0`, so followers always have it to check).
//! 2. Every node — the leader too — waits for a barrier newer than the last one it served
//!    ([`Barrier::wait_raised`]), takes exactly one reading and writes it to its ephemeral
//!    `/mediciones/<id>` (ASCII decimal) **only if that round is still open** (see below),
//!    then increments `/counter` once (off the critical path, batched under contention:
//!    [`run_sensor`]).
//! 3. At `open + sampling_period` the leader reads `/mediciones/*` and averages the readings
//!    that count for the round (the rule below). The period is the live one: a change made
//!    while the round is open moves its close to `open + new period` (at once if that is
//!    already past). Rounds close on a fixed cadence: each opens when the previous closes.
//! 4. The leader commits, in **one** ZooKeeper transaction: check own election znode;
//!    create `/rounds/outbox/<r>` (the [`RoundResult`]); set `/rounds/last = r` (compare-
//!    and-set on its version); delete `/barrier`. Either all of it happens or none.
//! 5. Delivery ([`crate::outbox`]) sends committed rounds to the API in order.
//!
//! ## Which readings count: the one rule
//! **A reading counts for the round in progress if it was written after the previous round
//! closed**: its znode's `mzxid` is greater than `Z`, the zxid of the transaction that
//! committed round `r - 1`. That transaction is the only write to `/rounds/last`, so `Z` is
//! `/rounds/last`'s mzxid (0 before the first commit): [`RoundState::read`] learns it from
//! ZooKeeper, [`RoundState::counts`] is the rule, applied by [`fresh_readings`].
//! * *Each live sensor once, whatever protocol it speaks.* A kazoo follower publishes as soon
//!   as its `Barrier.wait()` returns, i.e. right after the previous round's barrier was
//!   removed and before the next one exists; ours publish after the barrier appears. Both
//!   land after `Z`. One znode per sensor: at most one value per sensor per round.
//! * *Never a reading twice.* Round `r` counts writes in `(Z(r-1), Z(r)]`, round `r + 1` those
//!   after `Z(r)`: the windows do not overlap. A stale value (a node that missed rounds) is
//!   older than `Z` and excluded.
//! * *Failover and re-open.* A new leader reads `Z` from ZooKeeper, never from memory; a round
//!   re-opened under a new barrier keeps its number and its `Z`; the commit's compare-and-set
//!   on `/rounds/last` proves `Z` did not move between the read and the commit.
//! * *A late reading never moves into a later round.* Our follower writes its reading in a
//!   transaction that checks the barrier it took the reading for is still up (its version)
//!   **and** that `/rounds/last` still has the version it had under that barrier (a barrier
//!   re-created for the next round has version 0 again; `/rounds/last` tells them apart).
//!   If the round closed meanwhile the reading is dropped: logged, not counted in `/counter`,
//!   and the sensor serves the next barrier. A kazoo follower does not guard its write; the
//!   rule tolerates it (its write after a barrier's removal is meant for the next round).
//!
//! Limits: a write landing between the leader's read at close and its commit counts in no
//! round (it was late for its own). A kazoo leader does not write `/rounds/last`, so our first
//! round after a stretch led by kazoo counts each live sensor's newest reading since our
//! last commit.
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
use tokio::time::Instant;
use zookeeper_client as zkc;

use crate::layout;
use crate::outbox::{multi_error, Outbox};
use crate::zk::barrier::Raised;
use crate::zk::{self, Barrier, ChildrenWatch, Counter, Leadership, Session, ZkError};
use crate::RoundResult;
pub use sensor_coord::rounds::RoundState;

/// Range of the simulated sensor, °C.
pub const READING_RANGE: std::ops::Range<f64> = 15.0..35.0;

/// Takes one reading (simulated: uniform in [`READING_RANGE`], two decimals).
pub fn take_reading() -> f64 {
    let v: f64 = rand::rng().random_range(READING_RANGE);
    (v * 100.0).round() / 100.0
}

/// What became of a reading handed to [`publish_reading`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// Written into the round it was taken for; `mzxid` of the write (-1 when the server
    /// did not report it: ZooKeeper 3.8.0's multi create).
    Written {
        /// zxid of the write.
        mzxid: i64,
    },
    /// The round it was taken for had closed: not written (it must not count for a later one).
    Late,
}

/// Follower side, run by every node: one reading per barrier, until `stop` turns true.
///
/// Survives disconnections and session expiry (its ephemeral reading is re-created on the
/// next round). A stop request is honoured only between rounds: a reading once published is
/// counted before the task returns, so `/counter` equals the readings published. A reading
/// whose round closed before it could be written is dropped and not counted
/// ([`Published::Late`]).
pub async fn run_sensor(session: Session, id: String, stop: watch::Receiver<bool>) {
    let tally = Tally::start(Counter::new(session.clone(), layout::COUNTER), id.clone());
    sensor_loop(&session, &id, stop, &tally).await;
    tally.finish().await;
}

/// Counts this sensor's published readings in `/counter`, off the sensor's critical path.
///
/// Every sensor publishes right after the barrier appears, so N increments race for the one
/// znode at the same instant, and each failed compare-and-set is still a replicated, logged
/// transaction (measured: ~7 failed attempts per increment at 100 sensors, ~13 at 300). So
/// the increment is not awaited before the next round: a background task starts it after a
/// random delay of up to [`TALLY_SPREAD`] (decorrelating the fleet), backs off from
/// [`TALLY_MIN_BACKOFF`] up to [`TALLY_MAX_BACKOFF`] on conflicts, and adds every reading published meanwhile in one
/// increment. Still exactly once per reading ([`Counter::add`]); `/counter` may lag the
/// readings by a few hundred milliseconds. [`Tally::finish`] waits until all is counted.
struct Tally {
    tx: tokio::sync::mpsc::UnboundedSender<()>,
    /// Cuts the random delay short when the sensor stops.
    flush: std::sync::Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// Longest random delay before a sensor's increment (see [`Tally`]).
pub const TALLY_SPREAD: Duration = Duration::from_millis(1000);
/// First back-off of a sensor's increment after a version conflict (see [`Tally`]).
pub const TALLY_MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Back-off cap of a sensor's increment after version conflicts (see [`Tally`]).
pub const TALLY_MAX_BACKOFF: Duration = Duration::from_millis(2000);

impl Tally {
    fn start(counter: Counter, id: String) -> Tally {
        let counter = counter.with_backoff(TALLY_MIN_BACKOFF, TALLY_MAX_BACKOFF);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let flush = std::sync::Arc::new(tokio::sync::Notify::new());
        let flushing = flush.clone();
        let task = tokio::spawn(async move {
            let mut stopping = false;
            while rx.recv().await.is_some() {
                if !stopping {
                    let spread = rand::rng().random_range(0..=TALLY_SPREAD.as_millis() as u64);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(spread)) => {}
                        _ = flushing.notified() => stopping = true,
                    }
                }
                let mut readings = 1;
                while rx.try_recv().is_ok() {
                    readings += 1;
                }
                match counter.add(readings).await {
                    Ok(_) => {}
                    Err(ZkError::Closed) => return,
                    Err(e) => {
                        tracing::warn!(node = %id, readings, error = %e, "counter increment failed")
                    }
                }
            }
        });
        Tally { tx, flush, task }
    }

    /// One more reading published.
    fn count(&self) {
        let _ = self.tx.send(());
    }

    /// Waits until every reading handed to [`Tally::count`] is in `/counter` (or the session
    /// closed).
    async fn finish(self) {
        self.flush.notify_one();
        drop(self.tx);
        let _ = self.task.await;
    }
}

async fn sensor_loop(session: &Session, id: &str, mut stop: watch::Receiver<bool>, tally: &Tally) {
    let barrier = Barrier::new(session.clone(), layout::BARRIER);
    let mut last_barrier: Option<i64> = None;
    loop {
        let next = tokio::select! {
            b = barrier.wait_raised(last_barrier, None) => b,
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
        match publish_reading(session, id, value, b).await {
            Ok(Published::Written { mzxid }) => {
                tracing::debug!(node = %id, barrier = b.id, value, mzxid, "reading taken");
                last_barrier = Some(b.id);
                tally.count();
            }
            Ok(Published::Late) => {
                tracing::info!(node = %id, barrier = b.id, value, "reading too late: its round closed before it was written; dropped");
                last_barrier = Some(b.id);
            }
            Err(ZkError::Closed) => return,
            Err(e) => {
                // Not marked as served: try again for the same barrier if it is still up.
                tracing::warn!(node = %id, barrier = b.id, error = %e, "publishing the reading failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Writes `value` to `/mediciones/<id>` (ephemeral, created if missing) for the round of
/// barrier `taken_for`, only if that round is still open: see the module doc. Returns
/// [`Published::Late`] (nothing written) if it closed.
///
/// After a session expiry the old session's znode may linger for up to one session timeout:
/// if it exists but is owned by another session, it is deleted and re-created as ours.
pub async fn publish_reading(
    session: &Session,
    id: &str,
    value: f64,
    taken_for: Raised,
) -> Result<Published, ZkError> {
    let client = session.wait_connected().await?;
    let path = layout::reading(id);
    let data = format_reading(value);
    let me = client.session_id().0;
    // Read after the barrier was seen, so a commit after it shows here. If its round already
    // closed, a barrier up now is a newer one (possibly of the same version): do not write.
    let state = RoundState::read(&client).await?;
    if state.closed_at > taken_for.id {
        return Ok(Published::Late);
    }
    let checks = 1 + usize::from(state.version.is_some());
    for _ in 0..5 {
        let stat = match client.check_stat(&path).await {
            Ok(s) => s,
            Err(e) => return Err(ZkError::zk("exists", &path, e)),
        };
        let mut txn = client.new_multi_writer();
        let bad = |e| ZkError::zk("multi", &path, e);
        taken_for.guard(&mut txn, layout::BARRIER)?;
        if let Some(v) = state.version {
            txn.add_check_version(layout::ROUNDS_LAST, v).map_err(bad)?;
        }
        match stat {
            Some(stat) if stat.ephemeral_owner == me => txn
                .add_set_data(&path, data.as_bytes(), None)
                .map_err(bad)?,
            Some(_) => match client.delete(&path, None).await {
                Ok(()) | Err(zkc::Error::NoNode) => continue,
                Err(e) => return Err(ZkError::zk("delete", &path, e)),
            },
            None => {
                zk::ensure_path(&client, layout::READINGS).await?;
                txn.add_create(&path, data.as_bytes(), &zk::ephemeral())
                    .map_err(bad)?
            }
        }
        match txn.commit().await {
            Ok(results) => {
                let mzxid = match results.last() {
                    Some(zkc::MultiWriteResult::SetData { stat }) => stat.mzxid,
                    Some(zkc::MultiWriteResult::Create { stat, .. }) => stat.mzxid,
                    _ => -1,
                };
                return Ok(Published::Written { mzxid });
            }
            Err(zkc::MultiWriteError::OperationFailed { index, source })
                if index < checks
                    && matches!(source, zkc::Error::NoNode | zkc::Error::BadVersion) =>
            {
                return Ok(Published::Late)
            }
            // Our znode vanished (set) or appeared (create) meanwhile: look again.
            Err(zkc::MultiWriteError::OperationFailed {
                source: zkc::Error::NoNode | zkc::Error::NodeExists,
                ..
            }) => continue,
            Err(zkc::MultiWriteError::OperationFailed { source, .. })
            | Err(zkc::MultiWriteError::RequestFailed { source }) => {
                return Err(ZkError::zk("multi", &path, source))
            }
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
        let opened = match last_close {
            // On schedule (or a little late): keep the cadence — this round opened when the
            // previous one closed — as long as the sensors still get half a period to read.
            Some(prev) if prev + period > now + period / 2 => prev,
            _ => now,
        };
        match one_round(ctx, leader, opened).await {
            Ok((_, closed)) => {
                // `one_round` logged the commit.
                last_close = Some(closed);
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

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Opens (or resumes) one round, counted as opened at `opened`; waits until `opened` + the
/// live sampling period (see [`wait_for_close`]), averages, commits, and logs the commit
/// (with how long reading `/mediciones` took at the close and the overhead beyond the
/// period). Returns the result and when the round actually closed.
async fn one_round(
    ctx: &LeaderContext,
    leader: &Leadership,
    opened: Instant,
) -> Result<(RoundResult, Instant), ZkError> {
    let client = ctx.session.client()?;
    zk::ensure_path(&client, layout::ROUNDS).await?;
    let mut state = RoundState::read(&client).await?;
    let round = state.last + 1;
    let barrier = match client.check_stat(layout::BARRIER).await {
        Ok(Some(stat)) => {
            tracing::info!(node = %ctx.id, round, "resuming the round left open by the previous leader");
            stat.czxid
        }
        Ok(None) => {
            let mut txn = leader.guarded_multi(&client, layout::BARRIER);
            txn.create(
                layout::BARRIER,
                round.to_string().as_bytes(),
                &zk::persistent(),
            );
            // Before the first round: /rounds/last = 0, so followers can guard their writes.
            if state.version.is_none() {
                txn.create(layout::ROUNDS_LAST, b"0", &zk::persistent());
            }
            match txn.commit_raw().await? {
                Ok(_) if state.version.is_none() => state.version = Some(0),
                Ok(_) => {}
                Err(zkc::MultiWriteError::OperationFailed {
                    index: 1,
                    source: zkc::Error::NodeExists,
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
    let mut period = ctx.period.clone();
    let mut opened = opened;
    let mut close_at = opened + *period.borrow_and_update();
    let (readings, read_time) = loop {
        tracing::debug!(node = %ctx.id, round, barrier, since = state.closed_at, "round open");
        if wait_for_close(ctx, leader, round, &mut period, opened, &mut close_at).await {
            return Err(ZkError::LeadershipLost);
        }
        let client = ctx.session.client()?;
        let read_start = Instant::now();
        let readings = fresh_readings(&client, &state).await?;
        if !readings.is_empty() {
            break (readings, read_start.elapsed());
        }
        // Nobody's reading counts: e.g. every session expired after the sensors had served
        // the barrier (their ephemeral readings vanished, and they will not read the same
        // barrier twice). Re-open the round under a new barrier, same number and same rule.
        tracing::warn!(node = %ctx.id, round, barrier, "no readings survived for this round; re-opening it");
        barrier = reopen_barrier(&client, leader, round).await?;
        opened = Instant::now();
        close_at = opened + *period.borrow_and_update();
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
    // The commit and its log lines run in a task of their own: a leader told to stop
    // (SIGTERM: the campaign loop drops this future to resign) while the transaction is on
    // the wire must still report a commit that ZooKeeper applied. Resigning deletes the
    // election znode after it on the same session, so the commit's answer arrives first.
    let guard = leader.guard();
    let included: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let values: Vec<f64> = readings.iter().map(|(_, v)| *v).collect();
    let (id, since, version, logged) = (
        ctx.id.clone(),
        state.closed_at,
        state.version,
        result.clone(),
    );
    let commit = tokio::spawn(async move {
        let mut txn = guard.multi(&client, layout::ROUNDS);
        txn.create(&layout::outbox_entry(round), &data, &zk::persistent());
        match version {
            Some(v) => txn.set_data(layout::ROUNDS_LAST, round.to_string().as_bytes(), Some(v)),
            None => txn.create(
                layout::ROUNDS_LAST,
                round.to_string().as_bytes(),
                &zk::persistent(),
            ),
        };
        txn.delete(layout::BARRIER, None);
        // Logged before the answer: if it is lost (connection loss, SIGKILL), whoever reads
        // the logs can still tell what this leader tried to commit.
        tracing::debug!(node = %id, round, barrier, since, value = logged.value, samples = logged.samples, fencing = logged.fencing, included = ?included, values = ?values, "round commit sent");
        match txn.commit_raw().await? {
            Ok(_) => {
                tracing::debug!(node = %id, round, barrier, since, included = ?included, values = ?values, "round readings averaged");
                // Overhead beyond the period: close deadline -> commit acknowledged. The
                // close deadline is also logged in wall-clock time, so a benchmark can
                // measure close -> delivered against the API's arrival times.
                let overhead = Instant::now().saturating_duration_since(close_at);
                let closed_unix_ms = unix_ms().saturating_sub(overhead.as_millis() as u64);
                tracing::info!(node = %id, role = "leader", round, value = logged.value, samples = logged.samples, fencing = logged.fencing, read_ms = read_time.as_secs_f64() * 1e3, commit_overhead_ms = overhead.as_secs_f64() * 1e3, closed_unix_ms, "round committed");
                Ok(())
            }
            Err(zkc::MultiWriteError::RequestFailed { source })
                if zk::session::is_transient(&source) =>
            {
                // Outcome unknown. If it did commit, /rounds/last says so; the next pass (ours
                // or the next leader's) continues from whatever ZooKeeper holds.
                Err(ZkError::zk("multi", layout::ROUNDS, source))
            }
            Err(e) => Err(multi_error(layout::ROUNDS, e)),
        }
    });
    match commit.await {
        Ok(Ok(())) => Ok((result, close_at)),
        Ok(Err(e)) => Err(e),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(ZkError::Closed), // the runtime is shutting down
    }
}

/// Waits until `close_at`. A change of the sampling period applies to the open round at
/// once: it then closes at `opened + new period`, or now if that is past. True if
/// leadership was lost.
async fn wait_for_close(
    ctx: &LeaderContext,
    leader: &Leadership,
    round: u64,
    period: &mut watch::Receiver<Duration>,
    opened: Instant,
    close_at: &mut Instant,
) -> bool {
    let mut live = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(*close_at) => return !leader.is_held(),
            _ = leader.lost() => return true,
            changed = period.changed(), if live => {
                if changed.is_err() {
                    live = false; // no more changes: keep the deadline
                    continue;
                }
                let p = *period.borrow_and_update();
                *close_at = (opened + p).max(Instant::now());
                tracing::info!(node = %ctx.id, role = "leader", round, period_ms = p.as_millis() as u64, "sampling period changed: the open round closes at its opening + the new period");
            }
        }
    }
}

/// Replaces the open barrier by a new one (same round number), guarded by the election
/// znode; returns the new barrier's czxid.
async fn reopen_barrier(
    client: &zkc::Client,
    leader: &Leadership,
    round: u64,
) -> Result<i64, ZkError> {
    let mut txn = leader.guarded_multi(client, layout::BARRIER);
    txn.delete(layout::BARRIER, None);
    txn.create(
        layout::BARRIER,
        round.to_string().as_bytes(),
        &zk::persistent(),
    );
    txn.commit().await?;
    match client.check_stat(layout::BARRIER).await {
        Ok(Some(stat)) => Ok(stat.czxid),
        Ok(None) => Err(ZkError::zk("exists", layout::BARRIER, zkc::Error::NoNode)),
        Err(e) => Err(ZkError::zk("exists", layout::BARRIER, e)),
    }
}

/// The readings that count for the round in progress ([`RoundState::counts`]): `(node id,
/// value)`, sorted by id. Unparseable readings are skipped with a warning (a bad sensor must
/// not stop rounds).
///
/// The readings are fetched concurrently: every `get` is sent at once and they are
/// pipelined on the one session, so the round's close costs about one round trip plus the
/// server's work rather than one round trip per sensor (at 1000 sensors, the difference
/// between milliseconds and a sizeable part of the period).
pub async fn fresh_readings(
    client: &zkc::Client,
    state: &RoundState,
) -> Result<Vec<(String, f64)>, ZkError> {
    let names = match client.list_children(layout::READINGS).await {
        Ok(n) => n,
        Err(zkc::Error::NoNode) => Vec::new(),
        Err(e) => return Err(ZkError::zk("list", layout::READINGS, e)),
    };
    let gets = names.into_iter().map(|name| {
        let path = layout::reading(&name);
        let get = client.get_data(&path);
        async move { (name, path, get.await) }
    });
    let mut out = Vec::new();
    for (name, path, got) in futures::future::join_all(gets).await {
        match got {
            Ok((data, stat)) if state.counts(stat.mzxid) => {
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
