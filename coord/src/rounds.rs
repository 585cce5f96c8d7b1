//! The `/rounds` bookkeeping as ZooKeeper records it: where the round in progress stands
//! ([`RoundState`], with the one freshness rule every reader applies) and the ASCII
//! counters under it ([`read_u64`]). The leader's side of the protocol, which writes them,
//! is the node crate's `round` and `outbox` modules.

use zookeeper_client as zkc;

use crate::layout;
use crate::zk::{self, ZkError};

/// Where the round in progress stands, as ZooKeeper records it in `/rounds/last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundState {
    /// Number of the last committed round (0: none yet). The round in progress is `last + 1`.
    pub last: u64,
    /// `/rounds/last`'s data version; `None` while the znode does not exist. A write checked
    /// against it cannot land after the next commit.
    pub version: Option<i32>,
    /// `Z`: zxid of the transaction that committed round `last` (`/rounds/last`'s mzxid), 0
    /// before the first commit.
    pub closed_at: i64,
}

impl RoundState {
    /// Reads `/rounds/last`. A missing znode is "no round committed yet"; unparseable data
    /// is [`ZkError::Malformed`] (only leaders write it: 0 with the first barrier, then commits).
    pub async fn read(client: &zkc::Client) -> Result<RoundState, ZkError> {
        Ok(match read_number(client, layout::ROUNDS_LAST).await? {
            Some((last, stat)) => RoundState {
                last,
                version: Some(stat.version),
                closed_at: if last == 0 { 0 } else { stat.mzxid },
            },
            None => RoundState {
                last: 0,
                version: None,
                closed_at: 0,
            },
        })
    }

    /// The one freshness rule: a reading whose znode was last written at `mzxid` counts for
    /// the round in progress iff it was written after the previous round closed.
    pub fn counts(&self, mzxid: i64) -> bool {
        mzxid > self.closed_at
    }
}

/// A number stored as ASCII in a znode, with the version to compare-and-set against
/// (`None` when the znode does not exist). Empty or missing = 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: u64,
    /// The znode's data version, if it exists.
    pub version: Option<i32>,
}

/// Reads an ASCII unsigned integer znode (kazoo counter style).
pub async fn read_u64(client: &zkc::Client, path: &str) -> Result<Versioned, ZkError> {
    Ok(match read_number(client, path).await? {
        Some((value, stat)) => Versioned {
            value,
            version: Some(stat.version),
        },
        None => Versioned {
            value: 0,
            version: None,
        },
    })
}

/// An ASCII round number znode (empty = 0) and its stat; `None` when it does not exist,
/// [`ZkError::Malformed`] when it holds something else.
async fn read_number(
    client: &zkc::Client,
    path: &str,
) -> Result<Option<(u64, zkc::Stat)>, ZkError> {
    let Some((data, stat)) = zk::get_opt(client, path).await? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&data);
    let text = text.trim();
    let value = if text.is_empty() {
        0
    } else {
        text.parse().map_err(|_| ZkError::Malformed {
            path: path.to_string(),
            reason: format!("{text:?} is not a round number"),
        })?
    };
    Ok(Some((value, stat)))
}
