//! Atomic, idempotent, fenced ingest of a batch of points, with group commit.
//!
//! Check-and-store of a batch, atomically (Redis runs a script without interleaving):
//! `lua/ingest.lua` after `lua/common.lua`. One script call applies a *group* of
//! independent batches, one after the other: each batch is checked and, unless one of its
//! items is rejected, written before the next one is checked, so every batch gets exactly
//! the answer it would have got from a call of its own at that point, and a refused batch
//! writes nothing and does not affect its neighbours.
//!
//! # Group commit
//! [`Store::ingest`] hands its batch to one writer task per store (an mpsc queue of
//! [`QUEUE`] batches, each with a oneshot reply). The writer takes the first waiting batch
//! and every batch queued behind it (at most [`GROUP_BATCHES`] batches and
//! [`GROUP_ITEMS`] items) into one script call, with at most [`IN_FLIGHT`] calls running:
//! batches that arrive while a call is in flight share the next one. Under concurrent
//! ingest this saves the per-call work (the `EVALSHA` round trip, script set-up, fence,
//! last round, and the rollup `HMGET`/`HSET`, which are shared by the group); a lone
//! request still makes one call at once. A request that gave up (its future dropped, e.g.
//! by the request timeout) before its group was sent is left out of it. A call that fails
//! for want of Redis (down, too slow) fails every batch of its group with the same error;
//! a failing script (one batch names damaged data) is retried one batch per call, so only
//! that batch fails.
//!
//! KEYS: rec, time, legacy_seq, rollup, leaders, clusters, roundidx, roundidx_state,
//! rollidx per level, roundidx_v1, then per batch its cluster's fence and last_round.
//! ARGV: nlevels, steps..., nbatches, then per batch: cluster id, nitems, then per item:
//! kind ("r"/"l"), round (20 digits), value, fencing (20 digits), taken_at_ms, samples,
//! json, leader (node round members are `r:<round>` for `default`, `r:<round>:<cluster>`
//! otherwise, as `keys::round_member` builds them).
//! Returns a flat array: per batch in order, status per item, and for stored items the
//! member (empty otherwise).
//!
//! Cost: one script call per group. Per call: one `HMGET` of every round the group names
//! (duplicate check), the fence and last round of each cluster, each cluster's newest
//! round-index entry, one `HMGET`/`HSET` for every touched rollup bucket, one bulk `HSET` (records)
//! and two bulk `ZADD`s (time index, round index) for all the group's new points. Per
//! round later than its cluster's newest index entry before the call: no Redis command
//! of its own (its neighbours are known from that entry and the call's own rounds). Any
//! other round adds two index reads (after the call's pending writes are flushed) and the
//! re-evaluation of its successor's leader change, however many legacy points or other
//! clusters' rounds lie around it.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use serde::de::IntoDeserializer;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::keys::{pad, Keys};
use super::planner::ROLLUP_STEPS_MS;
use super::{
    Average, ClusterId, IngestResult, IngestStatus, NewPoint, RoundResult, Scripts, Store,
    StoreError,
};
use crate::metrics::LatencyHistogram;

/// The ingest script (see the module doc for its keys and arguments).
pub(super) const INGEST_LUA: &str = include_str!("lua/ingest.lua");

/// Batches waiting for the writer; a full queue makes [`Store::ingest`] wait (its request
/// timeout still applies).
pub(super) const QUEUE: usize = 1024;
/// At most this many batches share one script call.
pub(super) const GROUP_BATCHES: usize = 64;
/// A group takes no further batch once it holds this many items (a larger batch goes
/// alone), which bounds the Redis time of one call.
pub(super) const GROUP_ITEMS: usize = 256;
/// Script calls of one store running at the same time.
pub(super) const IN_FLIGHT: usize = 2;

/// Items per ingest item in ARGV (see the module doc).
const ITEM_ARGS: usize = 8;

/// One batch waiting for the writer: its script arguments, built by the caller.
pub(super) struct Job {
    fence_key: String,
    last_key: String,
    /// cluster id, nitems, then [`ITEM_ARGS`] per item.
    args: Vec<String>,
    items: usize,
    rounds: Vec<u64>,
    reply: oneshot::Sender<Result<Vec<IngestResult>, StoreError>>,
}

/// What the writer task needs of the store (not the store itself: the writer ends when
/// the last store handle, and with it the queue's sender, is dropped).
pub(super) struct Writer {
    pub(super) conn: ConnectionManager,
    pub(super) keys: Arc<Keys>,
    pub(super) scripts: Arc<Scripts>,
    pub(super) latency: Arc<LatencyHistogram>,
}

impl Store {
    /// Stores points atomically: every node round is checked (duplicate / conflicting value
    /// / stale fencing token, within its cluster) and, unless one item is rejected, all new
    /// items are written together with their rollups. Legacy points are always stored (in
    /// the default cluster). Fails with [`StoreError::InvalidArgument`] when the node rounds
    /// of one call belong to different clusters (callers validate that first). Concurrent
    /// calls may share one script call (see the module doc); the answer is the same.
    pub async fn ingest(&self, points: &[NewPoint]) -> Result<Vec<IngestResult>, StoreError> {
        let (job, answer) = self.job(points)?;
        let queue = self.ingest_queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run_writer(self.writer(), rx));
            tx
        });
        queue.send(job).await.map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    fn writer(&self) -> Writer {
        Writer {
            conn: self.conn.clone(),
            keys: self.keys.clone(),
            scripts: self.scripts.clone(),
            latency: self.latency.clone(),
        }
    }

    /// The script arguments of one batch, and where its answer will arrive.
    #[allow(clippy::type_complexity)]
    fn job(
        &self,
        points: &[NewPoint],
    ) -> Result<
        (
            Job,
            oneshot::Receiver<Result<Vec<IngestResult>, StoreError>>,
        ),
        StoreError,
    > {
        let k = &self.keys;
        let mut clusters = points.iter().filter_map(|p| match p {
            NewPoint::Round(a) => Some(&a.result.cluster),
            NewPoint::Legacy { .. } => None,
        });
        let default = ClusterId::default();
        let cluster = clusters.next().unwrap_or(&default);
        if clusters.any(|c| c != cluster) {
            return Err(StoreError::InvalidArgument(
                "the rounds of one batch must belong to one cluster".into(),
            ));
        }
        let mut args = Vec::with_capacity(2 + points.len() * ITEM_ARGS);
        args.push(cluster.as_str().to_string());
        args.push(points.len().to_string());
        let mut rounds = Vec::with_capacity(points.len());
        for p in points {
            match p {
                NewPoint::Round(a) => {
                    let json = serde_json::to_string(a)
                        .map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
                    args.extend([
                        "r".to_string(),
                        pad(a.result.round),
                        a.result.value.to_string(),
                        pad(a.result.fencing),
                        a.taken_at_ms.to_string(),
                        a.result.samples.to_string(),
                        json,
                        a.result.leader.clone(),
                    ]);
                    rounds.push(a.result.round);
                }
                NewPoint::Legacy {
                    value,
                    taken_at_ms,
                    taken_at,
                } => {
                    let a = Average {
                        result: RoundResult {
                            round: 0,
                            value: *value,
                            samples: 1,
                            leader: "legacy".to_string(),
                            fencing: 0,
                            taken_at: taken_at.clone(),
                            cluster: ClusterId::default(),
                        },
                        taken_at_ms: *taken_at_ms,
                    };
                    let json = serde_json::to_string(&a)
                        .map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
                    args.extend([
                        "l".to_string(),
                        String::new(),
                        value.to_string(),
                        String::new(),
                        taken_at_ms.to_string(),
                        "1".to_string(),
                        json,
                        String::new(),
                    ]);
                    rounds.push(0);
                }
            }
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            fence_key: k.fence(cluster),
            last_key: k.last_round(cluster),
            args,
            items: points.len(),
            rounds,
            reply,
        };
        Ok((job, answer))
    }
}

/// The error of a batch whose writer is gone (its runtime is shutting down).
fn writer_gone() -> StoreError {
    StoreError::Unavailable(redis::RedisError::from((
        redis::ErrorKind::Io,
        "ingest writer stopped",
    )))
}

/// The writer task: groups queued batches into script calls until every sender is gone.
async fn run_writer(writer: Writer, mut rx: mpsc::Receiver<Job>) {
    let writer = Arc::new(writer);
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut items = first.items;
        let mut group = vec![first];
        while group.len() < GROUP_BATCHES && items < GROUP_ITEMS {
            match rx.try_recv() {
                Ok(job) => {
                    items += job.items;
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        // Requests that gave up before their group was sent are not applied, as without
        // grouping.
        group.retain(|job| !job.reply.is_closed());
        if group.is_empty() {
            continue;
        }
        let writer = writer.clone();
        tokio::spawn(async move {
            let _permit = permit;
            writer.commit(group).await;
        });
    }
}

impl Writer {
    /// Runs one script call for `group` and answers each batch.
    ///
    /// A failing script ([`StoreError::Corrupt`]: data the script cannot read under one
    /// batch's keys, such as a record that is not JSON) is that batch's answer, not its
    /// neighbours': the batches of a failed group are tried again one call each, and only
    /// a batch that also fails alone gets the error. Without this, a node retrying a batch
    /// that names a damaged record would fail every batch sharing its call, round after
    /// round. The script reads every record a group names before it writes any batch's
    /// data, so such a failure stored nothing of the group. Outages
    /// ([`StoreError::Unavailable`]) fail the whole group at once: a second call would
    /// only wait for the same timeout.
    async fn commit(&self, group: Vec<Job>) {
        match self.invoke(&group).await {
            Err(e @ StoreError::Corrupt(_)) if group.len() > 1 => {
                tracing::warn!(batches = group.len(), error = %e, "ingest group failed; trying its batches one by one");
                for job in group {
                    if job.reply.is_closed() {
                        continue;
                    }
                    let alone = self.invoke(std::slice::from_ref(&job)).await;
                    deliver(vec![job], alone);
                }
            }
            result => deliver(group, result),
        }
    }

    async fn invoke(&self, group: &[Job]) -> Result<Vec<String>, StoreError> {
        let k = &self.keys;
        let mut inv = self.scripts.ingest.prepare_invoke();
        inv.key(&k.rec)
            .key(&k.time)
            .key(&k.legacy_seq)
            .key(&k.rollup)
            .key(&k.leaders)
            .key(&k.clusters)
            .key(&k.roundidx)
            .key(&k.roundidx_state);
        for idx in &k.rollidx {
            inv.key(idx);
        }
        inv.key(&k.roundidx_v1);
        for job in group {
            inv.key(&job.fence_key).key(&job.last_key);
        }
        inv.arg(ROLLUP_STEPS_MS.len());
        for step in ROLLUP_STEPS_MS {
            inv.arg(step);
        }
        inv.arg(group.len());
        for job in group {
            for a in &job.args {
                inv.arg(a);
            }
        }
        let mut conn = self.conn.clone();
        let start = std::time::Instant::now();
        let result: redis::RedisResult<Vec<String>> = inv.invoke_async(&mut conn).await;
        self.latency.observe(start.elapsed());
        let flat = result.map_err(StoreError::from)?;
        let expected: usize = group.iter().map(|j| j.items * 2).sum();
        if flat.len() != expected {
            return Err(StoreError::Corrupt(format!(
                "ingest script returned {} fields for {} items",
                flat.len(),
                expected / 2
            )));
        }
        Ok(flat)
    }
}

/// Answers every batch of `group` from the result of its one script call: its part of the
/// flat answer, or the call's error. The requester may have given up meanwhile; nothing to
/// do then.
fn deliver(group: Vec<Job>, result: Result<Vec<String>, StoreError>) {
    match result {
        Ok(flat) => {
            let mut rest = flat.as_slice();
            for job in group {
                let (mine, tail) = rest.split_at(job.items * 2);
                rest = tail;
                let _ = job.reply.send(parse(&job.rounds, mine));
            }
        }
        Err(e) => {
            for job in group {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// One batch's part of the script's answer.
fn parse(rounds: &[u64], flat: &[String]) -> Result<Vec<IngestResult>, StoreError> {
    rounds
        .iter()
        .zip(flat.chunks(2))
        .map(|(round, pair)| {
            // The script answers with the wire contract's own status names, so the
            // contract's decoder reads them (no second name table to keep in step).
            let status = IngestStatus::deserialize(pair[0].as_str().into_deserializer()).map_err(
                |e: serde::de::value::Error| {
                    StoreError::Corrupt(format!("ingest status {:?}: {e}", pair[0]))
                },
            )?;
            Ok(IngestResult {
                round: *round,
                status,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_statuses_decode_by_the_wire_names() {
        let flat: Vec<String> = [
            "stored",
            "",
            "duplicate",
            "",
            "conflict",
            "",
            "stale_leader",
            "",
            "not_applied",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let got = parse(&[1, 2, 3, 4, 5], &flat).expect("known statuses");
        let statuses: Vec<IngestStatus> = got.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [
                IngestStatus::Stored,
                IngestStatus::Duplicate,
                IngestStatus::Conflict,
                IngestStatus::StaleLeader,
                IngestStatus::NotApplied
            ]
        );
        assert_eq!(got[3].round, 4);
        let bad = vec!["Stored".to_string(), String::new()];
        assert!(matches!(parse(&[1], &bad), Err(StoreError::Corrupt(_))));
    }
}
