//! Writes: `POST /api/v1/averages` (nodes) and the legacy `GET /nuevo?dato=` (old clients).
//!
//! Input is validated field by field before anything reaches Redis, so a rejected request
//! stores nothing and the error names the field (`[3].value` for the 4th item of a batch).
//! The store decides duplicates, conflicts and stale leaders atomically; this module only
//! maps its verdict to status codes, metrics and log lines.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sensor_coord::wire::{BatchAnswer, RoundResult};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::fence::FenceError;
use crate::routes::params::{ms_rfc3339, query_map, rfc3339_ms};
use crate::store::{Average, ClusterId, IngestResult, IngestStatus, NewPoint};
use crate::{AppState, SharedState, BODY_LIMIT};

/// Most items one batch may carry (a 64 KiB body holds about 400 anyway).
pub const MAX_BATCH: usize = 1000;

/// Longest accepted leader id (node ids are at most 128 characters).
pub const MAX_LEADER_LEN: usize = 128;

/// Largest accepted `|value|`: a million batches of values this large still sum to a
/// finite number, so rollup sums and means never become `inf`.
pub const MAX_ABS_VALUE: f64 = 1e12;

/// Which `taken_at` times are plausible: not further ahead of the server's clock than
/// `max_ahead` (clock skew), and not older than `max_age` (the retention, when set: an
/// older point would be trimmed at once). A point from year 9999 would stay "newest"
/// forever; one from before the retention pollutes the rollups until trimmed.
#[derive(Clone, Copy, Debug)]
pub struct Plausibility {
    /// How far `taken_at` may be ahead of the server's clock.
    pub max_ahead: std::time::Duration,
    /// How far `taken_at` may be behind it; `None` = no lower bound but the epoch.
    pub max_age: Option<std::time::Duration>,
}

impl Default for Plausibility {
    /// Five minutes ahead, any age.
    fn default() -> Self {
        Plausibility {
            max_ahead: std::time::Duration::from_secs(300),
            max_age: None,
        }
    }
}

impl Plausibility {
    /// Checks `taken_at_ms` against the window around `now_ms`; the error says why.
    pub fn check_time(&self, taken_at_ms: i64, now_ms: i64) -> Result<(), String> {
        let ahead = i64::try_from(self.max_ahead.as_millis()).unwrap_or(i64::MAX);
        if taken_at_ms > now_ms.saturating_add(ahead) {
            return Err(format!(
                "taken_at is more than {} s ahead of the server's clock",
                self.max_ahead.as_secs()
            ));
        }
        let oldest = match self.max_age {
            Some(age) => now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)),
            None => 0,
        };
        if taken_at_ms < oldest {
            return Err(match self.max_age {
                Some(age) => format!("taken_at is older than the retention ({} s)", age.as_secs()),
                None => "taken_at is before 1970".to_string(),
            });
        }
        Ok(())
    }
}

/// Whether `leader` is an acceptable leader id: 1 to [`MAX_LEADER_LEN`] bytes of printable
/// ASCII (space to `~`), not blank. Control characters would reach the text logs.
pub fn valid_leader(leader: &str) -> bool {
    !leader.trim().is_empty()
        && leader.len() <= MAX_LEADER_LEN
        && leader.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// `POST /api/v1/averages`: one average or an array of them.
///
/// 201 when something new was stored, 200 when everything was already stored (a retry),
/// 409 when a round is stored with another value or the fencing token is stale (nothing of
/// the request is stored then), 400/413/503 as usual. The token was checked before this
/// runs ([`crate::layers::auth`]).
pub async fn post_averages(
    State(state): State<SharedState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(BODY_LIMIT)
        } else {
            ApiError::bad("body", format!("cannot read body: {e}"))
        }
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad(
            "body",
            "empty body: expected a JSON object or array",
        ));
    }
    let now = now_ms();
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("body", format!("malformed JSON: {e}")))?;
    let (batch, items) = match &doc {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ApiError::bad("body", "empty batch"));
            }
            if items.len() > MAX_BATCH {
                return Err(ApiError::bad(
                    "body",
                    format!("batch of {} items exceeds {MAX_BATCH}", items.len()),
                ));
            }
            let parsed = items
                .iter()
                .enumerate()
                .map(|(i, v)| parse_average(v, &format!("[{i}]."), &state.plausibility, now))
                .collect::<Result<Vec<_>, _>>()?;
            (true, parsed)
        }
        other => (
            false,
            vec![parse_average(other, "", &state.plausibility, now)?],
        ),
    };
    // Fencing is per cluster, and the store checks one cluster's fence per call.
    if let Some(i) = items
        .iter()
        .position(|a| a.result.cluster != items[0].result.cluster)
    {
        return Err(ApiError::bad(
            &format!("[{i}].cluster"),
            "every item of a batch must belong to the same cluster",
        ));
    }
    // The whole batch is valid; its highest token must be one ZooKeeper could have issued.
    if let Some(fence) = &state.fence {
        let (i, highest) = items
            .iter()
            .enumerate()
            .max_by_key(|(_, a)| a.result.fencing)
            .map_or((0, 0), |(i, a)| (i, a.result.fencing));
        let field = if batch {
            format!("[{i}].fencing")
        } else {
            "fencing".to_string()
        };
        match fence.check(&items[0].result.cluster, highest).await {
            Ok(()) => {}
            Err(e @ FenceError::Forged { .. }) => {
                state.metrics.forged_fences.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(fencing = highest, error = %e, "forged fencing token refused");
                return Err(ApiError::bad(&field, e.to_string()));
            }
            Err(e @ FenceError::Unverifiable(_)) => {
                tracing::warn!(fencing = highest, error = %e, "fencing token not verifiable");
                return Err(ApiError::Unavailable);
            }
        }
    }
    let points: Vec<NewPoint> = items.into_iter().map(NewPoint::Round).collect();
    let results = state.store.ingest(&points).await?;
    account(&state, &points, &results);
    respond(batch, &points, results)
}

/// Updates metrics and logs for one ingest call.
fn account(state: &AppState, points: &[NewPoint], results: &[IngestResult]) {
    let m = &state.metrics;
    for (p, r) in points.iter().zip(results) {
        match r.status {
            IngestStatus::Stored => {
                m.ingested.fetch_add(1, Ordering::Relaxed);
                if let NewPoint::Round(a) = p {
                    m.saw_round(a.result.round);
                    tracing::debug!(round = a.result.round, value = a.result.value, leader = %a.result.leader, fencing = a.result.fencing, "stored");
                }
            }
            IngestStatus::Duplicate => {
                m.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            IngestStatus::Conflict => {
                m.conflicts.fetch_add(1, Ordering::Relaxed);
                if let NewPoint::Round(a) = p {
                    tracing::warn!(round = a.result.round, value = a.result.value, leader = %a.result.leader, fencing = a.result.fencing, "conflicting value for a stored round rejected");
                }
            }
            IngestStatus::StaleLeader => {
                m.stale_leaders.fetch_add(1, Ordering::Relaxed);
                if let NewPoint::Round(a) = p {
                    tracing::warn!(round = a.result.round, leader = %a.result.leader, fencing = a.result.fencing, "stale fencing token rejected (deposed leader)");
                }
            }
            IngestStatus::NotApplied => {}
        }
    }
}

fn respond(
    batch: bool,
    points: &[NewPoint],
    results: Vec<IngestResult>,
) -> Result<Response, ApiError> {
    let stored = results
        .iter()
        .filter(|r| r.status == IngestStatus::Stored)
        .count();
    if let Some(bad) = results.iter().find(|r| r.status.is_rejection()) {
        let message = match bad.status {
            IngestStatus::Conflict => format!(
                "round {} is already stored with a different value",
                bad.round
            ),
            _ => {
                let fencing = points
                    .iter()
                    .zip(&results)
                    .find_map(|(p, r)| match p {
                        NewPoint::Round(a) if r.round == bad.round => Some(a.result.fencing),
                        _ => None,
                    })
                    .unwrap_or(0);
                format!(
                    "fencing token {fencing} of round {} is lower than the highest accepted (deposed leader)",
                    bad.round
                )
            }
        };
        return Err(ApiError::Conflict { message, results });
    }
    let status = if stored > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = if batch {
        json!(BatchAnswer::new(results))
    } else {
        json!(results.first())
    };
    Ok((status, Json(body)).into_response())
}

fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Validates one JSON average against the field rules and `plausible` at `now_ms`;
/// `prefix` is prepended to field names in errors.
pub fn parse_average(
    v: &Value,
    prefix: &str,
    plausible: &Plausibility,
    now_ms: i64,
) -> Result<Average, ApiError> {
    let field = |name: &str| format!("{prefix}{name}");
    let obj: &Map<String, Value> = v.as_object().ok_or_else(|| {
        ApiError::bad(
            &field("body").replace(".body", ""),
            "expected a JSON object with round, value, samples, leader, fencing, taken_at",
        )
    })?;
    let get = |name: &str| {
        obj.get(name)
            .filter(|v| !v.is_null())
            .ok_or_else(|| ApiError::bad(&field(name), format!("missing field {name}")))
    };
    let uint = |name: &str| -> Result<u64, ApiError> {
        get(name)?.as_u64().ok_or_else(|| {
            ApiError::bad(
                &field(name),
                format!("{name} must be a non-negative integer"),
            )
        })
    };
    let round = uint("round")?;
    let value = get("value")?
        .as_f64()
        .filter(|x| x.is_finite() && x.abs() <= MAX_ABS_VALUE)
        .ok_or_else(|| {
            ApiError::bad(
                &field("value"),
                format!("value must be a finite number with |value| <= {MAX_ABS_VALUE:e}"),
            )
        })?;
    let samples = u32::try_from(uint("samples")?)
        .ok()
        .filter(|s| *s >= 1)
        .ok_or_else(|| {
            ApiError::bad(
                &field("samples"),
                "samples must be an integer from 1 to 4294967295",
            )
        })?;
    let leader = get("leader")?
        .as_str()
        .filter(|s| valid_leader(s))
        .ok_or_else(|| {
            ApiError::bad(
                &field("leader"),
                format!("leader must be 1 to {MAX_LEADER_LEN} printable ASCII characters"),
            )
        })?
        .to_string();
    let fencing = uint("fencing")?;
    let taken_at = get("taken_at")?
        .as_str()
        .ok_or_else(|| ApiError::bad(&field("taken_at"), "taken_at must be an RFC 3339 string"))?
        .to_string();
    let taken_at_ms = rfc3339_ms(&taken_at).ok_or_else(|| {
        ApiError::bad(
            &field("taken_at"),
            format!("{taken_at:?} is not an RFC 3339 time"),
        )
    })?;
    plausible
        .check_time(taken_at_ms, now_ms)
        .map_err(|m| ApiError::bad(&field("taken_at"), m))?;
    // Absent (older nodes) = the default cluster.
    let cluster = match obj.get("cluster").filter(|v| !v.is_null()) {
        None => ClusterId::default(),
        Some(v) => v
            .as_str()
            .ok_or_else(|| ApiError::bad(&field("cluster"), "cluster must be a string"))
            .and_then(|c| {
                ClusterId::parse(c).map_err(|e| ApiError::bad(&field("cluster"), e.to_string()))
            })?,
    };
    Ok(Average {
        result: RoundResult {
            round,
            value,
            samples,
            leader,
            fencing,
            taken_at,
            cluster,
        },
        taken_at_ms,
    })
}

/// `GET /nuevo?dato=<number>[&token=...]`: the endpoint the old implementations use.
///
/// Stores the value with the server's time as a legacy point (round 0, leader `legacy`,
/// numbered by a separate legacy counter, never deduplicated). 200 with a JSON echo. The
/// token (header or `?token=`) was checked before this runs ([`crate::layers::auth`]).
pub async fn legacy(
    State(state): State<SharedState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_map(query)?;
    let raw = q
        .get("dato")
        .ok_or_else(|| ApiError::bad("dato", "missing parameter dato"))?
        .trim();
    if raw.is_empty() {
        return Err(ApiError::bad("dato", "dato is empty"));
    }
    let value = raw
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && x.abs() <= MAX_ABS_VALUE)
        .ok_or_else(|| {
            ApiError::bad(
                "dato",
                format!("{raw:?} is not a finite number with |value| <= {MAX_ABS_VALUE:e}"),
            )
        })?;
    let now = OffsetDateTime::now_utc();
    let taken_at_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let taken_at = ms_rfc3339(taken_at_ms);
    let point = NewPoint::Legacy {
        value,
        taken_at_ms,
        taken_at: taken_at.clone(),
    };
    let points = [point];
    let results = state.store.ingest(&points).await?;
    account(&state, &points, &results);
    Ok(Json(json!({"status": "stored", "value": value, "taken_at": taken_at})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn taken_at_window() {
        let p = Plausibility::default();
        assert!(p.check_time(NOW, NOW).is_ok());
        assert!(p.check_time(NOW + 299_000, NOW).is_ok());
        assert!(p.check_time(NOW + 301_000, NOW).is_err());
        assert!(p.check_time(253_402_300_000_000, NOW).is_err(), "year 9999");
        assert!(p.check_time(0, NOW).is_ok(), "no retention: any age");
        assert!(p.check_time(-1, NOW).is_err());
        let p = Plausibility {
            max_ahead: Duration::from_secs(60),
            max_age: Some(Duration::from_secs(3600)),
        };
        assert!(p.check_time(NOW - 3_599_000, NOW).is_ok());
        assert!(p.check_time(NOW - 3_601_000, NOW).is_err());
        assert!(p.check_time(i64::MIN, NOW).is_err());
        assert!(p.check_time(i64::MAX, NOW).is_err());
    }

    #[test]
    fn leader_ids() {
        assert!(valid_leader("node-1"));
        assert!(valid_leader("<script>alert('x')</script> \"quoted\""));
        assert!(valid_leader(&"x".repeat(MAX_LEADER_LEN)));
        for bad in [
            "",
            "   ",
            "evil\u{1b}[31m",
            "line\nbreak",
            "tab\there",
            "nodé",
            &"x".repeat(MAX_LEADER_LEN + 1),
        ] {
            assert!(!valid_leader(bad), "{bad:?}");
        }
    }

    #[test]
    fn values_whose_sums_stay_finite() {
        let p = Plausibility::default();
        let item = |v: Value| {
            json!({"round": 1, "value": v, "samples": 1, "leader": "n",
                                     "fencing": 1, "taken_at": "2027-01-15T08:00:00Z"})
        };
        assert!(parse_average(&item(json!(MAX_ABS_VALUE)), "", &p, NOW).is_ok());
        assert!(parse_average(&item(json!(-MAX_ABS_VALUE)), "", &p, NOW).is_ok());
        for v in [json!(1e308), json!(-1e13), json!("1")] {
            let err = parse_average(&item(v), "", &p, NOW).expect_err("refused");
            assert!(matches!(err, ApiError::BadRequest { ref field, .. } if field == "value"));
        }
    }
}
