//! Per-cluster bookkeeping: the fence (highest fencing token accepted), the last stored
//! round, and the set of clusters.

use redis::AsyncCommands;

use super::keys::pad;
use super::{ClusterId, Store, StoreError};

impl Store {
    /// Highest node round stored so far in the series being written now: the cluster of
    /// the newest stored node round (0 if none). A new series restarts at 1, so a maximum
    /// over all clusters would freeze at the old series' end.
    pub async fn last_round(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let newest: Vec<String> = self.timed(conn.zrevrange(&self.keys.time, 0, 15)).await?;
        let cluster = newest
            .iter()
            .find(|m| m.starts_with("r:"))
            .and_then(|m| m.get(23..))
            .and_then(|c| ClusterId::parse(c).ok())
            .unwrap_or_default();
        let v: Option<String> = self.timed(conn.get(self.keys.last_round(&cluster))).await?;
        Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// Highest fencing token accepted so far from `cluster` (0 if none).
    pub async fn highest_fencing(&self, cluster: &ClusterId) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let v: Option<String> = self.timed(conn.get(self.keys.fence(cluster))).await?;
        Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// Every cluster with a fence or a stored node round, default first, then by id.
    pub async fn clusters(&self) -> Result<Vec<ClusterId>, StoreError> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = self.timed(conn.smembers(&self.keys.clusters)).await?;
        let mut out: Vec<ClusterId> = names
            .iter()
            .filter_map(|n| ClusterId::parse(n).ok())
            .filter(|c| !c.is_default())
            .collect();
        out.sort();
        out.insert(0, ClusterId::default());
        Ok(out)
    }

    /// Sets the fence of `cluster` to `token` (0 removes it: any token is accepted again).
    /// For an operator undoing a forged or obsolete fence (`sensor-api fence reset`); a
    /// real leader's next delivery raises it again. Returns the previous value.
    pub async fn set_fence(&self, cluster: &ClusterId, token: u64) -> Result<u64, StoreError> {
        let before = self.highest_fencing(cluster).await?;
        let mut conn = self.conn.clone();
        let key = self.keys.fence(cluster);
        if token == 0 {
            let _: u64 = self.timed(conn.del(key)).await?;
        } else {
            let _: () = self.timed(conn.set(key, pad(token))).await?;
        }
        Ok(before)
    }
}
