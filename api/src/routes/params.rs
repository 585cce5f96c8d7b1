//! Parsing of query parameters and times into typed values, with errors that name the
//! parameter (`400 {"error", "field"}`).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::store::Cursor;

/// Query parameters as a map, or 400 if the query string is not valid URL encoding.
pub fn query_map(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::bad("query", format!("malformed query string: {e}")))
}

/// Parses an RFC 3339 time into ms since the epoch.
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Formats ms since the epoch as RFC 3339 UTC with millisecond precision.
pub fn ms_rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// A time parameter: integer ms since the epoch or RFC 3339. `None` if absent or empty.
pub fn time_param(map: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    match map.get(name).map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .or_else(|| rfc3339_ms(s))
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad(
                    name,
                    format!("{s:?} is neither milliseconds since the epoch nor an RFC 3339 time"),
                )
            }),
    }
}

/// A page size in `1..=max`, `default` when absent.
pub fn limit_param(
    map: &HashMap<String, String>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match map.get(name).map(|s| s.trim()) {
        None | Some("") => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad(
                name,
                format!("{s:?} must be an integer from 1 to {max}"),
            )),
        },
    }
}

/// A pagination cursor as produced by a previous page.
pub fn cursor_param(map: &HashMap<String, String>, name: &str) -> Result<Option<Cursor>, ApiError> {
    match map.get(name).map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(s) => Cursor::decode(s).map(Some).ok_or_else(|| {
            ApiError::bad(
                name,
                "malformed cursor (use next_cursor of a previous page)",
            )
        }),
    }
}

/// `[from, to]` from the `from`/`to` parameters (defaults: all time); 400 if from > to.
pub fn range_params(map: &HashMap<String, String>) -> Result<(i64, i64), ApiError> {
    let from = time_param(map, "from")?.unwrap_or(i64::MIN / 2);
    let to = time_param(map, "to")?.unwrap_or(i64::MAX / 2);
    if from > to {
        return Err(ApiError::bad("from", "from is later than to"));
    }
    Ok((from, to))
}
