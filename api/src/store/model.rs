//! The values the store keeps and returns: stored averages, per-bucket aggregates, range
//! summaries, new points and page positions. Plain data, no Redis.

use std::fmt;

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer, StringDeserializer};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::{ClusterId, RoundResult};

/// One stored average: the wire contract's [`RoundResult`] exactly as the node delivered
/// it, plus the time the server parsed from it. The contract is the one definition of the
/// round's fields, so a field added to it is stored and returned with no change here.
///
/// JSON form (Redis records and API responses): the contract's object with `taken_at_ms`
/// added, the form earlier versions stored, which decodes unchanged. Serialised with
/// `flatten`; decoded by a streaming [`Deserialize`] (below) because `flatten` decoding
/// buffers every field first and costs 1.7 times the plain decode on every stored record
/// a read returns.
///
/// Legacy `/nuevo` points use the same form: round 0, 1 sample, leader `"legacy"`,
/// fencing 0, server time, the default cluster.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Average {
    /// The round as received (for a node round, what the leader committed).
    #[serde(flatten)]
    pub result: RoundResult,
    /// `result.taken_at` in milliseconds since the Unix epoch, parsed by the server.
    pub taken_at_ms: i64,
}

/// Name of the one field [`Average`] adds to the contract's JSON object.
const TAKEN_AT_MS: &str = "taken_at_ms";

impl<'de> Deserialize<'de> for Average {
    /// Decodes the object in one pass: `taken_at_ms` is taken out of the key stream on the
    /// way and every other key goes to [`RoundResult`]'s own decoder (unknown keys ignored,
    /// as before). Fails on a missing or repeated `taken_at_ms` like a derived decoder.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Average;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a stored average (an object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Average, A::Error> {
                let mut taken_at_ms = None;
                let result = RoundResult::deserialize(MapAccessDeserializer::new(WithoutMs {
                    map,
                    taken_at_ms: &mut taken_at_ms,
                }))?;
                let taken_at_ms =
                    taken_at_ms.ok_or_else(|| de::Error::missing_field(TAKEN_AT_MS))?;
                Ok(Average {
                    result,
                    taken_at_ms,
                })
            }
        }
        d.deserialize_map(Object)
    }
}

/// An object's entries minus `taken_at_ms`, whose value it stores in `taken_at_ms`.
struct WithoutMs<'a, A> {
    map: A,
    taken_at_ms: &'a mut Option<i64>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WithoutMs<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key::<Key<'de>>()? {
            if key.as_str() == TAKEN_AT_MS {
                if self.taken_at_ms.is_some() {
                    return Err(de::Error::duplicate_field(TAKEN_AT_MS));
                }
                *self.taken_at_ms = Some(self.map.next_value()?);
                continue;
            }
            return match key {
                Key::Borrowed(k) => seed.deserialize(BorrowedStrDeserializer::new(k)),
                Key::Owned(k) => seed.deserialize(StringDeserializer::new(k)),
            }
            .map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// An object key, borrowed from the input when the format allows (no copy for JSON keys
/// without escapes).
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(k) => k,
            Key::Owned(k) => k,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, k: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(k))
            }
            fn visit_str<E: de::Error>(self, k: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(k.to_string()))
            }
            fn visit_string<E: de::Error>(self, k: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(k))
            }
        }
        d.deserialize_str(Text)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A record exactly as the version before the contract was shared stored it.
    const OLD_DEFAULT: &str = r#"{"round":7,"value":20.5,"samples":3,"leader":"node-2","fencing":12,"taken_at":"2026-11-26T23:08:09.432Z","taken_at_ms":1795734489432}"#;

    fn sample(cluster: ClusterId) -> Average {
        Average {
            result: RoundResult {
                round: 7,
                value: 20.5,
                samples: 3,
                leader: "node-2".to_string(),
                fencing: 12,
                taken_at: "2026-11-26T23:08:09.432Z".to_string(),
                cluster,
            },
            taken_at_ms: 1_795_734_489_432,
        }
    }

    #[test]
    fn default_cluster_record_is_byte_identical_to_the_old_form() {
        let a = sample(ClusterId::default());
        assert_eq!(serde_json::to_string(&a).unwrap(), OLD_DEFAULT);
        assert_eq!(serde_json::from_str::<Average>(OLD_DEFAULT).unwrap(), a);
    }

    #[test]
    fn old_records_decode_in_any_field_order() {
        let a = sample(ClusterId::parse("c-1").unwrap());
        // The old version wrote `cluster` after `taken_at_ms`; this one writes it before.
        let old = OLD_DEFAULT.replace('}', r#","cluster":"c-1"}"#);
        assert_eq!(serde_json::from_str::<Average>(&old).unwrap(), a);
        let new = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Average>(&new).unwrap(), a);
        let first = r#"{"taken_at_ms":1795734489432,"cluster":"c-1","round":7,"value":20.5,"samples":3,"leader":"node-2","fencing":12,"taken_at":"2026-11-26T23:08:09.432Z","extra":[1,{"a":2}]}"#;
        assert_eq!(serde_json::from_str::<Average>(first).unwrap(), a);
    }

    #[test]
    fn decodes_escaped_keys_and_values() {
        let escaped = OLD_DEFAULT.replace("taken_at_ms", r"taken\u005fat_ms");
        let a = sample(ClusterId::default());
        assert_eq!(serde_json::from_str::<Average>(&escaped).unwrap(), a);
        let value: serde_json::Value = serde_json::from_str(OLD_DEFAULT).unwrap();
        assert_eq!(serde_json::from_value::<Average>(value).unwrap(), a);
    }

    #[test]
    fn missing_or_repeated_taken_at_ms_is_an_error() {
        let missing = OLD_DEFAULT.replace(r#","taken_at_ms":1795734489432"#, "");
        let e = serde_json::from_str::<Average>(&missing).unwrap_err();
        assert!(e.to_string().contains("missing field `taken_at_ms`"), "{e}");
        let twice = OLD_DEFAULT.replace('}', r#","taken_at_ms":1}"#);
        let e = serde_json::from_str::<Average>(&twice).unwrap_err();
        assert!(
            e.to_string().contains("duplicate field `taken_at_ms`"),
            "{e}"
        );
        let missing_round = OLD_DEFAULT.replace(r#""round":7,"#, "");
        let e = serde_json::from_str::<Average>(&missing_round).unwrap_err();
        assert!(e.to_string().contains("missing field `round`"), "{e}");
        assert!(serde_json::from_str::<Average>("[1,2]").is_err());
    }
}
