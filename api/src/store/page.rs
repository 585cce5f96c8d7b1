//! Reads of stored points: by round, counts, and pages in time order (cursor paging).
//!
//! One page in either direction. KEYS: time, rec. ARGV: start_ms (the bound paging starts
//! from: max for "desc", min for "asc"), cursor member ("" = none, inclusive start), end_ms,
//! limit, direction ("desc" | "asc"). Points at start_ms up to and including the cursor
//! member (in paging order) are skipped. Returns flat [member, ms, json, ...].

use redis::AsyncCommands;

use super::keys::round_member;
use super::{Average, ClusterId, Cursor, Positioned, Store, StoreError};

/// The paging script (see the module doc).
pub(super) const PAGE_LUA: &str = include_str!("lua/page.lua");

impl Store {
    /// The stored average of node round `round` of `cluster`, if any.
    pub async fn get(
        &self,
        cluster: &ClusterId,
        round: u64,
    ) -> Result<Option<Average>, StoreError> {
        let mut conn = self.conn.clone();
        let json: Option<String> = self
            .timed(conn.hget(&self.keys.rec, round_member(cluster, round)))
            .await?;
        json.map(|j| decode_average(&j)).transpose()
    }

    /// Number of stored points (O(1)).
    pub async fn count(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        self.timed(conn.zcard(&self.keys.time)).await
    }

    /// Number of points with `from_ms <= taken_at_ms <= to_ms` (O(log n)).
    pub async fn count_range(&self, from_ms: i64, to_ms: i64) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        self.timed(conn.zcount(&self.keys.time, from_ms, to_ms))
            .await
    }

    /// Number of points strictly newer than `cursor` (its position from the top), O(log n).
    pub async fn count_newer(&self, cursor: &Cursor) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let newer_time: u64 = self
            .timed(conn.zcount(&self.keys.time, format!("({}", cursor.ms), "+inf"))
            .await?;
        // Points of the same millisecond with a greater member come earlier in newest-first
        // order; there are at most a handful of them.
        let same: Vec<String> = self
            .timed(conn.zrangebyscore(&self.keys.time, cursor.ms, cursor.ms))
            .await?;
        let same_newer = same.iter().filter(|m| **m > cursor.member).count() as u64;
        Ok(newer_time + same_newer)
    }

    /// Up to `limit` points with `from_ms <= time <= to_ms`, newest first, continuing strictly
    /// after (older than) `before` when given. O(log n + limit).
    pub async fn page_desc(
        &self,
        from_ms: i64,
        to_ms: i64,
        before: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<Positioned>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (max_ms, cur) = match before {
            Some(c) if c.ms <= to_ms => (c.ms, c.member.as_str()),
            _ => (to_ms, ""),
        };
        self.page("desc", max_ms, cur, from_ms, limit).await
    }

    /// Up to `limit` points with `from_ms <= time <= to_ms`, oldest first, continuing strictly
    /// after (newer than) `after` when given. O(log n + limit).
    pub async fn page_asc(
        &self,
        from_ms: i64,
        to_ms: i64,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<Positioned>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (min_ms, cur) = match after {
            Some(c) if c.ms >= from_ms => (c.ms, c.member.as_str()),
            _ => (from_ms, ""),
        };
        self.page("asc", min_ms, cur, to_ms, limit).await
    }

    /// Runs the paging script in `direction` ("desc" or "asc"): from `start_ms` (continuing
    /// strictly past member `cur` when non-empty) towards `end_ms`, at most `limit` points.
    async fn page(
        &self,
        direction: &str,
        start_ms: i64,
        cur: &str,
        end_ms: i64,
        limit: usize,
    ) -> Result<Vec<Positioned>, StoreError> {
        let mut conn = self.conn.clone();
        let flat: Vec<String> = self
            .timed(
                self.scripts
                    .page
                    .key(&self.keys.time)
                    .key(&self.keys.rec)
                    .arg(start_ms)
                    .arg(cur)
                    .arg(end_ms)
                    .arg(limit)
                    .arg(direction)
                    .invoke_async(&mut conn),
            )
            .await?;
        decode_positioned(&flat)
    }

    /// Averages with from_ms <= taken_at_ms <= to_ms, ascending by time, at most `limit`.
    pub async fn range_asc(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<Average>, StoreError> {
        Ok(self
            .page_asc(from_ms, to_ms, None, limit)
            .await?
            .into_iter()
            .map(|p| p.average)
            .collect())
    }

    /// Time of the oldest and newest stored point, if any.
    pub async fn time_bounds(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let mut conn = self.conn.clone();
        let first: Vec<(String, f64)> = self
            .timed(conn.zrange_withscores(&self.keys.time, 0, 0))
            .await?;
        let last: Vec<(String, f64)> = self
            .timed(conn.zrange_withscores(&self.keys.time, -1, -1))
            .await?;
        match (first.first(), last.first()) {
            (Some(f), Some(l)) => Ok(Some((f.1 as i64, l.1 as i64))),
            _ => Ok(None),
        }
    }
}

fn decode_average(json: &str) -> Result<Average, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("record {json:?}: {e}")))
}

fn decode_positioned(flat: &[String]) -> Result<Vec<Positioned>, StoreError> {
    flat.chunks(3)
        .map(|t| {
            if t.len() != 3 {
                return Err(StoreError::Corrupt("page triple".into()));
            }
            let ms: f64 = t[1]
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("score {:?}", t[1])))?;
            Ok(Positioned {
                average: decode_average(&t[2])?,
                cursor: Cursor {
                    ms: ms as i64,
                    member: t[0].clone(),
                },
            })
        })
        .collect()
}
