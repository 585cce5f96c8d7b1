//! Retention: deletes averages older than a maximum age and/or beyond a maximum count.
//!
//! Runs as a background task, never on the ingest path. Each pass deletes in batches of a
//! few hundred points (one short Lua script per batch), so Redis keeps serving ingest in
//! between and a large first pass never stalls writes. With several API instances on one
//! Redis every instance may run it: deletions are idempotent.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// What to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Delete points older than this.
    pub max_age: Option<Duration>,
    /// Keep at most this many of the newest points.
    pub max_count: Option<u64>,
    /// Time between passes.
    pub interval: Duration,
}

impl RetentionPolicy {
    /// Whether the policy deletes anything at all.
    pub fn is_active(&self) -> bool {
        self.max_age.is_some() || self.max_count.is_some()
    }
}

/// One pass: computes the cutoff time from both limits and deletes everything at or before
/// it. Returns the number of points deleted.
pub async fn enforce_once(store: &Store, policy: &RetentionPolicy) -> Result<u64, StoreError> {
    let mut cutoff: Option<i64> = None;
    if let Some(age) = policy.max_age {
        let now_ms = i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(i64::MAX);
        let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        cutoff = Some(now_ms.saturating_sub(age_ms));
    }
    if let Some(count) = policy.max_count {
        if let Some(c) = store.count_cutoff(count).await? {
            cutoff = Some(cutoff.map_or(c, |a| a.max(c)));
        }
    }
    match cutoff {
        Some(c) => store.trim_before(c).await,
        None => Ok(0),
    }
}

/// Runs passes every `policy.interval` until the task is dropped/aborted. A failed pass
/// (Redis down) is logged and retried at the next interval.
pub async fn run(store: Store, metrics: Arc<Metrics>, policy: RetentionPolicy) {
    if !policy.is_active() {
        return;
    }
    let mut tick = tokio::time::interval(policy.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match enforce_once(&store, &policy).await {
            Ok(0) => {}
            Ok(n) => {
                metrics.retention_deleted.fetch_add(n, Ordering::Relaxed);
                tracing::info!(deleted = n, "retention pass");
            }
            Err(e) => tracing::warn!(error = %e, "retention pass failed; retrying next interval"),
        }
    }
}
