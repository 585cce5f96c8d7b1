//! Redis key names and point members (the data model is in the [`super`] module doc).

use super::planner::ROLLUP_STEPS_MS;
use super::ClusterId;

/// Every key of one deployment (one prefix).
pub(super) struct Keys {
    pub(super) prefix: String,
    pub(super) rec: String,
    pub(super) time: String,
    pub(super) fence: String,
    pub(super) last_round: String,
    pub(super) clusters: String,
    pub(super) legacy_seq: String,
    pub(super) roll: Vec<String>,
    pub(super) rollidx: Vec<String>,
    pub(super) rollup: String,
    pub(super) leaders: String,
    pub(super) roundidx: String,
    pub(super) roundidx_state: String,
    /// The round index of earlier versions (one time order for all clusters), deleted by
    /// the ingest script once `roundidx` is complete.
    pub(super) roundidx_v1: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
            rec: format!("{prefix}:rec"),
            time: format!("{prefix}:time"),
            fence: format!("{prefix}:fence"),
            last_round: format!("{prefix}:last_round"),
            clusters: format!("{prefix}:clusters"),
            legacy_seq: format!("{prefix}:legacy_seq"),
            leaders: format!("{prefix}:leaders"),
            rollup: format!("{prefix}:rollup"),
            roundidx: format!("{prefix}:roundidx2"),
            roundidx_state: format!("{prefix}:roundidx2:state"),
            roundidx_v1: format!("{prefix}:roundidx"),
            roll: ROLLUP_STEPS_MS
                .iter()
                .map(|s| format!("{prefix}:roll:{s}"))
                .collect(),
            rollidx: ROLLUP_STEPS_MS
                .iter()
                .map(|s| format!("{prefix}:rollidx:{s}"))
                .collect(),
        }
    }

    /// The fence of `cluster` (the default cluster keeps the pre-cluster key).
    pub(super) fn fence(&self, cluster: &ClusterId) -> String {
        if cluster.is_default() {
            self.fence.clone()
        } else {
            format!("{}:cluster:{cluster}:fence", self.prefix)
        }
    }

    /// The highest stored round of `cluster` (default: the pre-cluster key).
    pub(super) fn last_round(&self, cluster: &ClusterId) -> String {
        if cluster.is_default() {
            self.last_round.clone()
        } else {
            format!("{}:cluster:{cluster}:last_round", self.prefix)
        }
    }
}

/// A round number or fencing token, zero-padded to 20 digits (sorts as text like a number).
pub(super) fn pad(n: u64) -> String {
    format!("{n:020}")
}

/// The member of node round `round` of `cluster` (see the module doc; the ingest script
/// builds the same).
pub(super) fn round_member(cluster: &ClusterId, round: u64) -> String {
    if cluster.is_default() {
        format!("r:{}", pad(round))
    } else {
        format!("r:{}:{cluster}", pad(round))
    }
}
