//! Deleting old points (retention), in short batches so ingest is never blocked for long.
//!
//! `lua/trim_points.lua` deletes up to ARGV[2] points with time <= ARGV[1] (KEYS: time,
//! rec) and returns the count; `lua/trim_rollups.lua` deletes up to ARGV[2] rollup buckets
//! with start <= ARGV[1] (KEYS: rollidx, roll).

use redis::AsyncCommands;

use super::planner::ROLLUP_STEPS_MS;
use super::{Store, StoreError};

/// How many points one retention script call deletes, so Redis serves ingest in between.
const RETENTION_BATCH: usize = 500;

/// The point-trimming script.
pub(super) const TRIM_POINTS_LUA: &str = include_str!("lua/trim_points.lua");

/// The rollup-trimming script.
pub(super) const TRIM_ROLLUPS_LUA: &str = include_str!("lua/trim_rollups.lua");

impl Store {
    /// Deletes points with time <= `cutoff_ms` in small batches (each batch is one short
    /// script, so ingest is never blocked for long), the leader changes at or before it,
    /// then rollup buckets that end at or before the cutoff. Returns how many points were deleted.
    pub async fn trim_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let mut deleted = 0u64;
        loop {
            let mut conn = self.conn.clone();
            let n: u64 = self
                .timed(
                    self.scripts
                        .trim_points
                        .key(&self.keys.time)
                        .key(&self.keys.rec)
                        .key(&self.keys.roundidx)
                        .arg(cutoff_ms)
                        .arg(RETENTION_BATCH)
                        .invoke_async(&mut conn),
                )
                .await?;
            deleted += n;
            if n < RETENTION_BATCH as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        // Leader changes are few (one per election), so one command removes them.
        let mut conn = self.conn.clone();
        let _: u64 = self
            .timed(conn.zrembyscore(&self.keys.leaders, "-inf", cutoff_ms))
            .await?;
        for (level, step) in ROLLUP_STEPS_MS.iter().enumerate() {
            // A bucket starting at s ends at s + step - 1; delete those ending <= cutoff.
            let max_start = cutoff_ms - step + 1;
            loop {
                let mut conn = self.conn.clone();
                let n: u64 = self
                    .timed(
                        self.scripts
                            .trim_rollups
                            .key(&self.keys.rollidx[level])
                            .key(&self.keys.roll[level])
                            .key(&self.keys.rollup)
                            .arg(max_start)
                            .arg(RETENTION_BATCH)
                            .arg(step)
                            .invoke_async(&mut conn),
                    )
                    .await?;
                if n < RETENTION_BATCH as u64 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        Ok(deleted)
    }

    /// The cutoff time that keeps only the newest `max_count` points (None if fewer).
    pub async fn count_cutoff(&self, max_count: u64) -> Result<Option<i64>, StoreError> {
        let total = self.count().await?;
        if total <= max_count {
            return Ok(None);
        }
        let rank = (total - max_count - 1) as isize;
        let mut conn = self.conn.clone();
        let at: Vec<(String, f64)> = self
            .timed(conn.zrange_withscores(&self.keys.time, rank, rank))
            .await?;
        Ok(at.first().map(|(_, s)| *s as i64))
    }
}
