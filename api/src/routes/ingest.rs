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
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sensor_node::result::BatchAnswer;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::routes::params::{ms_rfc3339, query_map, rfc3339_ms};
use crate::store::{Average, ClusterId, IngestResult, IngestStatus, NewPoint};
use crate::{AppState, BODY_LIMIT};

/// Most items one batch may carry (a 64 KiB body holds about 400 anyway).
pub const MAX_BATCH: usize = 1000;

/// Longest accepted leader id.
pub const MAX_LEADER_LEN: usize = 256;

/// `POST /api/v1/averages`: one average or an array of them.
///
/// 201 when something new was stored, 200 when everything was already stored (a retry),
/// 409 when a round is stored with another value or the fencing token is stale (nothing of
/// the request is stored then), 400/401/413/503 as usual.
pub async fn post_averages(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    state.authorize(&headers, None)?;
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
                .map(|(i, v)| parse_average(v, &format!("[{i}].")))
                .collect::<Result<Vec<_>, _>>()?;
            (true, parsed)
        }
        other => (false, vec![parse_average(other, "")?]),
    };
    // Fencing is per cluster, and the store checks one cluster's fence per call.
    if let Some(i) = items.iter().position(|a| a.cluster != items[0].cluster) {
        return Err(ApiError::bad(
            &format!("[{i}].cluster"),
            "every item of a batch must belong to the same cluster",
        ));
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
                    m.saw_round(a.round);
                    tracing::debug!(round = a.round, value = a.value, leader = %a.leader, fencing = a.fencing, "stored");
                }
            }
            IngestStatus::Duplicate => {
                m.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            IngestStatus::Conflict => {
                m.conflicts.fetch_add(1, Ordering::Relaxed);
                if let NewPoint::Round(a) = p {
                    tracing::warn!(round = a.round, value = a.value, leader = %a.leader, fencing = a.fencing, "conflicting value for a stored round rejected");
                }
            }
            IngestStatus::StaleLeader => {
                m.stale_leaders.fetch_add(1, Ordering::Relaxed);
                if let NewPoint::Round(a) = p {
                    tracing::warn!(round = a.round, leader = %a.leader, fencing = a.fencing, "stale fencing token rejected (deposed leader)");
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
                        NewPoint::Round(a) if r.round == bad.round => Some(a.fencing),
                        _ => None,
                    })
                    .unwrap_or(0);
                format!(
                    "fencing token {fencing} of round {} is lower than the highest accepted (deposed leader)",
                    bad.round
                )
            }
        };
        return Err(ApiError::Conflict {
            message,
            detail: json!(results),
        });
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

/// Validates one JSON average; `prefix` is prepended to field names in errors.
pub fn parse_average(v: &Value, prefix: &str) -> Result<Average, ApiError> {
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
        .filter(|x| x.is_finite())
        .ok_or_else(|| ApiError::bad(&field("value"), "value must be a finite number"))?;
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
        .filter(|s| !s.trim().is_empty() && s.len() <= MAX_LEADER_LEN)
        .ok_or_else(|| {
            ApiError::bad(
                &field("leader"),
                format!("leader must be a non-empty string of at most {MAX_LEADER_LEN} bytes"),
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
        round,
        value,
        samples,
        leader,
        fencing,
        taken_at,
        taken_at_ms,
        cluster,
    })
}

/// `GET /nuevo?dato=<number>[&token=...]`: the endpoint the old implementations use.
///
/// Stores the value with the server's time as a legacy point (round 0, leader `legacy`,
/// numbered by a separate legacy counter, never deduplicated). 200 with a JSON echo.
pub async fn legacy(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_map(query)?;
    state.authorize(&headers, q.get("token").map(String::as_str))?;
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
        .filter(|x| x.is_finite())
        .ok_or_else(|| ApiError::bad("dato", format!("{raw:?} is not a finite number")))?;
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
