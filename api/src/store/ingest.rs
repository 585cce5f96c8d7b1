//! Atomic, idempotent, fenced ingest of a batch of points.
//!
//! Check-and-store of a batch, atomically (Redis runs a script without interleaving):
//! `lua/ingest.lua` after `lua/common.lua`.
//!
//! KEYS: rec, time, fence, last_round (both of the batch's cluster), legacy_seq, rollup,
//! leaders, clusters, roundidx, roundidx_state, then rollidx per level.
//! ARGV: nlevels, steps..., nitems, then per item: kind ("r"/"l"), round (20 digits),
//! value, fencing (20 digits), taken_at_ms, samples, json, leader; then the batch's
//! cluster id (node round members are `r:<round>` for `default`, `r:<round>:<cluster>`
//! otherwise, as `keys::round_member` builds them).
//! Returns a flat array: status per item, and for legacy items the assigned member.
//!
//! Cost: a single new round appended after the newest is about 14 Redis calls (fence,
//! duplicate check, record, time index, round index and its two neighbour reads, one
//! `HMGET` and one `HSET` for all five rollup levels, last round); a batch adds per item
//! its record, time, round-index and neighbour calls, and shares the rest. A back-dated
//! round costs the same plus the re-evaluation of its successor's leader change, however
//! many legacy points lie around it.

use super::keys::pad;
use super::planner::ROLLUP_STEPS_MS;
use super::{Average, ClusterId, IngestResult, IngestStatus, NewPoint, Store, StoreError};

/// The ingest script (see the module doc for its keys and arguments).
pub(super) const INGEST_LUA: &str = include_str!("lua/ingest.lua");

impl Store {
    /// Stores points atomically: every node round is checked (duplicate / conflicting value
    /// / stale fencing token, within its cluster) and, unless one item is rejected, all new
    /// items are written together with their rollups. Legacy points are always stored (in
    /// the default cluster). Fails with [`StoreError::InvalidArgument`] when the node rounds
    /// of one call belong to different clusters (callers validate that first).
    pub async fn ingest(&self, points: &[NewPoint]) -> Result<Vec<IngestResult>, StoreError> {
        let k = &self.keys;
        let mut clusters = points.iter().filter_map(|p| match p {
            NewPoint::Round(a) => Some(&a.cluster),
            NewPoint::Legacy { .. } => None,
        });
        let default = ClusterId::default();
        let cluster = clusters.next().unwrap_or(&default);
        if clusters.any(|c| c != cluster) {
            return Err(StoreError::InvalidArgument(
                "the rounds of one batch must belong to one cluster".into(),
            ));
        }
        let mut inv = self.scripts.ingest.prepare_invoke();
        inv.key(&k.rec)
            .key(&k.time)
            .key(k.fence(cluster))
            .key(k.last_round(cluster))
            .key(&k.legacy_seq)
            .key(&k.rollup)
            .key(&k.leaders)
            .key(&k.clusters)
            .key(&k.roundidx)
            .key(&k.roundidx_state);
        for idx in &k.rollidx {
            inv.key(idx);
        }
        inv.arg(ROLLUP_STEPS_MS.len());
        for step in ROLLUP_STEPS_MS {
            inv.arg(step);
        }
        inv.arg(points.len());
        for p in points {
            match p {
                NewPoint::Round(a) => {
                    let json = serde_json::to_string(a)
                        .map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
                    inv.arg("r")
                        .arg(pad(a.round))
                        .arg(a.value.to_string())
                        .arg(pad(a.fencing))
                        .arg(a.taken_at_ms)
                        .arg(a.samples)
                        .arg(json)
                        .arg(&a.leader);
                }
                NewPoint::Legacy {
                    value,
                    taken_at_ms,
                    taken_at,
                } => {
                    let a = Average {
                        round: 0,
                        value: *value,
                        samples: 1,
                        leader: "legacy".to_string(),
                        fencing: 0,
                        taken_at: taken_at.clone(),
                        taken_at_ms: *taken_at_ms,
                        cluster: ClusterId::default(),
                    };
                    let json = serde_json::to_string(&a)
                        .map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
                    inv.arg("l")
                        .arg("")
                        .arg(value.to_string())
                        .arg("")
                        .arg(taken_at_ms)
                        .arg(1)
                        .arg(json)
                        .arg("");
                }
            }
        }
        inv.arg(cluster.as_str());
        let mut conn = self.conn.clone();
        let flat: Vec<String> = self.timed(inv.invoke_async(&mut conn)).await?;
        if flat.len() != points.len() * 2 {
            return Err(StoreError::Corrupt(format!(
                "ingest script returned {} fields for {} items",
                flat.len(),
                points.len()
            )));
        }
        points
            .iter()
            .zip(flat.chunks(2))
            .map(|(p, pair)| {
                let status = match pair[0].as_str() {
                    "stored" => IngestStatus::Stored,
                    "duplicate" => IngestStatus::Duplicate,
                    "conflict" => IngestStatus::Conflict,
                    "stale_leader" => IngestStatus::StaleLeader,
                    "not_applied" => IngestStatus::NotApplied,
                    other => return Err(StoreError::Corrupt(format!("ingest status {other:?}"))),
                };
                let round = match p {
                    NewPoint::Round(a) => a.round,
                    NewPoint::Legacy { .. } => 0,
                };
                Ok(IngestResult { round, status })
            })
            .collect()
    }
}
