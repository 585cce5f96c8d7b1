//! `POST /grafana/query`: downsampled series, tables and leader-change annotations.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::catalog::{AGGREGATION, FORMAT, LEADER_CHANGES, RATE};
use super::grid::{Grid, MAX_POINTS_CAP};
use super::protocol::{payload_str, Column, QueryRequest, QueryResult, Target};
use super::{parse_body, GrafanaError};
use crate::series::{Aggregation, Metric, Rate, SeriesSpec};
use crate::store::planner::{finest_chart_width, FINEST_MS};
use crate::store::{Bucket, Exactness, LeaderChange, SeriesQuery, Store};
use crate::SharedState;

/// Points per series when the request does not say (Grafana always does).
const DEFAULT_MAX_POINTS: u64 = 1_000;

/// Most query rows one request may carry (a panel has a handful; Grafana names them A-Z).
pub const MAX_TARGETS: usize = 50;

/// Most points one response carries over all its series (about 4 MB of JSON): with many
/// series, each gets a coarser grid instead of the response growing with the target count.
pub const MAX_RESPONSE_POINTS: u64 = 200_000;

/// The grid for a query, widened to the finest rollup (10 s) when a finer grid covers
/// more raw points than the planner aggregates for such widths
/// ([`finest_chart_width`]; the store refuses such a read rather than leave buckets
/// empty).
async fn exact_grid(
    store: &Store,
    from_ms: i64,
    to_ms: i64,
    max_points: u64,
    interval_ms: i64,
) -> Result<Grid, GrafanaError> {
    let grid = Grid::choose(from_ms, to_ms, max_points, interval_ms);
    if grid.width_ms >= FINEST_MS {
        return Ok(grid);
    }
    let points = store.count_range(grid.first_ms, grid.end_ms() - 1).await?;
    let finest = finest_chart_width(points);
    if grid.width_ms >= finest {
        Ok(grid)
    } else {
        Ok(Grid::choose(
            from_ms,
            to_ms,
            max_points,
            interval_ms.max(finest),
        ))
    }
}

/// What one target asks for.
#[derive(Debug)]
enum Plan {
    /// A downsampled series, as time series or as a table.
    Series {
        spec: SeriesSpec,
        table: bool,
        ref_id: Option<String>,
    },
    /// Leader changes as an annotation table.
    LeaderChanges { ref_id: Option<String> },
}

/// Parses an ISO-8601 (RFC 3339) instant into epoch milliseconds.
fn parse_instant(what: &str, text: Option<&str>) -> Result<i64, GrafanaError> {
    let text = text.ok_or_else(|| GrafanaError::BadRequest(format!("range.{what} is missing")))?;
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|e| {
            GrafanaError::BadRequest(format!(
                "range.{what} {text:?} is not an ISO-8601 UTC time: {e}"
            ))
        })
}

fn bad(message: String) -> GrafanaError {
    GrafanaError::BadRequest(message)
}

/// Turns one target into a plan; `None` for placeholder rows with no metric chosen.
fn plan(target: &Target) -> Result<Option<Plan>, GrafanaError> {
    let name = target.target.as_deref().unwrap_or("").trim();
    if name.is_empty() {
        return Ok(None);
    }
    let ref_id = target.ref_id.clone();
    if name == LEADER_CHANGES {
        return Ok(Some(Plan::LeaderChanges { ref_id }));
    }
    let metric = Metric::parse(name).ok_or_else(|| {
        bad(format!(
            "unknown metric `{name}` (available: average, samples, rounds, {LEADER_CHANGES})"
        ))
    })?;
    let payload = target.payload_object().map_err(bad)?;
    let aggregation = payload_str(&payload, AGGREGATION)
        .map_err(bad)?
        .map(|a| Aggregation::parse(a).ok_or_else(|| bad(format!("unknown aggregation `{a}`"))))
        .transpose()?;
    let rate = payload_str(&payload, RATE)
        .map_err(bad)?
        .map(|r| {
            Rate::parse(r)
                .ok_or_else(|| bad(format!("unknown rate `{r}` (per_bucket, per_minute)")))
        })
        .transpose()?;
    let table = match payload_str(&payload, FORMAT).map_err(bad)? {
        None => target.kind.as_deref() == Some("table"),
        Some("table") => true,
        Some("time_series" | "timeseries" | "timeserie" | "time series") => false,
        Some(other) => {
            return Err(bad(format!(
                "unknown format `{other}` (time_series, table)"
            )))
        }
    };
    let spec = SeriesSpec::new(metric, aggregation, rate).map_err(bad)?;
    Ok(Some(Plan::Series {
        spec,
        table,
        ref_id,
    }))
}

/// `POST /grafana/query`.
pub async fn query(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<Json<Vec<QueryResult>>, GrafanaError> {
    let request: QueryRequest = parse_body(&body)?;
    let range = request.range.unwrap_or_default();
    let from_ms = parse_instant("from", range.from.as_deref())?;
    let to_ms = parse_instant("to", range.to.as_deref())?;
    if from_ms > to_ms {
        return Err(bad("range.from is after range.to".into()));
    }
    let filters = request
        .filters
        .iter()
        .chain(request.adhoc_filters.iter())
        .flatten();
    if filters.count() > 0 {
        return Err(bad(
            "ad hoc filters are not supported by this datasource".into()
        ));
    }
    if request.targets.len() > MAX_TARGETS {
        return Err(bad(format!(
            "targets: {} query rows; the limit is {MAX_TARGETS}",
            request.targets.len()
        )));
    }
    let max_points = match request.max_data_points {
        None => DEFAULT_MAX_POINTS,
        Some(n) if n >= 1.0 => n.min(MAX_POINTS_CAP as f64) as u64,
        Some(n) => return Err(bad(format!("maxDataPoints {n} must be at least 1"))),
    };
    // Clamped by the grid (a width above a century changes nothing).
    let interval_ms = match request.interval_ms {
        None => 0,
        Some(n) if n >= 0.0 => n.min(i64::MAX as f64) as i64,
        Some(n) => return Err(bad(format!("intervalMs {n} must not be negative"))),
    };

    let mut plans = Vec::new();
    for target in request.targets.iter().filter(|t| t.hide != Some(true)) {
        if let Some(plan) = plan(target)? {
            plans.push(plan);
        }
    }
    let series_count = plans
        .iter()
        .filter(|p| matches!(p, Plan::Series { .. }))
        .count() as u64;
    let max_points = max_points.min(MAX_RESPONSE_POINTS / series_count.max(1));

    // Every series target of one request shares the grid: read the buckets once.
    let needs_buckets = plans.iter().any(|p| matches!(p, Plan::Series { .. }));
    let grid = if needs_buckets {
        exact_grid(&state.store, from_ms, to_ms, max_points, interval_ms).await?
    } else {
        Grid::choose(from_ms, to_ms, max_points, interval_ms)
    };
    let buckets = if needs_buckets {
        state
            .store
            .series(SeriesQuery {
                from_ms: grid.first_ms,
                to_ms: grid.end_ms() - 1,
                width_ms: grid.width_ms,
                exactness: Exactness::Chart,
            })
            .await?
    } else {
        Vec::new()
    };
    tracing::debug!(
        from_ms,
        to_ms,
        width_ms = grid.width_ms,
        points = grid.buckets,
        targets = plans.len(),
        non_empty = buckets.len(),
        "grafana query"
    );

    let mut results = Vec::with_capacity(plans.len());
    for plan in plans {
        results.push(match plan {
            Plan::Series {
                spec,
                table,
                ref_id,
            } => series_result(&grid, &buckets, spec, table, ref_id),
            Plan::LeaderChanges { ref_id } => {
                // Recorded at ingest: one sorted-set range read, whatever the history size.
                let changes = state.store.leader_changes(from_ms, to_ms).await?;
                annotation_table(changes, ref_id)
            }
        });
    }
    Ok(Json(results))
}

/// One series on the grid: every bucket as a point (null when empty), or, as a table,
/// one row per non-empty bucket.
fn series_result(
    grid: &Grid,
    buckets: &[Bucket],
    spec: SeriesSpec,
    table: bool,
    ref_id: Option<String>,
) -> QueryResult {
    let values = buckets
        .iter()
        .filter_map(|b| spec.value(b, grid.width_ms).map(|v| (b.start_ms, v)));
    if table {
        let rows = grid
            .fill(values)
            .into_iter()
            .filter_map(|(v, t)| v.map(|v| vec![Value::from(t), Value::from(v)]))
            .collect();
        QueryResult::Table {
            kind: "table",
            ref_id,
            columns: vec![
                Column {
                    text: "Time",
                    kind: "time",
                },
                Column {
                    text: spec.metric.name(),
                    kind: "number",
                },
            ],
            rows,
        }
    } else {
        QueryResult::TimeSeries {
            target: spec.display_name(),
            ref_id,
            datapoints: grid.fill(values),
        }
    }
}

/// Leader changes as the annotation frame Grafana expects: `time`, `title`, `text`.
fn annotation_table(changes: Vec<LeaderChange>, ref_id: Option<String>) -> QueryResult {
    let rows = changes
        .into_iter()
        .map(|c| {
            vec![
                Value::from(c.at_ms),
                Value::from(format!("Leader changed to {}", c.to)),
                Value::from(format!(
                    "{} → {} at round {} (fencing token {})",
                    c.from, c.to, c.round, c.fencing
                )),
            ]
        })
        .collect();
    QueryResult::Table {
        kind: "table",
        ref_id,
        columns: vec![
            Column {
                text: "time",
                kind: "time",
            },
            Column {
                text: "title",
                kind: "string",
            },
            Column {
                text: "text",
                kind: "string",
            },
        ],
        rows,
    }
}
