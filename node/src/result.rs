//! One round's result, as committed to ZooKeeper and delivered to the API.

use serde::{Deserialize, Serialize};

/// The average of one round. Serialises to the body of `POST /api/v1/averages`, and is
/// stored verbatim in the outbox znode, so what the API receives is byte-for-byte what the
/// leader committed (a re-delivery by the next leader is an exact duplicate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundResult {
    /// Cluster-wide round number, 1, 2, 3, ... without gaps.
    pub round: u64,
    /// Mean of the readings taken in this round.
    pub value: f64,
    /// How many readings were averaged.
    pub samples: u32,
    /// Id of the node that led the round.
    pub leader: String,
    /// The leader's fencing token (its election znode's czxid).
    pub fencing: u64,
    /// When the leader closed the round, RFC 3339 UTC.
    pub taken_at: String,
}
