//! Shared by the Grafana-facing tests (`grafana*.rs`, `prom*.rs`): the app on 127.0.0.1:0
//! against a real Redis under a fresh key prefix, fast seeding through the store, and the
//! datasource plugin's OpenAPI spec turned into JSON Schema validators.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sensor_api::store::{Average, NewPoint, RoundResult, Store, StoreConfig};
use sensor_api::{app, AppState};
use serde_json::{json, Value};

/// Repository root (the workspace).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The app, served.
pub struct App {
    pub base: String,
    pub state: AppState,
    pub client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn prefix(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "gf-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl App {
    /// Serves the app on the shared Redis under a fresh key prefix.
    pub async fn start(tag: &str) -> App {
        App::start_on(&testkit::shared_redis().url(), tag).await
    }

    /// Serves the app on the given Redis.
    pub async fn start_on(redis_url: &str, tag: &str) -> App {
        let store = Store::open(
            redis_url,
            &StoreConfig {
                key_prefix: prefix(tag),
                response_timeout: Duration::from_millis(800),
                connect_timeout: Duration::from_millis(500),
            },
        )
        .expect("open store");
        let state = AppState::new(store);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = app(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        App {
            base: format!("http://{addr}"),
            state,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            server,
        }
    }

    /// Stores averages directly through the store, in batches.
    pub async fn seed(&self, averages: &[Average]) {
        for chunk in averages.chunks(500) {
            let points: Vec<NewPoint> = chunk.iter().cloned().map(NewPoint::Round).collect();
            let results = self.state.store.ingest(&points).await.expect("ingest");
            assert!(
                results.iter().all(|r| !r.status.is_rejection()),
                "seed rejected: {results:?}"
            );
        }
    }

    /// POSTs a JSON body; returns status and parsed body (Null if not JSON).
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POSTs raw bytes with a content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GETs a path (with its query string).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// RFC 3339 text of epoch milliseconds.
pub fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// One average.
pub fn average(
    round: u64,
    ms: i64,
    value: f64,
    samples: u32,
    leader: &str,
    fencing: u64,
) -> Average {
    Average {
        result: RoundResult {
            round,
            value,
            samples,
            leader: leader.to_string(),
            fencing,
            taken_at: iso(ms),
            cluster: Default::default(),
        },
        taken_at_ms: ms,
    }
}

/// A realistic Grafana 12 `/query` body from the simpod plugin, with the fields Grafana
/// adds that the protocol does not define.
pub fn grafana_query(
    from_ms: i64,
    to_ms: i64,
    max_points: u64,
    interval_ms: u64,
    targets: Value,
) -> Value {
    json!({
        "app": "dashboard",
        "requestId": "SQR142",
        "timezone": "browser",
        "panelId": 1,
        "panelName": "Average over time",
        "panelPluginId": "timeseries",
        "dashboardUID": "zk-sensors",
        "range": {
            "from": iso(from_ms),
            "to": iso(to_ms),
            "raw": {"from": "now-1h", "to": "now"}
        },
        "rangeRaw": {"from": "now-1h", "to": "now"},
        "interval": format!("{}ms", interval_ms),
        "intervalMs": interval_ms,
        "maxDataPoints": max_points,
        "targets": targets,
        "scopedVars": {
            "__interval": {"text": "1s", "value": "1s"},
            "__interval_ms": {"text": "1000", "value": 1000}
        },
        "startTime": 1_764_194_400_000_i64,
        "filters": [],
        "adhocFilters": [],
        "liveStreaming": false,
        "cacheTimeout": null,
        "queryCachingTTL": null
    })
}

/// A target as the plugin sends it.
pub fn target(ref_id: &str, metric: &str, payload: Value) -> Value {
    json!({
        "refId": ref_id,
        "target": metric,
        "payload": payload,
        "datasource": {"type": "simpod-json-datasource", "uid": "sensors-json"},
        "editorMode": "builder",
        "hide": false,
        "key": format!("Q-{ref_id}")
    })
}

/// The plugin's OpenAPI spec (from the project's shared specs, beside the repository).
pub fn openapi() -> Value {
    let path = repo_root().join("../shared/specs/grafana-json-datasource.openapi.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).expect("spec parses as YAML")
}

/// Follows a path of object keys / array indices (JSON pointer tokens) into a value.
pub fn at<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Value {
    let pointer: String = path
        .iter()
        .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
        .collect();
    v.pointer_mut(&pointer)
        .unwrap_or_else(|| panic!("spec has no {pointer}"))
}

/// The spec with its two known inconsistencies corrected, each checked before patching so
/// a changed spec fails loudly:
/// * `/query` timeseries values are declared `number`, but the protocol (and Grafana)
///   uses `null` for buckets without data, which is how gaps are drawn: allow null.
/// * `/query` table `rows` items are declared `string | number`, while the spec's own
///   example (and the plugin) uses rows that are arrays of cells: use arrays of cells.
pub fn patched_openapi() -> Value {
    let mut spec = openapi();
    let items = at(
        &mut spec,
        &[
            "paths",
            "/query",
            "post",
            "responses",
            "200",
            "content",
            "application/json",
            "schema",
            "items",
            "anyOf",
        ],
    );
    {
        let value = at(items, &["0", "properties", "datapoints", "items", "items"]);
        assert_eq!(
            value["type"], "number",
            "spec changed: datapoint value type"
        );
        *value = json!({"type": ["number", "null"]});
    }
    {
        let rows = at(items, &["1", "properties", "rows", "items"]);
        assert_eq!(
            rows["anyOf"],
            json!([{"type": "string"}, {"type": "number"}]),
            "spec changed: table rows"
        );
        *rows =
            json!({"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "number"}]}});
    }
    spec
}

/// A validator for a schema inside the spec; `$ref`s into `#/components` resolve because
/// the spec's components are carried along.
pub fn validator(spec: &Value, pointer: &str) -> jsonschema::Validator {
    let mut schema = spec
        .pointer(pointer)
        .unwrap_or_else(|| panic!("spec has no {pointer}"))
        .clone();
    if let Value::Object(map) = &mut schema {
        map.insert("components".into(), spec["components"].clone());
    }
    jsonschema::validator_for(&schema).expect("schema compiles")
}

/// Pointer to the 200 response schema of a POST (or GET) operation.
pub fn response_schema(path: &str, method: &str) -> String {
    format!(
        "/paths/{}/{method}/responses/200/content/application~1json/schema",
        path.replace('~', "~0").replace('/', "~1")
    )
}

/// Pointer to the request body schema of a POST operation.
pub fn request_schema(path: &str) -> String {
    format!(
        "/paths/{}/post/requestBody/content/application~1json/schema",
        path.replace('~', "~0").replace('/', "~1")
    )
}

/// Asserts `instance` is valid against the schema at `pointer`, listing every violation.
pub fn assert_valid(spec: &Value, pointer: &str, instance: &Value) {
    let v = validator(spec, pointer);
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not valid against {pointer}:\n{}\ninstance: {instance:#}",
        errors.join("\n")
    );
}

/// A non-2xx answer in the shape Grafana shows: `{"message": "<non-empty>"}`.
pub fn assert_grafana_error(status: u16, body: &Value, expected_status: u16, needle: &str) {
    assert_eq!(status, expected_status, "{body}");
    let message = body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {body}"));
    assert!(
        message.contains(needle),
        "message {message:?} lacks {needle:?}"
    );
}
