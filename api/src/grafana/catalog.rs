//! What the datasource offers: health, the metric list with its payload options,
//! template variables, and (empty) ad hoc filter keys.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::protocol::{
    LabelValue, MetricDescriptor, MetricsRequest, PayloadDescriptor, TagValuesRequest,
    VariableItem, VariableRequest,
};
use super::{parse_body, GrafanaError};
use crate::series::{Aggregation, Metric, Rate};
use crate::SharedState;

/// Target name of the leader-change annotations (a table of `time`, `title`, `text`).
pub const LEADER_CHANGES: &str = "leader_changes";

/// Payload key selecting the per-bucket aggregation.
pub const AGGREGATION: &str = "aggregation";
/// Payload key selecting the result format (`time_series` or `table`).
pub const FORMAT: &str = "format";
/// Payload key selecting the scale of round counts (`per_bucket` or `per_minute`).
pub const RATE: &str = "rate";

/// `GET /grafana`: 200 when the store answers, so "Save & test" also proves Redis works.
pub async fn health(State(state): State<SharedState>) -> Result<Json<Value>, GrafanaError> {
    state.store.ping().await?;
    Ok(Json(json!({ "status": "ok" })))
}

fn options(values: &[&str]) -> Vec<LabelValue> {
    values
        .iter()
        .map(|v| LabelValue {
            label: (*v).to_string(),
            value: (*v).to_string(),
        })
        .collect()
}

fn select(name: &str, label: &str, values: &[&str]) -> PayloadDescriptor {
    PayloadDescriptor {
        label: label.to_string(),
        name: name.to_string(),
        kind: "select",
        placeholder: format!("default: {}", values.first().copied().unwrap_or_default()),
        reload_metric: false,
        width: 20,
        options: options(values),
    }
}

/// Payload options of a metric name (`None` for names we do not serve).
fn payloads_of(metric: &str) -> Option<Vec<PayloadDescriptor>> {
    if metric == LEADER_CHANGES {
        return Some(Vec::new());
    }
    let metric = Metric::parse(metric)?;
    let aggregations: Vec<&str> = metric.aggregations().iter().map(|a| a.name()).collect();
    let mut payloads = Vec::new();
    if aggregations.len() > 1 {
        payloads.push(select(AGGREGATION, "Aggregation per bucket", &aggregations));
    }
    if metric == Metric::Rounds {
        payloads.push(select(
            RATE,
            "Count",
            &[Rate::PerBucket.name(), Rate::PerMinute.name()],
        ));
    }
    payloads.push(select(FORMAT, "Format", &["time_series", "table"]));
    Some(payloads)
}

/// All target names, in picker order.
fn target_names() -> Vec<&'static str> {
    Metric::ALL
        .iter()
        .map(|m| m.name())
        .chain([LEADER_CHANGES])
        .collect()
}

/// `POST /grafana/metrics`: every metric with its payload options (the request's current
/// metric does not narrow the list: the editor shows it as a picker).
pub async fn metrics(body: Bytes) -> Result<Json<Vec<MetricDescriptor>>, GrafanaError> {
    let _request: MetricsRequest = parse_body(&body)?;
    let list = target_names()
        .into_iter()
        .map(|name| MetricDescriptor {
            label: match Metric::parse(name) {
                Some(m) => format!("{name} — {}", m.help()),
                None => format!("{name} — leader changes (annotations)"),
            },
            value: name.to_string(),
            payloads: payloads_of(name).unwrap_or_default(),
        })
        .collect();
    Ok(Json(list))
}

/// `POST /grafana/metric-payload-options`: the options of one payload of one metric.
pub async fn metric_payload_options(body: Bytes) -> Result<Json<Vec<LabelValue>>, GrafanaError> {
    let request: MetricsRequest = parse_body(&body)?;
    let metric = request.metric.unwrap_or_default();
    let payloads = payloads_of(&metric)
        .ok_or_else(|| GrafanaError::BadRequest(format!("unknown metric `{metric}`")))?;
    let name = request.name.unwrap_or_default();
    Ok(Json(
        payloads
            .into_iter()
            .find(|p| p.name == name)
            .map(|p| p.options)
            .unwrap_or_default(),
    ))
}

/// `POST /grafana/variable`: values for template variables. Targets: `metrics` (the
/// default) lists metric names; `aggregations` lists aggregation names.
pub async fn variable(body: Bytes) -> Result<Json<Vec<VariableItem>>, GrafanaError> {
    let request: VariableRequest = parse_body(&body)?;
    let target = request
        .payload
        .and_then(|p| p.target)
        .unwrap_or_default()
        .trim()
        .to_string();
    let items: Vec<VariableItem> = match target.as_str() {
        "" | "metrics" => Metric::ALL
            .iter()
            .map(|m| VariableItem::same(m.name()))
            .collect(),
        "aggregations" => [
            Aggregation::Avg,
            Aggregation::Min,
            Aggregation::Max,
            Aggregation::Last,
        ]
        .iter()
        .map(|a| VariableItem::same(a.name()))
        .collect(),
        other => {
            return Err(GrafanaError::BadRequest(format!(
                "unknown variable query `{other}` (supported: metrics, aggregations)"
            )))
        }
    };
    Ok(Json(items))
}

/// `POST /grafana/tag-keys`: no ad hoc filter keys (averages carry no labels to filter on).
pub async fn tag_keys(body: Bytes) -> Result<Json<Vec<Value>>, GrafanaError> {
    let _ignored: Value = parse_body(&body)?;
    Ok(Json(Vec::new()))
}

/// `POST /grafana/tag-values`: no values, since there are no keys.
pub async fn tag_values(body: Bytes) -> Result<Json<Vec<Value>>, GrafanaError> {
    let _request: TagValuesRequest = parse_body(&body)?;
    Ok(Json(Vec::new()))
}
