//! Wire types of the `simpod-json-datasource` protocol (see the plugin's OpenAPI spec).
//!
//! Requests are parsed leniently: Grafana adds fields from release to release (`app`,
//! `requestId`, `scopedVars`, `timezone`, `startTime`, `datasource`, ...), so unknown fields
//! are ignored and everything we do not need is optional. The per-target `payload` arrives
//! as a JSON object from current plugin versions and as a JSON string from older ones;
//! both are accepted. Responses follow the spec's shapes exactly.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Body of `POST /query`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueryRequest {
    /// The dashboard time range (ISO-8601 UTC strings).
    pub range: Option<TimeRange>,
    /// Grafana's minimum interval between points, in milliseconds (may be fractional).
    pub interval_ms: Option<f64>,
    /// How many points a series may have at most (about the panel width in pixels).
    pub max_data_points: Option<f64>,
    /// One entry per query row of the panel.
    pub targets: Vec<Target>,
    /// Ad hoc filters (spec name); we offer no filter keys, so any filter is an error.
    pub filters: Option<Vec<Value>>,
    /// Ad hoc filters (the name the plugin's frontend uses).
    pub adhoc_filters: Option<Vec<Value>>,
}

/// A time range as Grafana sends it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TimeRange {
    /// Start, e.g. `2026-11-26T21:45:49.123Z`.
    pub from: Option<String>,
    /// End (inclusive).
    pub to: Option<String>,
}

/// One query row.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Target {
    /// The metric name (`average`, `samples`, `rounds`, `leader_changes`).
    pub target: Option<String>,
    /// Grafana's id of this query row, echoed in the answer.
    pub ref_id: Option<String>,
    /// Options chosen in the query editor (object, or JSON text from old plugin versions).
    pub payload: Option<Value>,
    /// Hidden rows are not answered.
    pub hide: Option<bool>,
    /// Legacy SimpleJSON result kind: `timeserie` or `table`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

impl Target {
    /// The payload as a JSON object; empty when absent, blank, or not an object.
    ///
    /// Fails only on a non-blank string that is not a JSON object, so a typo in the
    /// editor is reported instead of silently ignored.
    pub fn payload_object(&self) -> Result<Map<String, Value>, String> {
        match &self.payload {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(map)) => Ok(map.clone()),
            Some(Value::String(text)) if text.trim().is_empty() => Ok(Map::new()),
            Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => Ok(map),
                _ => Err(format!("payload is not a JSON object: {text}")),
            },
            Some(other) => Err(format!("payload is not a JSON object: {other}")),
        }
    }
}

/// Reads an optional string option from a payload; a one-element array (multi-select)
/// counts as its element.
pub fn payload_str<'a>(
    payload: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, String> {
    match payload.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(Value::Array(items)) if items.len() == 1 => match &items[0] {
            Value::String(s) => Ok(Some(s.as_str())),
            other => Err(format!(
                "payload option `{key}` must be a string, got {other}"
            )),
        },
        Some(other) => Err(format!(
            "payload option `{key}` must be a string, got {other}"
        )),
    }
}

/// Body of `POST /metrics`, `/metric-payload-options` (and `/variable`'s payload).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MetricsRequest {
    /// Currently selected metric.
    pub metric: Option<String>,
    /// For `/metric-payload-options`: which payload's options are wanted.
    pub name: Option<String>,
}

/// Body of `POST /variable`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct VariableRequest {
    /// What to list.
    pub payload: Option<VariablePayload>,
}

/// The variable query.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct VariablePayload {
    /// What to list: `metrics`, `aggregations` (the only supported ones).
    pub target: Option<String>,
}

/// Body of `POST /tag-values`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TagValuesRequest {
    /// The ad hoc filter key.
    pub key: Option<String>,
}

/// One entry of the `/metrics` answer.
#[derive(Debug, Serialize)]
pub struct MetricDescriptor {
    /// Shown in the metric picker.
    pub label: String,
    /// The metric name sent back as `target`.
    pub value: String,
    /// Options the editor shows for this metric.
    pub payloads: Vec<PayloadDescriptor>,
}

/// One payload option of a metric.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadDescriptor {
    /// Shown next to the input.
    pub label: String,
    /// Key of the option in the target's payload.
    pub name: String,
    /// `select` (radio/dropdown).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Prompt text.
    pub placeholder: String,
    /// Whether changing it reloads `/metrics` (never needed here).
    pub reload_metric: bool,
    /// Width in multiples of 8 px.
    pub width: u32,
    /// The allowed values.
    pub options: Vec<LabelValue>,
}

/// A `{label, value}` pair (payload options, `/metric-payload-options`).
#[derive(Debug, Clone, Serialize)]
pub struct LabelValue {
    /// Shown to the user.
    pub label: String,
    /// Sent back.
    pub value: String,
}

/// One item of the `/query` answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum QueryResult {
    /// A time series: `[value, epoch_ms]` pairs, ascending, `null` for empty buckets.
    TimeSeries {
        /// Series name (legend).
        target: String,
        /// The target's `refId`, so Grafana matches answers to query rows.
        #[serde(rename = "refId", skip_serializing_if = "Option::is_none")]
        ref_id: Option<String>,
        /// `[value | null, epoch_ms]`.
        datapoints: Vec<(Option<f64>, i64)>,
    },
    /// A table.
    Table {
        /// Always `"table"`.
        #[serde(rename = "type")]
        kind: &'static str,
        /// The target's `refId`.
        #[serde(rename = "refId", skip_serializing_if = "Option::is_none")]
        ref_id: Option<String>,
        /// Column headers with their types (`time`, `number`, `string`).
        columns: Vec<Column>,
        /// Rows of cells (numbers or strings), one per entry.
        rows: Vec<Vec<Value>>,
    },
}

/// A table column.
#[derive(Debug, Serialize)]
pub struct Column {
    /// Header.
    pub text: &'static str,
    /// `time`, `number` or `string`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// One item of the `/variable` answer. Carries both the `text`/`value` the spec requires
/// and the `__text`/`__value` the plugin reads.
#[derive(Debug, Serialize)]
pub struct VariableItem {
    /// Display text.
    pub text: String,
    /// Value substituted into queries.
    pub value: String,
    /// Same as `text`, for the plugin.
    #[serde(rename = "__text")]
    pub text_alias: String,
    /// Same as `value`, for the plugin.
    #[serde(rename = "__value")]
    pub value_alias: String,
}

impl VariableItem {
    /// An item whose text and value are the same string.
    pub fn same(s: &str) -> VariableItem {
        VariableItem {
            text: s.to_string(),
            value: s.to_string(),
            text_alias: s.to_string(),
            value_alias: s.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafana_12_query_body_with_unknown_fields_parses() {
        let body = r#"{
            "app": "dashboard", "requestId": "SQR101", "timezone": "browser",
            "panelId": 2, "panelPluginId": "timeseries", "dashboardUID": "zk-sensors",
            "range": {"from": "2026-11-26T21:00:00.000Z", "to": "2026-11-26T22:00:00.000Z",
                      "raw": {"from": "now-1h", "to": "now"}},
            "rangeRaw": {"from": "now-1h", "to": "now"},
            "interval": "5s", "intervalMs": 5000, "maxDataPoints": 842,
            "scopedVars": {"__interval": {"text": "5s", "value": "5s"}},
            "startTime": 1764194400000, "filters": [], "adhocFilters": [],
            "targets": [{"refId": "A", "target": "average", "payload": {"aggregation": "max"},
                         "datasource": {"type": "simpod-json-datasource", "uid": "sensors-json"},
                         "editorMode": "builder", "hide": false, "key": "Q-1"}]
        }"#;
        let q: QueryRequest = serde_json::from_str(body).unwrap();
        assert_eq!(q.max_data_points, Some(842.0));
        assert_eq!(q.targets[0].ref_id.as_deref(), Some("A"));
        let p = q.targets[0].payload_object().unwrap();
        assert_eq!(payload_str(&p, "aggregation").unwrap(), Some("max"));
    }

    #[test]
    fn string_payloads_are_accepted() {
        let t: Target =
            serde_json::from_str(r#"{"target":"x","payload":"{\"format\":\"table\"}"}"#).unwrap();
        assert_eq!(
            payload_str(&t.payload_object().unwrap(), "format").unwrap(),
            Some("table")
        );
        let t: Target = serde_json::from_str(r#"{"target":"x","payload":"  "}"#).unwrap();
        assert!(t.payload_object().unwrap().is_empty());
        let t: Target = serde_json::from_str(r#"{"target":"x","payload":"{oops"}"#).unwrap();
        assert!(t.payload_object().is_err());
    }

    #[test]
    fn timeseries_serialises_nulls_and_pairs() {
        let r = QueryResult::TimeSeries {
            target: "average".into(),
            ref_id: Some("A".into()),
            datapoints: vec![(Some(1.5), 1000), (None, 2000)],
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"target":"average","refId":"A","datapoints":[[1.5,1000],[null,2000]]}"#
        );
    }
}
