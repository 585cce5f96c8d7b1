//! The subset of the Prometheus HTTP API that Grafana's built-in Prometheus datasource
//! needs, under `/prom`: charts and alerting on the averages without any Grafana plugin.
//!
//! Series: `sensor_average`, `sensor_samples` and `sensor_rounds`, each with the labels
//! `__name__` and `job="zk-sensors"`. Queries: number arithmetic (Grafana's "Save & test"
//! sends `1+1` at `time=4`) and plain vector selectors with `=`, `!=`, `=~`, `!~` matchers
//! ([`promql`]). Range queries are answered from the store's per-bucket aggregates
//! ([`eval`]); the catalog endpoints (labels, label values, series, metadata, buildinfo)
//! are static. Parameters come from the URL query and, for POST, the form body: Grafana
//! sends either, depending on the datasource's HTTP method.
//!
//! Failure behaviour: anything outside the subset, and malformed parameters, get
//! `400 {"status":"error","errorType":"bad_data","error":"..."}`; an unreachable Redis
//! gets 503 with `errorType` `unavailable` (500 `internal` for unexpected data in Redis).
//! Successful answers use the standard `{"status":"success","data":...}` envelope.

mod eval;
pub mod params;
pub mod promql;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::series::Metric;
use crate::store::StoreError;
use crate::SharedState;
use params::Params;
use promql::Selector;

/// Value of the `job` label of every series.
pub const JOB: &str = "zk-sensors";

/// The Prometheus version we claim in `buildinfo` (the API shapes we follow).
pub const COMPAT_VERSION: &str = "2.53.0";

/// A series we serve: the Prometheus name and the metric behind it.
#[derive(Debug, Clone, Copy)]
pub struct PromSeries {
    /// Metric name (`__name__`).
    pub name: &'static str,
    /// What it plots.
    pub metric: Metric,
}

/// Every series, sorted by name.
pub const SERIES: [PromSeries; 3] = [
    PromSeries {
        name: "sensor_average",
        metric: Metric::Average,
    },
    PromSeries {
        name: "sensor_rounds",
        metric: Metric::Rounds,
    },
    PromSeries {
        name: "sensor_samples",
        metric: Metric::Samples,
    },
];

impl PromSeries {
    /// The series' labels, `__name__` first.
    pub fn labels(&self) -> [(&'static str, &'static str); 2] {
        [("__name__", self.name), ("job", JOB)]
    }

    /// The labels as a JSON object.
    pub fn labels_json(&self) -> Value {
        let map: Map<String, Value> = self
            .labels()
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::from(*v)))
            .collect();
        Value::Object(map)
    }

    /// Metadata `HELP` text.
    pub fn help(&self) -> &'static str {
        match self.metric {
            Metric::Rounds => "Rounds completed per minute, over the step (or the last minute)",
            Metric::Average => "Mean of the round averages over the step; instant: latest average",
            Metric::Samples => "Mean readings per round over the step; instant: latest round",
        }
    }
}

/// The `/prom` routes; merge into the application router.
pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/prom/api/v1/query", get(eval::query).post(eval::query))
        .route(
            "/prom/api/v1/query_range",
            get(eval::query_range).post(eval::query_range),
        )
        .route("/prom/api/v1/labels", get(labels).post(labels))
        .route("/prom/api/v1/label/{name}/values", get(label_values))
        .route("/prom/api/v1/series", get(series).post(series))
        .route("/prom/api/v1/metadata", get(metadata))
        .route("/prom/api/v1/status/buildinfo", get(buildinfo))
        .route(
            "/prom/api/v1/query_exemplars",
            get(exemplars).post(exemplars),
        )
}

/// A failed Prometheus API call, rendered in Prometheus' error envelope.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// Malformed or unsupported request (400, `bad_data`).
    #[error("{0}")]
    BadData(String),
    /// Redis could not answer (503, `unavailable`) or answered nonsense (500, `internal`).
    #[error("sensor store: {0}")]
    Store(#[from] StoreError),
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            PromError::BadData(_) => (StatusCode::BAD_REQUEST, "bad_data"),
            PromError::Store(error @ StoreError::Unavailable(_)) => {
                tracing::warn!(%error, "prometheus query failed: store unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            PromError::Store(error) => {
                tracing::error!(%error, "prometheus query failed: store error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let body = json!({ "status": "error", "errorType": kind, "error": self.to_string() });
        (status, Json(body)).into_response()
    }
}

impl From<promql::ParseError> for PromError {
    fn from(e: promql::ParseError) -> PromError {
        PromError::BadData(format!("unsupported or invalid query: {e}"))
    }
}

/// `{"status":"success","data": data}`.
fn success(data: Value) -> Json<Value> {
    Json(json!({ "status": "success", "data": data }))
}

/// URL query parameters, then (for POST) the form-encoded body.
fn params(method: &Method, query: Option<String>, body: &[u8]) -> Params {
    let mut all: Vec<(String, String)> = query
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if *method == Method::POST {
        all.extend(form_urlencoded::parse(body).into_owned());
    }
    Params(all)
}

/// Most `match[]` selectors one request may carry (Grafana sends one).
pub const MAX_MATCH_SELECTORS: usize = 20;

/// The series selected by the `match[]` parameters (all series when there are none and
/// `required` is false).
fn matched_series(params: &Params, required: bool) -> Result<Vec<PromSeries>, PromError> {
    let texts = params.all("match[]");
    if texts.len() > MAX_MATCH_SELECTORS {
        return Err(PromError::BadData(format!(
            "{} match[] selectors; the limit is {MAX_MATCH_SELECTORS}",
            texts.len()
        )));
    }
    let selectors: Vec<Selector> = texts
        .into_iter()
        .map(promql::parse_selector)
        .collect::<Result<_, _>>()?;
    if selectors.is_empty() {
        if required {
            return Err(PromError::BadData("no match[] parameter provided".into()));
        }
        return Ok(SERIES.to_vec());
    }
    Ok(SERIES
        .into_iter()
        .filter(|s| selectors.iter().any(|sel| sel.matches(&s.labels())))
        .collect())
}

/// `/api/v1/labels`: label names of the (matched) series.
async fn labels(
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Json<Value>, PromError> {
    let params = params(&method, q, &body);
    let series = matched_series(&params, false)?;
    let mut names: Vec<&str> = series
        .iter()
        .flat_map(|s| s.labels().map(|(k, _)| k))
        .collect();
    names.sort_unstable();
    names.dedup();
    Ok(success(json!(names)))
}

/// `/api/v1/label/<name>/values`: values of one label over the (matched) series.
async fn label_values(
    Path(name): Path<String>,
    method: Method,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, PromError> {
    let valid = name
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()));
    if name.is_empty() || !valid {
        return Err(PromError::BadData(format!("invalid label name: {name:?}")));
    }
    let params = params(&method, q, &[]);
    let series = matched_series(&params, false)?;
    let mut values: Vec<&str> = series
        .iter()
        .flat_map(|s| s.labels())
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .collect();
    values.sort_unstable();
    values.dedup();
    Ok(success(json!(values)))
}

/// `/api/v1/series`: label sets of the series matching at least one `match[]`.
async fn series(
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Json<Value>, PromError> {
    let params = params(&method, q, &body);
    let series = matched_series(&params, true)?;
    Ok(success(Value::Array(
        series.iter().map(PromSeries::labels_json).collect(),
    )))
}

/// `/api/v1/metadata`: type, help and unit per metric name (optionally one `metric`,
/// at most `limit` names).
async fn metadata(method: Method, RawQuery(q): RawQuery) -> Result<Json<Value>, PromError> {
    let params = params(&method, q, &[]);
    let only = params.get("metric").filter(|m| !m.is_empty());
    let limit = match params.get("limit").filter(|l| !l.is_empty()) {
        None => usize::MAX,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n > 0 => n as usize,
            Ok(_) => usize::MAX,
            Err(_) => return Err(PromError::BadData(format!("invalid limit {l:?}"))),
        },
    };
    let map: Map<String, Value> = SERIES
        .iter()
        .filter(|s| only.is_none_or(|m| m == s.name))
        .take(limit)
        .map(|s| {
            (
                s.name.to_string(),
                json!([{ "type": "gauge", "help": s.help(), "unit": "" }]),
            )
        })
        .collect();
    Ok(success(Value::Object(map)))
}

/// `/api/v1/status/buildinfo`: Grafana reads the version to pick API features.
async fn buildinfo() -> Json<Value> {
    success(json!({
        "version": COMPAT_VERSION,
        "revision": "zk-sensors",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

/// `/api/v1/query_exemplars`: we have none.
async fn exemplars() -> Json<Value> {
    success(json!([]))
}
