//! Evaluation of `/api/v1/query` and `/api/v1/query_range` over the store.
//!
//! Semantics (documented for users writing alerts):
//! * Range query: the sample at time `t` aggregates the averages taken in `[t - step, t)`
//!   (like `avg_over_time(x[step])`); timestamps are the multiples of `step` within
//!   `[start, end]` (Grafana aligns its ranges to the step, so these are its timestamps).
//!   `sensor_average` is the mean of the averages, `sensor_samples` the mean readings per
//!   round; steps without rounds have no sample (a gap). `sensor_rounds` is the number of
//!   rounds normalised to one minute and is 0 for steps without rounds, so an alert on
//!   `sensor_rounds < 1` fires during an outage.
//! * Instant query at `t`: `sensor_average` / `sensor_samples` are those of the latest
//!   average in `(t - 5m, t]` (Prometheus' lookback), `sensor_rounds` counts the rounds in
//!   `(t - 1m, t]`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::Json;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::params::{parse_duration, parse_time, sample_value, seconds, Params};
use super::promql::{self, Expr};
use super::{params, success, PromError, PromSeries, SERIES};
use crate::series::{Metric, Rate, SeriesSpec};
use crate::store::{Bucket, Exactness, SeriesQuery, Store, StoreError};
use crate::SharedState;

/// Prometheus' lookback window for instant selectors.
const LOOKBACK_MS: i64 = 5 * 60_000;
/// Window of an instant `sensor_rounds`.
const ROUNDS_WINDOW_MS: i64 = 60_000;
/// Prometheus' limit of points per series in a range query.
const MAX_POINTS: i64 = 11_000;
fn bad(message: String) -> PromError {
    PromError::BadData(message)
}

fn time_param(params: &Params, key: &str) -> Result<Option<i64>, PromError> {
    params
        .get(key)
        .filter(|v| !v.trim().is_empty())
        .map(|v| parse_time(v).map_err(|e| bad(format!("invalid parameter {key:?}: {e}"))))
        .transpose()
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The spec a Prometheus series is computed with.
fn spec_of(metric: Metric) -> SeriesSpec {
    let rate = (metric == Metric::Rounds).then_some(Rate::PerMinute);
    SeriesSpec {
        metric,
        aggregation: metric.default_aggregation(),
        rate: rate.unwrap_or(Rate::PerBucket),
    }
}

/// `/api/v1/query`.
pub async fn query(
    State(state): State<SharedState>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Json<Value>, PromError> {
    let params = params(&method, q, &body);
    let query = params.require("query").map_err(bad)?;
    let t = time_param(&params, "time")?.unwrap_or_else(now_ms);
    match promql::parse(query)? {
        Expr::Number(n) => Ok(success(json!({
            "resultType": "scalar",
            "result": [seconds(t), sample_value(n)],
        }))),
        Expr::Selector(selector) => {
            let mut result = Vec::new();
            for s in SERIES.iter().filter(|s| selector.matches(&s.labels())) {
                if let Some(v) = instant_value(&state.store, s.metric, t).await? {
                    result.push(json!({
                        "metric": s.labels_json(),
                        "value": [seconds(t), sample_value(v)],
                    }));
                }
            }
            Ok(success(json!({ "resultType": "vector", "result": result })))
        }
    }
}

/// The value of a series at instant `t_ms` (see the module doc).
async fn instant_value(store: &Store, metric: Metric, t_ms: i64) -> Result<Option<f64>, PromError> {
    Ok(match metric {
        Metric::Rounds => {
            let n = store.count_range(t_ms - ROUNDS_WINDOW_MS + 1, t_ms).await?;
            Some(n as f64)
        }
        Metric::Average | Metric::Samples => {
            let latest = store
                .page_desc(t_ms - LOOKBACK_MS + 1, t_ms, None, 1)
                .await?;
            latest.first().map(|p| match metric {
                Metric::Samples => f64::from(p.average.result.samples),
                _ => p.average.result.value,
            })
        }
    })
}

/// `/api/v1/query_range`.
pub async fn query_range(
    State(state): State<SharedState>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Json<Value>, PromError> {
    let params = params(&method, q, &body);
    let query = params.require("query").map_err(bad)?;
    let start =
        time_param(&params, "start")?.ok_or_else(|| bad("missing parameter \"start\"".into()))?;
    let end = time_param(&params, "end")?.ok_or_else(|| bad("missing parameter \"end\"".into()))?;
    let step = parse_duration(params.require("step").map_err(bad)?)
        .map_err(|e| bad(format!("invalid parameter \"step\": {e}")))?;
    if end < start {
        return Err(bad("end timestamp must not be before start time".into()));
    }
    if (end - start) / step + 1 > MAX_POINTS {
        return Err(bad(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ));
    }
    let first_t = (start + step - 1).div_euclid(step) * step;
    let last_t = end.div_euclid(step) * step;
    let times = || {
        (0..)
            .map(move |k| first_t + k * step)
            .take_while(move |t| *t <= last_t)
    };

    let expr = promql::parse(query)?;
    let result: Vec<Value> = match expr {
        Expr::Number(n) => {
            let values: Vec<Value> = times()
                .map(|t| json!([seconds(t), sample_value(n)]))
                .collect();
            if values.is_empty() {
                Vec::new()
            } else {
                vec![json!({ "metric": {}, "values": values })]
            }
        }
        Expr::Selector(selector) => {
            let selected: Vec<PromSeries> = SERIES
                .into_iter()
                .filter(|s| selector.matches(&s.labels()))
                .collect();
            let buckets = if selected.is_empty() || first_t > last_t {
                Vec::new()
            } else {
                step_buckets(&state.store, first_t - step, last_t - 1, step).await?
            };
            selected
                .iter()
                .filter_map(|s| {
                    let values = series_values(s.metric, &buckets, step, times());
                    (!values.is_empty())
                        .then(|| json!({ "metric": s.labels_json(), "values": values }))
                })
                .collect()
        }
    };
    tracing::debug!(
        query,
        start,
        end,
        step,
        series = result.len(),
        "prometheus range query"
    );
    Ok(success(json!({ "resultType": "matrix", "result": result })))
}

/// `[seconds, "value"]` pairs of one series; buckets are labelled by their end.
fn series_values(
    metric: Metric,
    buckets: &[Bucket],
    step: i64,
    times: impl Iterator<Item = i64>,
) -> Vec<Value> {
    let spec = spec_of(metric);
    let mut by_end = buckets
        .iter()
        .filter_map(|b| spec.value(b, step).map(|v| (b.start_ms + step, v)))
        .peekable();
    let mut out = Vec::new();
    for t in times {
        while by_end.peek().is_some_and(|(end, _)| *end < t) {
            by_end.next();
        }
        let value = match by_end.peek() {
            Some((end, v)) if *end == t => Some(*v),
            // Round counts are known to be zero where no bucket exists.
            _ if metric == Metric::Rounds => Some(0.0),
            _ => None,
        };
        if let Some(v) = value {
            out.push(json!([seconds(t), sample_value(v)]));
        }
    }
    out
}

/// Exact buckets of `step` over `[from_ms, to_ms]` from the store's one bucketed read
/// (the query planner picks rollups or raw averages and bounds the cost: a refusal is
/// `bad_data` naming the step to use).
async fn step_buckets(
    store: &Store,
    from_ms: i64,
    to_ms: i64,
    step: i64,
) -> Result<Vec<Bucket>, PromError> {
    let query = SeriesQuery {
        from_ms,
        to_ms,
        width_ms: step,
        exactness: Exactness::Exact,
    };
    match store.series(query).await {
        Err(StoreError::InvalidArgument(message)) => Err(bad(message)),
        other => Ok(other?),
    }
}
