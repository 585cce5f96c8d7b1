//! The values the store keeps and returns: stored averages, per-bucket aggregates, range
//! summaries, new points and page positions. Plain data, no Redis.

use serde::{Deserialize, Serialize};

use super::ClusterId;

/// One stored average, as the nodes deliver it (plus the server-side parsed time).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Average {
    /// Round number (unique per node round; 0 for legacy `/nuevo` points).
    pub round: u64,
    /// The average value (always finite).
    pub value: f64,
    /// How many sensor readings the average is made of (1 for legacy points).
    pub samples: u32,
    /// Id of the leader that computed it (`"legacy"` for `/nuevo` points).
    pub leader: String,
    /// The leader's fencing token (0 for legacy points).
    pub fencing: u64,
    /// RFC 3339 time as received (server time for legacy points).
    pub taken_at: String,
    /// `taken_at` in milliseconds since the Unix epoch, parsed by the server.
    pub taken_at_ms: i64,
    /// The cluster (ensemble) whose series the round belongs to; omitted for the default
    /// cluster, so records stored by earlier versions decode unchanged.
    #[serde(default, skip_serializing_if = "ClusterId::is_default")]
    pub cluster: ClusterId,
}

/// Aggregate of the points whose time falls in `[start_ms, start_ms + width)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// Start of the bucket, a multiple of the bucket width.
    pub start_ms: i64,
    /// Number of points.
    pub count: u64,
    /// Sum of their values.
    pub sum: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Value of the latest point (by time, then by arrival).
    pub last: f64,
    /// Sum of the points' `samples`.
    pub samples_sum: u64,
}

/// Summary of a time range (the `/api/v1/stats` answer).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Stats {
    /// Number of stored points in the range.
    pub count: u64,
    /// Time of the oldest point, ms since epoch.
    pub first_ms: Option<i64>,
    /// Time of the newest point, ms since epoch.
    pub last_ms: Option<i64>,
    /// Smallest value.
    pub min: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
    /// Arithmetic mean of the values.
    pub mean: Option<f64>,
}

/// A new point for [`Store::ingest`]: either a node round or a legacy reading.
#[derive(Clone, Debug, PartialEq)]
pub enum NewPoint {
    /// A node-delivered average; idempotent on its round.
    Round(Average),
    /// A legacy `/nuevo` reading: numbered by the legacy counter, never deduplicated.
    Legacy {
        /// The value.
        value: f64,
        /// Server time when it was received, ms since epoch.
        taken_at_ms: i64,
        /// The same time in RFC 3339.
        taken_at: String,
    },
}

/// A position in the time order: the `(taken_at_ms, member)` of a point. Pages continue
/// strictly before (older) or after (newer) it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Time of the point.
    pub ms: i64,
    /// Its member name (`r:…` or `l:…`).
    pub member: String,
}

impl Cursor {
    /// Text form used in URLs: `<ms>_<member>`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.ms, self.member)
    }

    /// Parses [`Cursor::encode`]'s form; `None` if malformed.
    pub fn decode(text: &str) -> Option<Cursor> {
        let (ms, member) = text.split_once('_')?;
        let ms: i64 = ms.parse().ok()?;
        let (kind, rest) = member.split_once(':')?;
        let (digits, cluster) = match rest.split_once(':') {
            Some((d, c)) => (d, Some(c)),
            None => (rest, None),
        };
        let valid = (kind == "r" || (kind == "l" && cluster.is_none()))
            && digits.len() == 20
            && digits.bytes().all(|b| b.is_ascii_digit())
            && cluster.is_none_or(|c| ClusterId::parse(c).is_ok_and(|c| !c.is_default()));
        valid.then(|| Cursor {
            ms,
            member: member.to_string(),
        })
    }
}

/// One point with its position, as returned by page queries.
#[derive(Clone, Debug, PartialEq)]
pub struct Positioned {
    /// The point.
    pub average: Average,
    /// Its position (use as a cursor to continue after it).
    pub cursor: Cursor,
}
