//! Summary of a time range (`/api/v1/stats`), from rollups.

use super::{Stats, Store, StoreError};

impl Store {
    /// Count, first/last time, min/max/mean of the points in `[from_ms, to_ms]`, from rollups
    /// (fast on any history size).
    pub async fn stats(&self, from_ms: i64, to_ms: i64) -> Result<Stats, StoreError> {
        let empty = Stats {
            count: 0,
            first_ms: None,
            last_ms: None,
            min: None,
            max: None,
            mean: None,
        };
        let Some((first, last)) = self.time_bounds().await? else {
            return Ok(empty);
        };
        let (from_ms, to_ms) = (from_ms.max(first), to_ms.min(last));
        if from_ms > to_ms {
            return Ok(empty);
        }
        let acc = self.aggregate_exact(from_ms, to_ms).await?;
        if acc.bucket.count == 0 {
            return Ok(empty);
        }
        let oldest = self.page_asc(from_ms, to_ms, None, 1).await?;
        let newest = self.page_desc(from_ms, to_ms, None, 1).await?;
        let b = acc.bucket;
        Ok(Stats {
            count: b.count,
            first_ms: oldest.first().map(|p| p.cursor.ms),
            last_ms: newest.first().map(|p| p.cursor.ms),
            min: Some(b.min),
            max: Some(b.max),
            mean: Some(b.sum / b.count as f64),
        })
    }
}
