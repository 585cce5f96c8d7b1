//! Leader changes, recorded at ingest in `P:leaders` and read by time range.

use redis::AsyncCommands;

use super::{Store, StoreError};

/// A change of leader between two consecutive stored node rounds (time order, legacy
/// points skipped), recorded at ingest in `P:leaders`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderChange {
    /// When the first round of the new leader was taken (epoch ms).
    pub at_ms: i64,
    /// That round.
    pub round: u64,
    /// Its fencing token.
    pub fencing: u64,
    /// Leader of the stored round just before it.
    pub from: String,
    /// The new leader.
    pub to: String,
}

/// Most leader changes [`Store::leader_changes`] returns for one range (the newest ones):
/// bounds a query's cost even for a leader that flapped every round.
pub const LEADER_CHANGES_LIMIT: usize = 10_000;

impl Store {
    /// Leader changes with `from_ms <= at_ms <= to_ms`, oldest first: one `ZREVRANGEBYSCORE`
    /// over the changes recorded at ingest, so the cost depends on the number of changes,
    /// not on the number of points. At most the newest [`LEADER_CHANGES_LIMIT`]. Changes
    /// among points stored before leader changes were recorded are not known (no
    /// backfill). Fails when Redis does, or with [`StoreError::Corrupt`] for an entry this
    /// code did not write.
    pub async fn leader_changes(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<LeaderChange>, StoreError> {
        if from_ms > to_ms {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let entries: Vec<(String, f64)> = self
            .timed(conn.zrevrangebyscore_limit_withscores(
                &self.keys.leaders,
                to_ms,
                from_ms,
                0,
                LEADER_CHANGES_LIMIT as isize,
            ))
            .await?;
        let mut changes = entries
            .iter()
            .map(|(entry, score)| decode_leader_change(entry, *score as i64))
            .collect::<Result<Vec<_>, _>>()?;
        changes.reverse();
        Ok(changes)
    }
}

/// Parses a `P:leaders` entry: `<round> <fencing> ["from","to"]`.
fn decode_leader_change(entry: &str, at_ms: i64) -> Result<LeaderChange, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("leader change entry {entry:?}"));
    let mut parts = entry.splitn(3, ' ');
    let round = parts
        .next()
        .and_then(|r| r.parse().ok())
        .ok_or_else(corrupt)?;
    let fencing = parts
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(corrupt)?;
    let (from, to): (String, String) = parts
        .next()
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(corrupt)?;
    Ok(LeaderChange {
        at_ms,
        round,
        fencing,
        from,
        to,
    })
}
