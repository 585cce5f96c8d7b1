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
    /// The cluster (ZooKeeper ensemble) whose series this round belongs to: rounds are
    /// unique per `(cluster, round)` and fenced per cluster. Omitted on the wire for the
    /// default cluster, so results committed by older nodes (which have no such field) and
    /// their deliveries read as the default cluster.
    #[serde(default, skip_serializing_if = "ClusterId::is_default")]
    pub cluster: ClusterId,
}

/// Identity of one ZooKeeper ensemble's round series (the `/cluster` znode, a UUID for
/// ensembles created by this version). Round numbers restart at 1 on a fresh ensemble, so
/// the API keys rounds and fencing tokens by cluster: a new or restored ensemble starts a
/// new series instead of colliding with the old one.
///
/// 1 to [`ClusterId::MAX_LEN`] characters of `A-Z a-z 0-9 . _ -`. The id `default` is the
/// series of everything sent without a cluster id (older nodes, legacy `/nuevo` points).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterId(String);

/// Why a text is not a [`ClusterId`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cluster id must be 1 to {max} characters of A-Z a-z 0-9 . _ - (got {shown:?})", max = ClusterId::MAX_LEN)]
pub struct InvalidClusterId {
    /// The offending text, cut to 80 characters.
    pub shown: String,
}

impl ClusterId {
    /// Longest accepted id (a UUID has 36 characters).
    pub const MAX_LEN: usize = 64;
    /// The id of the default cluster.
    pub const DEFAULT: &'static str = "default";

    /// Validates `text` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<ClusterId, InvalidClusterId> {
        let t = text.trim();
        let ok = !t.is_empty()
            && t.len() <= Self::MAX_LEN
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(ClusterId(t.to_string()))
        } else {
            Err(InvalidClusterId {
                shown: t.chars().take(80).collect(),
            })
        }
    }

    /// A fresh random id (UUID v4) for a new ensemble.
    pub fn random() -> ClusterId {
        ClusterId(uuid::Uuid::new_v4().to_string())
    }

    /// Whether this is the default cluster.
    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ClusterId {
    /// The default cluster.
    fn default() -> Self {
        ClusterId(Self::DEFAULT.to_string())
    }
}

impl std::fmt::Display for ClusterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ClusterId {
    type Error = InvalidClusterId;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        ClusterId::parse(&text)
    }
}

impl From<ClusterId> for String {
    fn from(id: ClusterId) -> String {
        id.0
    }
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
            cluster: ClusterId::default(),
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
    fn cluster_ids_are_bounded_and_default_is_omitted_on_the_wire() {
        assert!(ClusterId::parse("5f0c2a9e-1b7d-4c1e-9a53-0b2a4c6d8e10").is_ok());
        for bad in ["", "a b", "a:b", "ü", &"x".repeat(65)] {
            assert!(ClusterId::parse(bad).is_err(), "{bad:?}");
        }
        let legacy =
            r#"{"round":1,"value":1.0,"samples":1,"leader":"n1","fencing":1,"taken_at":"t"}"#;
        let old: RoundResult = serde_json::from_str(legacy).unwrap();
        assert!(old.cluster.is_default());
        assert_eq!(serde_json::to_string(&old).unwrap(), legacy);
        let mut new = old.clone();
        new.cluster = ClusterId::parse("c1").unwrap();
        let text = serde_json::to_string(&new).unwrap();
        assert!(text.ends_with(r#""cluster":"c1"}"#), "{text}");
        let bad = legacy.replace('}', r#","cluster":"no way"}"#);
        assert!(serde_json::from_str::<RoundResult>(&bad).is_err());
    }

    #[test]
    fn statuses_have_the_api_spelling() {
        let text = serde_json::to_string(&item(7, ItemStatus::StaleLeader)).unwrap();
        assert_eq!(text, r#"{"round":7,"status":"stale_leader"}"#);
        let unknown = serde_json::from_str::<ItemResult>(r#"{"round":7,"status":"maybe"}"#);
        assert!(unknown.is_err());
    }
}
