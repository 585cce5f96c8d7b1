//! Reads as JSON (and CSV): pages of averages newest first, one round, range statistics.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::ApiError;
use crate::routes::params::{cursor_param, limit_param, ms_rfc3339, query_map, range_params};
use crate::store::{Average, ClusterId};
use crate::SharedState;

/// Default page size of the JSON list.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page (also the most rows one CSV download holds).
pub const MAX_LIMIT: usize = 10_000;

/// `GET /api/v1/averages?from=&to=&limit=&cursor=&format=json|csv`: newest first.
///
/// `from`/`to` are ms since the epoch or RFC 3339 (inclusive). The answer carries
/// `next_cursor` (null on the last page); pass it as `cursor` for the next, older page.
/// O(log n + limit) in Redis whatever the history size.
pub async fn list(
    State(state): State<SharedState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_map(query)?;
    let (from, to) = range_params(&q)?;
    let limit = limit_param(&q, "limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let cursor = cursor_param(&q, "cursor")?;
    let csv = match q.get("format").map(String::as_str) {
        None | Some("") | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "format",
                format!("{other:?} is not a format (json or csv)"),
            ))
        }
    };
    // One extra item tells whether another page follows.
    let mut page = state
        .store
        .page_desc(from, to, cursor.as_ref(), limit + 1)
        .await?;
    let more = page.len() > limit;
    page.truncate(limit);
    let next_cursor = if more {
        page.last().map(|p| p.cursor.encode())
    } else {
        None
    };
    let items: Vec<Average> = page.into_iter().map(|p| p.average).collect();
    if csv {
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"averages.csv\"",
                ),
            ],
            to_csv(&items),
        )
            .into_response());
    }
    Ok(Json(json!({"items": items, "next_cursor": next_cursor})).into_response())
}

/// CSV with a header row; text fields quoted, and a leading `'` added to a leader id that
/// starts like a spreadsheet formula.
pub fn to_csv(items: &[Average]) -> String {
    let mut out = String::from("round,value,samples,leader,fencing,taken_at,taken_at_ms,cluster\n");
    for a in items {
        let mut leader = a.result.leader.clone();
        if leader.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            leader.insert(0, '\'');
        }
        out.push_str(&format!(
            "{},{},{},\"{}\",{},\"{}\",{},{}\n",
            a.result.round,
            a.result.value,
            a.result.samples,
            leader.replace('"', "\"\""),
            a.result.fencing,
            a.result.taken_at.replace('"', "\"\""),
            a.taken_at_ms,
            a.result.cluster
        ));
    }
    out
}

/// `GET /api/v1/averages/{round}?cluster=ID`: the stored average of one node round of
/// cluster `ID` (default: the default cluster, i.e. rounds sent without a cluster id), or
/// 404.
pub async fn one(
    State(state): State<SharedState>,
    Path(round): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Average>, ApiError> {
    let q = query_map(query)?;
    let round: u64 = round
        .parse()
        .map_err(|_| ApiError::bad("round", format!("{round:?} is not a round number")))?;
    let cluster = match q.get("cluster") {
        Some(c) => ClusterId::parse(c).map_err(|e| ApiError::bad("cluster", e.to_string()))?,
        None => ClusterId::default(),
    };
    match state.store.get(&cluster, round).await? {
        Some(a) => Ok(Json(a)),
        None => Err(ApiError::NotFound(format!(
            "round {round} of cluster {cluster} is not stored"
        ))),
    }
}

/// `GET /api/v1/stats?from=&to=`: count, first/last time, min/max/mean over the range
/// (all time by default). Answered from rollups: fast at any history size.
pub async fn stats(
    State(state): State<SharedState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = query_map(query)?;
    let (from, to) = range_params(&q)?;
    let s = state.store.stats(from, to).await?;
    Ok(Json(json!({
        "count": s.count,
        "first": s.first_ms.map(ms_rfc3339),
        "last": s.last_ms.map(ms_rfc3339),
        "first_ms": s.first_ms,
        "last_ms": s.last_ms,
        "min": s.min,
        "max": s.max,
        "mean": s.mean,
    })))
}
