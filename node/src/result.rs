//! The wire contract between the leader and sensor-api: one round's result (the body of
//! `POST /api/v1/averages`) and the API's answer, item by item.
//!
//! Both sides use these types (sensor-api depends on this crate), so a status the API
//! sends is a status the node decodes, never text to search. The node counts a batch as
//! delivered only when [`BatchAnswer::confirms`] says so: one [`ItemResult`] per item sent,
//! same rounds, same order, each [`ItemStatus::Stored`] or [`ItemStatus::Duplicate`].

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

/// What happened to one item of a delivery, as the API reports it (`"status"` in
/// `results`). The same enum is the API's verdict type, so both ends agree by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Newly stored.
    Stored,
    /// The round was already stored with the same value: nothing written, still a success.
    Duplicate,
    /// The round is stored with a different value: rejected.
    Conflict,
    /// The fencing token is lower than the highest accepted (a deposed leader): rejected.
    StaleLeader,
    /// Not written because another item of the same batch was rejected.
    NotApplied,
}

impl ItemStatus {
    /// Whether the item is in the store now (stored by this request or before it).
    pub fn is_accepted(self) -> bool {
        matches!(self, ItemStatus::Stored | ItemStatus::Duplicate)
    }

    /// Whether this status rejects the whole request (409).
    pub fn is_rejection(self) -> bool {
        matches!(self, ItemStatus::Conflict | ItemStatus::StaleLeader)
    }
}

/// Outcome of one item of an ingest call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemResult {
    /// Round of the item (0 for a legacy `/nuevo` point).
    pub round: u64,
    /// What happened to it.
    pub status: ItemStatus,
}

/// The API's 2xx answer to a batch (a JSON array body): counts and one result per item, in
/// the order sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAnswer {
    /// Items newly stored.
    pub stored: usize,
    /// Items already stored with the same value.
    pub duplicates: usize,
    /// One result per item, in request order.
    pub results: Vec<ItemResult>,
}

impl BatchAnswer {
    /// Builds the answer for `results` (counts derived from them).
    pub fn new(results: Vec<ItemResult>) -> BatchAnswer {
        let count = |s: ItemStatus| results.iter().filter(|r| r.status == s).count();
        BatchAnswer {
            stored: count(ItemStatus::Stored),
            duplicates: count(ItemStatus::Duplicate),
            results,
        }
    }

    /// `Ok` when this answer confirms that every round of `sent` is in the store: exactly
    /// one result per item, the same rounds in the same order, each accepted. Otherwise
    /// why not, for the log (the batch is then *not* delivered and stays queued).
    pub fn confirms(&self, sent: &[RoundResult]) -> Result<(), String> {
        if self.results.len() != sent.len() {
            return Err(format!(
                "answer has {} results for {} rounds sent",
                self.results.len(),
                sent.len()
            ));
        }
        for (item, result) in sent.iter().zip(&self.results) {
            if result.round != item.round {
                return Err(format!(
                    "answer reports round {} where round {} was sent",
                    result.round, item.round
                ));
            }
            if !result.status.is_accepted() {
                return Err(format!(
                    "round {} answered {:?} in a success response",
                    item.round, result.status
                ));
            }
        }
        Ok(())
    }
}

/// Every error answer of the API: `{"error": "...", "field": "...", "results": [...]}`.
/// `results` is present on 409 (which item was rejected, and how).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human-readable reason.
    pub error: String,
    /// The input to blame, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Per-item outcome (409 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<ItemResult>,
}

impl ErrorBody {
    /// The first item with status `wanted`, if any.
    pub fn first_with(&self, wanted: ItemStatus) -> Option<&ItemResult> {
        self.results.iter().find(|r| r.status == wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(round: u64) -> RoundResult {
        RoundResult {
            round,
            value: 1.0,
            samples: 1,
            leader: "n1".into(),
            fencing: 1,
            taken_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn item(round: u64, status: ItemStatus) -> ItemResult {
        ItemResult { round, status }
    }

    #[test]
    fn only_one_accepted_result_per_item_in_order_confirms() {
        let sent = [r(1), r(2)];
        let ok = BatchAnswer::new(vec![
            item(1, ItemStatus::Stored),
            item(2, ItemStatus::Duplicate),
        ]);
        assert_eq!(ok.confirms(&sent), Ok(()));
        assert_eq!((ok.stored, ok.duplicates), (1, 1));
        let short = BatchAnswer::new(vec![item(1, ItemStatus::Stored)]);
        assert!(short.confirms(&sent).is_err());
        let swapped = BatchAnswer::new(vec![
            item(2, ItemStatus::Stored),
            item(1, ItemStatus::Stored),
        ]);
        assert!(swapped.confirms(&sent).is_err());
        let odd = BatchAnswer::new(vec![
            item(1, ItemStatus::Stored),
            item(2, ItemStatus::NotApplied),
        ]);
        assert!(odd.confirms(&sent).is_err());
    }

    #[test]
    fn statuses_have_the_api_spelling() {
        let text = serde_json::to_string(&item(7, ItemStatus::StaleLeader)).unwrap();
        assert_eq!(text, r#"{"round":7,"status":"stale_leader"}"#);
        let unknown = serde_json::from_str::<ItemResult>(r#"{"round":7,"status":"maybe"}"#);
        assert!(unknown.is_err());
    }
}
